//! greeter-load: the load generator for greeter. Many nonblocking connections on one or
//! more mio loops (never a thread per connection), each checked byte for byte against
//! the expected greeting, with connect-to-EOF latency recorded in an HDR histogram.
//!
//! Every run is bounded: it starts no connection after `total` connections or after
//! `duration`, and every connection in flight ends by its own `timeout`.
//! The client reads to EOF and closes only after the server has, so TIME_WAIT stays
//! on the server's side and long runs do not use up the client's ephemeral ports.
//!
//! It is its own crate so that the server's library compiles none of its dependencies
//! (hdrhistogram, indicatif, serde); the `greeter-load` binary and the server's tests
//! that drive load use it.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cli;
pub mod hold;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ppp::v2;
use serde::Serialize;
use slab::Slab;

use greeter::deadlines::DeadlineQueue;
use greeter::greeting::Greeting;

/// What a load run does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server.
    pub addr: SocketAddr,
    /// Connections in flight at once, over all threads.
    pub connections: usize,
    /// Stop starting connections after this many, if given.
    pub total: Option<u64>,
    /// Stop starting connections after this long.
    pub duration: Duration,
    /// What every connection must receive, byte for byte, before EOF.
    pub expected: Greeting,
    /// Per connection, from connect to EOF.
    pub timeout: Duration,
    /// Event loops (threads) sharing the work.
    pub threads: usize,
    /// Begin every connection with a PROXY protocol header of this version naming
    /// its own addresses, as a load balancer would (for a server run with
    /// `--proxy-protocol`).
    pub send_proxy: Option<ProxyVersion>,
    /// With `send_proxy`, name a different IPv4 client in each header instead
    /// (10.0.0.0, 10.0.0.1, ...: 16,777,216 before one repeats), as a million clients
    /// behind a load balancer would be (for rate tables and per-address state).
    pub distinct_sources: bool,
}

/// The PROXY protocol header a connection begins with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyVersion {
    /// The text header (HAProxy's send-proxy)
    V1,
    /// The binary header (HAProxy's send-proxy-v2, cloud load balancers)
    V2,
}

/// Failed connections, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// The connection was refused (nothing listening, or the backlog overflowed).
    pub refused: u64,
    /// The connection was reset before a clean EOF.
    pub reset: u64,
    /// No EOF within the timeout.
    pub timed_out: u64,
    /// EOF came before the whole greeting.
    pub short: u64,
    /// A byte differed from the expected greeting, or more bytes came than expected.
    pub wrong_bytes: u64,
    /// Anything else (e.g. no ephemeral port left to connect from).
    pub other: u64,
}

impl ErrorCounts {
    /// All failed connections.
    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.short + self.wrong_bytes + self.other
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.short += other.short;
        self.wrong_bytes += other.wrong_bytes;
        self.other += other.other;
    }

    fn count_io_error(&mut self, err: &io::Error) {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => self.refused += 1,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => self.reset += 1,
            io::ErrorKind::TimedOut => self.timed_out += 1,
            _ => self.other += 1,
        }
    }
}

/// The outcome of a load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Connections that received the exact greeting and a clean EOF.
    pub completed: u64,
    /// Connections that did not.
    pub errors: ErrorCounts,
    /// From the first connect to the last connection's end.
    pub elapsed: Duration,
    /// Connect-to-EOF latency of completed connections, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Latency percentiles in microseconds, as reported.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// The slowest completed connection.
    pub max: u64,
}

/// The report as JSON fields (`greeter-load --json`).
#[derive(Debug, Clone, Serialize)]
pub struct JsonReport {
    /// Connections that received the exact greeting and a clean EOF.
    pub completed: u64,
    /// Failed connections.
    pub errors_total: u64,
    /// Failed connections by kind.
    pub errors: ErrorCounts,
    /// Seconds from the first connect to the end.
    pub elapsed_s: f64,
    /// Completed connections per second.
    pub connections_per_s: f64,
    /// Connect-to-EOF latency percentiles, microseconds; `null` when no connection
    /// completed (there is no latency to report, and zeros would read as fast).
    pub latency_us: Option<LatencySummary>,
}

impl LoadReport {
    /// Completed connections per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency percentiles, or `None` when no connection completed.
    pub fn latency(&self) -> Option<LatencySummary> {
        let h = &self.latency_us;
        if h.is_empty() {
            return None;
        }
        Some(LatencySummary {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// The same figures as the table, as serialisable fields.
    pub fn to_json(&self) -> JsonReport {
        JsonReport {
            completed: self.completed,
            errors_total: self.errors.total(),
            errors: self.errors,
            elapsed_s: self.elapsed.as_secs_f64(),
            connections_per_s: self.rate(),
            latency_us: self.latency(),
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.errors;
        let ms = |us: u64| us as f64 / 1000.0;
        writeln!(f, "completed     {}", self.completed)?;
        writeln!(
            f,
            "errors        {} (refused {}, reset {}, timed out {}, short {}, wrong bytes {}, other {})",
            e.total(),
            e.refused,
            e.reset,
            e.timed_out,
            e.short,
            e.wrong_bytes,
            e.other
        )?;
        writeln!(f, "elapsed       {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "rate          {:.0} connections/s", self.rate())?;
        match self.latency() {
            Some(l) => write!(
                f,
                "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max)
            ),
            None => write!(f, "latency (ms)  none (no connection completed)"),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant figures; values beyond saturate.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Runs the load described by `options`; `progress` counts finished connections as
/// they finish (for a progress display).
///
/// # Errors
/// If a worker's event loop cannot be created or polled.
pub fn run(options: &LoadOptions, progress: &AtomicU64) -> io::Result<LoadReport> {
    let threads = options.threads.clamp(1, options.connections.max(1));
    let started = Instant::now();
    let end = started + options.duration;
    let results: Vec<io::Result<LoadReport>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                // Split connections and the total as evenly as possible.
                let share =
                    |n: u64| n / threads as u64 + u64::from((index as u64) < n % threads as u64);
                let connections = share(options.connections as u64) as usize;
                let total = options.total.map(share);
                let worker = Worker { index, of: threads };
                scope.spawn(move || {
                    run_worker(options, worker, connections.max(1), total, end, progress)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("load worker panicked"))
            .collect()
    });
    let mut report = LoadReport {
        completed: 0,
        errors: ErrorCounts::default(),
        elapsed: Duration::ZERO,
        latency_us: new_histogram(),
    };
    for result in results {
        let part = result?;
        report.completed += part.completed;
        report.errors.add(&part.errors);
        report
            .latency_us
            .add(&part.latency_us)
            .expect("histograms with equal bounds");
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One connection in flight.
#[derive(Debug)]
struct Attempt {
    stream: TcpStream,
    started: Instant,
    /// Bytes received and found equal to the expected greeting so far.
    received: usize,
    serial: u64,
    /// With `send_proxy`: the header still to be written (once connected).
    header_pending: Option<ProxyVersion>,
    /// With `distinct_sources`: the client its header names.
    proxy_source: Option<Ipv4Addr>,
}

/// Which of the load's threads a worker is.
#[derive(Debug, Clone, Copy)]
struct Worker {
    index: usize,
    of: usize,
}

/// How a connection ended.
#[derive(Debug)]
enum Outcome {
    Done,
    Failed(fn(&mut ErrorCounts)),
    Io(io::Error),
}

fn run_worker(
    options: &LoadOptions,
    worker: Worker,
    connections: usize,
    total: Option<u64>,
    end: Instant,
    progress: &AtomicU64,
) -> io::Result<LoadReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut in_flight: Slab<Attempt> = Slab::with_capacity(connections);
    let mut deadlines = DeadlineQueue::with_capacity(options.timeout, connections);
    let mut report = LoadReport {
        completed: 0,
        errors: ErrorCounts::default(),
        elapsed: Duration::ZERO,
        latency_us: new_histogram(),
    };
    let mut scratch = vec![0u8; 64 * 1024];
    let mut started: u64 = 0;
    loop {
        let now = Instant::now();
        while in_flight.len() < connections && total.is_none_or(|t| started < t) && now < end {
            started += 1;
            let key = in_flight.vacant_key();
            // With a header to send, the first writable event says the connect is
            // done; that one event is all it costs.
            let interest = if options.send_proxy.is_some() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let connected = TcpStream::connect(options.addr).and_then(|mut stream| {
                poll.registry()
                    .register(&mut stream, Token(key), interest)
                    .map(|()| stream)
            });
            match connected {
                Ok(stream) => {
                    deadlines.push(now, key, started);
                    // Threads take turns, so that no two name the same client.
                    let nth = (started - 1) * worker.of as u64 + worker.index as u64;
                    let proxy_source = options
                        .distinct_sources
                        .then(|| Ipv4Addr::from(0x0a00_0000 + (nth as u32 & 0x00ff_ffff)));
                    in_flight.insert(Attempt {
                        stream,
                        started: now,
                        received: 0,
                        header_pending: options.send_proxy,
                        serial: started,
                        proxy_source,
                    });
                }
                Err(err) => {
                    report.errors.count_io_error(&err);
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if in_flight.is_empty() {
            break;
        }
        // Only a timeout needs a wake-up without an event: until `end` every free slot
        // was filled above, and after it nothing new starts.
        let timeout = deadlines.next(Instant::now());
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(attempt) = in_flight.get_mut(key) else {
                continue;
            };
            let outcome = match send_proxy_header(attempt) {
                Ok(()) => read_available(attempt, &options.expected, &mut scratch),
                Err(err) => Some(Outcome::Io(err)),
            };
            let Some(outcome) = outcome else { continue };
            let attempt = in_flight.remove(key);
            let took = attempt.started.elapsed();
            match outcome {
                // Its deadline may not have been handled yet: late is late.
                Outcome::Done if took > options.timeout => report.errors.timed_out += 1,
                Outcome::Done => {
                    report.completed += 1;
                    let micros = took.as_micros() as u64;
                    report.latency_us.saturating_record(micros.max(1));
                }
                Outcome::Failed(count) => count(&mut report.errors),
                Outcome::Io(err) => report.errors.count_io_error(&err),
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        while let Some(due) = deadlines.pop_expired(now) {
            if in_flight
                .get(due.key())
                .is_some_and(|a| a.serial == due.serial)
            {
                in_flight.remove(due.key());
                report.errors.timed_out += 1;
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(report)
}

/// Writes the PROXY header once the connection is up (a no-op before, and after).
fn send_proxy_header(attempt: &mut Attempt) -> io::Result<()> {
    let Some(version) = attempt.header_pending else {
        return Ok(());
    };
    let (source, destination) = match (attempt.stream.local_addr(), attempt.stream.peer_addr()) {
        (Ok(source), Ok(destination)) => (source, destination),
        // Not connected yet: a later event will say so.
        (_, Err(err)) if err.kind() == io::ErrorKind::NotConnected => return Ok(()),
        (Err(err), _) | (_, Err(err)) => return Err(err),
    };
    // With distinct sources an IPv4 client, whatever the connection's family.
    let (source, destination) = match attempt.proxy_source {
        Some(client) => (
            SocketAddr::from((client, source.port())),
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), destination.port())),
        ),
        None => (source, destination),
    };
    let header = match version {
        ProxyVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .build()?,
    };
    // A fresh socket's buffer takes a header (at most 107 bytes, 52 in v2) in one write.
    match attempt.stream.write(&header) {
        Ok(n) if n == header.len() => {
            attempt.header_pending = None;
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "PROXY header cut short",
        )),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(err) => Err(err),
    }
}

/// Reads what is available and compares it; `None` while the greeting is incomplete.
fn read_available(attempt: &mut Attempt, expected: &[u8], scratch: &mut [u8]) -> Option<Outcome> {
    loop {
        match attempt.stream.read(scratch) {
            Ok(0) if attempt.received == expected.len() => return Some(Outcome::Done),
            Ok(0) => return Some(Outcome::Failed(|e| e.short += 1)),
            Ok(n) => {
                let end = attempt.received + n;
                if end > expected.len() || scratch[..n] != expected[attempt.received..end] {
                    return Some(Outcome::Failed(|e| e.wrong_bytes += 1));
                }
                attempt.received = end;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(err) => return Some(Outcome::Io(err)),
        }
    }
}
