//! Where log lines go: a bounded queue drained by one writer thread, so that no event
//! loop and no signal thread ever blocks on a log write. A stderr that nobody reads
//! (a full pipe, a stalled journald) costs lines, never service: when the queue is
//! full a line is dropped and counted, and once the writer catches up it says how
//! many with one warning, `log: dropped N lines (stderr was not being read)`. A line
//! longer than [`MAX_LINE_BYTES`] is cut, with a marker, rather than dropped: its
//! length says nothing about the reader.
//!
//! `env_logger` still formats and filters (`RUST_LOG` works as before); only its sink
//! is this queue ([`QueueWriter`], given to `env_logger` as its pipe target). The
//! queue is one byte buffer: a line is appended whole or not at all, so lines keep
//! the order they were queued in, and the writer swaps the buffer for an empty one
//! and writes everything gathered with one `write`, so a burst costs one system call.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The most bytes queued before lines are dropped: about ten thousand lines, several
/// seconds of `--log-connections` at full rate.
pub const QUEUE_BYTES: usize = 1 << 20;

/// The longest line queued as it is; a longer one is cut to this many bytes, ending
/// with a marker that says how long it was (`... [log line cut: N bytes]`), never
/// dropped whole. Far below [`QUEUE_BYTES`], so that a long line fits unless the
/// reader really is behind: a line of nearly the queue's size would fit only into an
/// empty queue.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long the writer lets lines gather after it is woken, before it takes them: a
/// wake-up and a `write` then serve every line of a busy moment instead of one each
/// (under `--log-connections` at full rate, hundreds), and lines reach stderr at most
/// this much later.
const GATHER: Duration = Duration::from_millis(5);

/// Past this many queued bytes the writer does not wait for more to gather.
const GATHERED_ENOUGH: usize = 64 * 1024;

/// Lines dropped because the queue was full, since the process started (the logger is
/// process-wide, and so is this count).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped so far because the log's reader did not keep up (the metric
/// `greeter_log_lines_dropped_total`).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// What the loggers and the writer thread share.
#[derive(Debug, Default)]
struct Queue {
    /// The queued bytes and the writer's progress.
    state: Mutex<QueueState>,
    /// Signalled when the buffer stops being empty (the writer waits for it).
    filled: Condvar,
    /// Signalled when the writer has written everything (a flush waits for it).
    emptied: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Whole lines, in the order they were logged, at most [`QUEUE_BYTES`].
    buffer: Vec<u8>,
    /// Dropped lines the writer has not reported yet.
    unreported: u64,
    /// Whether the writer is writing a buffer it took (so a flush waits for it too).
    writing: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the buffer half-written
        // (`extend_from_slice` is the only change); go on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sending end of the queue: what `env_logger` writes each formatted line to.
/// A write never blocks on the log's reader; a line that does not fit is counted and
/// dropped.
#[derive(Debug)]
pub struct QueueWriter {
    queue: Arc<Queue>,
}

impl Write for QueueWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        // env_logger hands over one whole formatted record per call (`write_all` of
        // its buffer), so one call is one line.
        let len = line.len();
        let cut;
        let line = if len > MAX_LINE_BYTES {
            cut = cut_line(line);
            &cut[..]
        } else {
            line
        };
        let mut state = self.queue.lock();
        if state.buffer.len() + line.len() <= QUEUE_BYTES {
            let was_empty = state.buffer.is_empty();
            state.buffer.extend_from_slice(line);
            drop(state);
            if was_empty {
                self.queue.filled.notify_one();
            }
        } else {
            state.unreported += 1;
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `line` cut to [`MAX_LINE_BYTES`] (at the start of a character), ending with the
/// marker and the newline.
fn cut_line(line: &[u8]) -> Vec<u8> {
    let marker = format!(" ... [log line cut: {} bytes]\n", line.len());
    let mut keep = MAX_LINE_BYTES - marker.len();
    // Not inside a UTF-8 character: at most 3 continuation bytes to step back over.
    for _ in 0..3 {
        if line[keep] & 0xC0 == 0x80 {
            keep -= 1;
        }
    }
    let mut cut = Vec::with_capacity(keep + marker.len());
    cut.extend_from_slice(&line[..keep]);
    cut.extend_from_slice(marker.as_bytes());
    cut
}

/// The writer thread's side, to wait for it at exit.
#[derive(Debug)]
pub struct LogSink {
    queue: Arc<Queue>,
}

impl LogSink {
    /// Starts the writer thread, which copies queued lines to `out` (stderr for the
    /// server), and returns the sink and the writer for `env_logger`.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn start(out: impl Write + Send + 'static) -> io::Result<(LogSink, QueueWriter)> {
        let queue = Arc::new(Queue::default());
        let writer_queue = Arc::clone(&queue);
        thread::Builder::new()
            .name("greeter-log".to_owned())
            .spawn(move || write_lines(&writer_queue, out))?;
        Ok((
            LogSink {
                queue: Arc::clone(&queue),
            },
            QueueWriter { queue },
        ))
    }

    /// Waits, at most `timeout`, until every queued line (and the report of dropped
    /// ones) is written; for the end of the process. Returns whether it all got out.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.queue.lock();
        loop {
            if state.buffer.is_empty() && state.unreported == 0 && !state.writing {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.queue.emptied.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// The writer thread: takes everything queued, writes it, and each time it has caught
/// up reports the lines dropped meanwhile (through the logger, like any line).
fn write_lines(queue: &Queue, mut out: impl Write) {
    let mut taken = Vec::with_capacity(QUEUE_BYTES);
    // Whether the lines queued now have had their time to gather.
    let mut gathered = false;
    loop {
        let mut state = queue.lock();
        state.writing = false;
        if state.buffer.is_empty() {
            if state.unreported > 0 {
                let lost = std::mem::take(&mut state.unreported);
                drop(state);
                log::warn!(
                    target: "greeter::log",
                    "log: dropped {lost} lines (stderr was not being read)"
                );
                continue;
            }
            queue.emptied.notify_all();
            while state.buffer.is_empty() && state.unreported == 0 {
                state = match queue.filled.wait(state) {
                    Ok(state) => state,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            continue;
        }
        if state.buffer.len() < GATHERED_ENOUGH && !gathered {
            drop(state);
            thread::sleep(GATHER);
            gathered = true;
            continue;
        }
        gathered = false;
        // Swapped, not copied: the loggers go on into the emptied buffer at once.
        std::mem::swap(&mut state.buffer, &mut taken);
        state.writing = true;
        drop(state);
        // A failed write loses these lines: there is nowhere else to say so.
        let _ = out.write_all(&taken).and_then(|()| out.flush());
        taken.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that blocks every write until the test lets it go, as a pipe nobody
    /// reads does, and hands what it was given to the test.
    struct Gate {
        open: mpsc::Receiver<()>,
        written: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.open.recv();
            let _ = self.written.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_never_blocks_a_logger_and_full_means_dropped() {
        let (open, gate) = mpsc::channel();
        let (written, output) = mpsc::channel();
        let (sink, mut queue) = LogSink::start(Gate {
            open: gate,
            written,
        })
        .unwrap();
        let line = [b'x'; 1000];
        // The first line is taken by the writer, which then blocks; the rest fill the
        // queue and then overflow it, without ever waiting.
        let lines = 2 * QUEUE_BYTES / line.len();
        for _ in 0..lines {
            queue.write_all(&line).unwrap();
        }
        let dropped = queue.queue.lock().unreported;
        assert!(dropped > 0, "nothing dropped");
        assert!(
            !sink.flush(Duration::from_millis(10)),
            "flushed while blocked"
        );
        // Let every write through: everything queued arrives, in order, whole.
        drop(open);
        assert!(sink.flush(Duration::from_secs(20)));
        let out: Vec<u8> = output.try_iter().flatten().collect();
        assert_eq!(out.len() as u64 + dropped * 1000, (lines * 1000) as u64);
        assert!(out.iter().all(|&byte| byte == b'x'));
    }

    #[test]
    fn a_line_too_long_for_the_queue_is_cut_not_dropped() {
        let (open, gate) = mpsc::channel();
        drop(open);
        let (written, output) = mpsc::channel();
        let (sink, mut queue) = LogSink::start(Gate {
            open: gate,
            written,
        })
        .unwrap();
        // Longer than the whole queue, as a warning quoting a multi-megabyte line was.
        let mut line = "\u{e9}".repeat(QUEUE_BYTES).into_bytes();
        line.push(b'\n');
        queue.write_all(&line).unwrap();
        queue.write_all(b"the next line\n").unwrap();
        assert!(sink.flush(Duration::from_secs(20)));
        let out: Vec<u8> = output.try_iter().flatten().collect();
        let text = String::from_utf8(out).expect("cut at a character");
        let (first, rest) = text.split_once('\n').unwrap();
        assert!(first.len() <= MAX_LINE_BYTES, "{}", first.len());
        assert!(first.starts_with("\u{e9}\u{e9}"));
        assert!(
            first.ends_with(&format!(" ... [log line cut: {} bytes]", line.len())),
            "{}",
            &first[first.len() - 60..]
        );
        assert_eq!(rest, "the next line\n", "nothing dropped, nothing reported");
        assert_eq!(queue.queue.lock().unreported, 0);
    }
}
