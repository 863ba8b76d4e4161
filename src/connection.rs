//! Per-connection state kept in the server's slab, and the nonblocking steps that move
//! a connection along: write the rest of the greeting, wait until the kernel has sent
//! it, discard what the peer sends until it closes its side.
//!
//! Only connections that could not be finished at once live here; the common case
//! (whole greeting written by the first `write`, nothing received) never gets an entry.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::tcp_state::TcpProgress;

/// How many bytes a lingering close reads and discards before giving up on the peer's
/// EOF. A peer that keeps sending past this is not waiting for a clean close.
pub const LINGER_DISCARD_LIMIT: usize = 256 * 1024;

/// A connection that still owes the server something: greeting bytes to take (from us
/// or from the kernel), or its EOF after the greeting.
#[derive(Debug)]
pub struct Connection {
    /// The socket, nonblocking and registered with the poll under the slab key.
    pub stream: TcpStream,
    /// The peer, for the `CLOSE` log line.
    pub peer: SocketAddr,
    /// When it was accepted, in milliseconds since the server started (wrapping), for
    /// the `ms=` field of the `CLOSE` log line; 4 bytes instead of an `Instant`'s 16,
    /// since every held connection pays for it.
    pub accepted_ms: u32,
    /// Where this connection is in its life. Its deadline is not stored: each phase
    /// has exactly one entry in that phase's deadline queue, found by `serial`.
    pub phase: Phase,
    /// A serial number that tells this connection apart from a later one that reuses
    /// its slab key, so that a stale timer entry never closes the newcomer.
    pub serial: u64,
}

/// The phases of a connection that could not be finished at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The greeting was only partly written; `sent` bytes are out.
    Writing {
        /// How far into the shared greeting the peer has been sent.
        sent: usize,
    },
    /// The whole greeting and the FIN are written, but part of them still waits in
    /// the kernel for the peer's window. Closing now could turn a late peer byte into
    /// a reset that discards that rest, so the connection is held (reading and
    /// discarding input) until the kernel has sent it all, within the write timeout.
    Flushing {
        /// Bytes read and thrown away so far, bounded by [`LINGER_DISCARD_LIMIT`].
        discarded: usize,
    },
    /// Everything is sent, and the peer sent data: input is read and discarded until
    /// the peer's EOF so that the close is a FIN, not a reset.
    Lingering {
        /// Bytes read and thrown away so far, bounded by [`LINGER_DISCARD_LIMIT`].
        discarded: usize,
    },
}

/// What to do with a connection once its whole greeting is written and its write
/// side shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterGreeting {
    /// Nothing of ours waits in the kernel and nothing of the peer's is unread (or
    /// the peer has closed its side): close now.
    Close,
    /// Part of the greeting is still unsent: hold the connection until it is out.
    Flush,
    /// Everything is sent but the peer sent data: linger until its EOF.
    Linger,
}

/// Decides [`AfterGreeting`] from the kernel's view of the connection.
///
/// Bytes that are sent but not yet acknowledged do not hold the connection: a close
/// then still ends in a FIN behind them, and they are lost only if they must be
/// retransmitted after a peer byte has drawn a reset (see docs/architecture.md).
/// If the kernel cannot be asked, the connection is closed as before this check.
pub fn after_greeting(progress: io::Result<TcpProgress>) -> AfterGreeting {
    let Ok(progress) = progress else {
        return AfterGreeting::Close;
    };
    if progress.data_segments_in > 0 {
        return if progress.unsent > 0 {
            AfterGreeting::Flush
        } else {
            AfterGreeting::Linger
        };
    }
    if progress.unsent > 0 && !progress.peer_closed {
        AfterGreeting::Flush
    } else {
        AfterGreeting::Close
    }
}

/// What a round of writing achieved.
#[derive(Debug)]
pub enum WriteProgress {
    /// Every byte of the greeting is out.
    Complete,
    /// The socket buffer is full; wait for writability.
    WouldBlock,
    /// The peer is gone or the socket failed.
    Failed(io::Error),
}

/// Writes `greeting[*sent..]` until it is all out or the socket would block, advancing
/// `*sent` by what was written.
pub fn write_greeting(out: &mut impl Write, greeting: &[u8], sent: &mut usize) -> WriteProgress {
    while *sent < greeting.len() {
        match out.write(&greeting[*sent..]) {
            // A zero-length write of a non-empty buffer means the peer cannot take more.
            Ok(0) => return WriteProgress::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return WriteProgress::WouldBlock,
            Err(err) => return WriteProgress::Failed(err),
        }
    }
    WriteProgress::Complete
}

/// What reading and discarding the peer's input found.
#[derive(Debug)]
pub enum InputState {
    /// Nothing (more) to read right now, and no EOF yet.
    Quiet,
    /// The peer closed its side (and everything it sent has been read).
    Eof,
    /// The peer sent more than the discard budget allows.
    BudgetSpent,
    /// The read failed (typically a reset).
    Failed(io::Error),
}

/// Reads and throws away input until EOF, `WouldBlock`, or `*discarded` passes `limit`.
pub fn discard_input(input: &mut impl Read, discarded: &mut usize, limit: usize) -> InputState {
    let mut scratch = [0u8; 4096];
    loop {
        match input.read(&mut scratch) {
            Ok(0) => return InputState::Eof,
            Ok(n) => {
                *discarded += n;
                if *discarded > limit {
                    return InputState::BudgetSpent;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return InputState::Quiet,
            Err(err) => return InputState::Failed(err),
        }
    }
}

/// Whether an I/O error only means "not now" on a nonblocking socket.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// Whether a write or read error is the peer's doing (it reset or went away), as
/// opposed to a failure on the server's side.
pub fn peer_went_away(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WriteZero
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A socket stand-in that answers each call from a script.
    struct Scripted {
        answers: VecDeque<io::Result<usize>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(answers: Vec<io::Result<usize>>) -> Self {
            Scripted {
                answers: answers.into(),
                written: Vec::new(),
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted write")?;
            let n = n.min(buf.len());
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted read")?;
            Ok(n.min(buf.len()))
        }
    }

    fn err(kind: io::ErrorKind) -> io::Result<usize> {
        Err(kind.into())
    }

    #[test]
    fn held_connection_state_stays_small() {
        // Every held connection pays for this, a slab tag and one 32-byte deadline
        // entry; the budget for user-space memory per held connection is 128 bytes.
        // (mio's stream is 4 bytes in release builds, 16 with debug assertions.)
        let own_fields = std::mem::size_of::<Connection>() - std::mem::size_of::<TcpStream>();
        assert!(
            own_fields <= 64,
            "Connection's own fields grew to {own_fields} bytes"
        );
        assert_eq!(std::mem::size_of::<crate::deadlines::Deadline>(), 32);
    }

    #[test]
    fn partial_write_resumes_where_it_stopped() {
        let greeting = b"Hello there! This is the hosted server";
        let mut socket = Scripted::new(vec![Ok(5), err(io::ErrorKind::WouldBlock)]);
        let mut sent = 0;
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::WouldBlock
        ));
        assert_eq!(sent, 5);

        socket.answers = vec![err(io::ErrorKind::Interrupted), Ok(10), Ok(100)].into();
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::Complete
        ));
        assert_eq!(sent, greeting.len());
        assert_eq!(socket.written, greeting);
    }

    #[test]
    fn zero_length_write_means_the_peer_is_gone() {
        let mut socket = Scripted::new(vec![Ok(0)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn reset_is_reported_as_the_peers_doing() {
        let mut socket = Scripted::new(vec![err(io::ErrorKind::ConnectionReset)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(!peer_went_away(&io::Error::from_raw_os_error(libc::ENOMEM)));
    }

    #[test]
    fn discarding_stops_at_eof_would_block_or_budget() {
        let mut discarded = 0;
        let mut socket = Scripted::new(vec![Ok(100), Ok(0)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000),
            InputState::Eof
        ));
        assert_eq!(discarded, 100);

        let mut socket = Scripted::new(vec![Ok(10), err(io::ErrorKind::WouldBlock)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000),
            InputState::Quiet
        ));
        assert_eq!(discarded, 110);

        let mut socket = Scripted::new(vec![Ok(4096), Ok(4096), Ok(4096)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 5000),
            InputState::BudgetSpent
        ));
    }

    fn progress(unsent: u32, data_segments_in: u32, peer_closed: bool) -> io::Result<TcpProgress> {
        Ok(TcpProgress {
            unsent,
            unacked_segments: 1,
            data_segments_in,
            peer_closed,
        })
    }

    #[test]
    fn a_connection_is_closed_only_when_nothing_is_left_in_either_direction() {
        assert_eq!(after_greeting(progress(0, 0, false)), AfterGreeting::Close);
        assert_eq!(after_greeting(progress(1, 0, false)), AfterGreeting::Flush);
        assert_eq!(
            after_greeting(progress(9000, 3, false)),
            AfterGreeting::Flush
        );
        assert_eq!(after_greeting(progress(0, 3, false)), AfterGreeting::Linger);
        // A peer that has closed its side cannot draw a reset with bytes it sends.
        assert_eq!(
            after_greeting(progress(9000, 0, true)),
            AfterGreeting::Close
        );
        // ...but bytes it sent before its FIN are read first.
        assert_eq!(after_greeting(progress(0, 3, true)), AfterGreeting::Linger);
        let failed = Err(io::Error::from_raw_os_error(libc::EBADF));
        assert_eq!(after_greeting(failed), AfterGreeting::Close);
    }
}
