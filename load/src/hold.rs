//! `greeter-load --hold N`: holds N clients on a tarpit for a bounded time and
//! reports what each received and when. Every client connects once (nonblocking, on
//! one mio loop), reads whatever arrives (1 KiB at a time), and never sends or
//! closes first; at the end it reports how many connected, how many were still
//! connected (no EOF or reset before the end), the bytes and reads, and the gaps
//! between two successive reads of one client: the longest of all, and the median
//! and 99th percentile of each client's longest. Bounded by count and time: it
//! connects N clients and ends after `duration`, whatever happened.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

/// What a hold run does.
#[derive(Debug, Clone)]
pub struct HoldOptions {
    /// The server (a tarpit listener).
    pub addr: SocketAddr,
    /// How many clients to hold.
    pub clients: usize,
    /// How long to hold them (the run ends then).
    pub duration: Duration,
}

/// How many connects are started per loop round, so that the server's backlog is not
/// flooded with SYNs it would drop (and the kernel retry a second later).
const CONNECTS_PER_ROUND: usize = 256;

/// What a client read into, each read.
const READ_BYTES: usize = 1024;

/// One held client.
#[derive(Debug)]
struct Held {
    stream: TcpStream,
    connected: bool,
    /// Its connection ended (EOF, reset, or a failed connect) before the end.
    ended: bool,
    bytes: u64,
    reads: u64,
    last_read: Option<Instant>,
    longest_gap: Duration,
}

/// The outcome of a hold run (the table, or `--json`'s fields).
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    /// Clients asked for.
    pub clients: usize,
    /// Clients whose connect succeeded.
    pub connected: usize,
    /// Clients still connected at the end: no EOF or reset before it.
    pub still_connected: usize,
    /// Connected clients whose connection ended (EOF or reset) before the end.
    pub ended_early: usize,
    /// Clients whose connect failed.
    pub connect_failed: usize,
    /// Bytes received by all clients.
    pub bytes: u64,
    /// Reads that returned bytes, by all clients.
    pub reads: u64,
    /// Clients that received nothing at all.
    pub received_nothing: usize,
    /// The longest gap between two successive reads of any client, milliseconds.
    pub max_gap_ms: u64,
    /// The median of each client's longest gap, milliseconds.
    pub client_max_gap_p50_ms: u64,
    /// The 99th percentile of each client's longest gap, milliseconds.
    pub client_max_gap_p99_ms: u64,
    /// How long the clients were held, seconds.
    pub elapsed_s: f64,
}

impl HoldReport {
    /// Whether every client connected and was still connected at the end.
    pub fn all_held(&self) -> bool {
        self.still_connected == self.clients
    }
}

impl fmt::Display for HoldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "clients       {}", self.clients)?;
        writeln!(
            f,
            "connected     {} (connect failed {})",
            self.connected, self.connect_failed
        )?;
        writeln!(
            f,
            "held          {} still connected at the end, {} ended early (EOF or reset)",
            self.still_connected, self.ended_early
        )?;
        writeln!(
            f,
            "received      {} bytes in {} reads ({} clients nothing)",
            self.bytes, self.reads, self.received_nothing
        )?;
        writeln!(
            f,
            "gaps (ms)     longest {}  per-client longest p50 {}  p99 {}",
            self.max_gap_ms, self.client_max_gap_p50_ms, self.client_max_gap_p99_ms
        )?;
        write!(f, "elapsed       {:.3} s", self.elapsed_s)
    }
}

/// Holds the clients `options` asks for until its duration has passed.
///
/// # Errors
/// If the event loop cannot be created or polled.
pub fn hold(options: &HoldOptions) -> io::Result<HoldReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let started = Instant::now();
    let end = started + options.duration;
    let mut clients: Vec<Held> = Vec::with_capacity(options.clients);
    let mut connect_failed = 0;
    let mut buffer = [0u8; READ_BYTES];
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wanted = (options.clients - clients.len() - connect_failed).min(CONNECTS_PER_ROUND);
        for _ in 0..wanted {
            match TcpStream::connect(options.addr) {
                Ok(mut stream) => {
                    let token = Token(clients.len());
                    poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    clients.push(Held {
                        stream,
                        connected: false,
                        ended: false,
                        bytes: 0,
                        reads: 0,
                        last_read: None,
                        longest_gap: Duration::ZERO,
                    });
                }
                Err(_) => connect_failed += 1,
            }
        }
        let wait = if clients.len() + connect_failed < options.clients {
            Duration::from_millis(10)
        } else {
            end.saturating_duration_since(now)
        };
        if let Err(err) = poll.poll(&mut events, Some(wait)) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            let Some(client) = clients.get_mut(event.token().0) else {
                continue;
            };
            if client.ended {
                continue;
            }
            if !client.connected && (event.is_writable() || event.is_readable()) {
                match client.stream.peer_addr() {
                    Ok(_) => {
                        client.connected = true;
                        // Only reads from now on.
                        let token = event.token();
                        poll.registry().reregister(
                            &mut client.stream,
                            token,
                            Interest::READABLE,
                        )?;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                        // Refused or unreachable: its error says which.
                        if event.is_error() || event.is_write_closed() {
                            client.ended = true;
                        }
                        continue;
                    }
                    Err(_) => {
                        client.ended = true;
                        continue;
                    }
                }
            }
            read_what_arrived(client, &mut buffer);
        }
    }
    Ok(report(options, &clients, connect_failed, started.elapsed()))
}

/// Reads what `client` has now (until it would block), recording each read.
fn read_what_arrived(client: &mut Held, buffer: &mut [u8]) {
    loop {
        match client.stream.read(buffer) {
            Ok(0) => {
                client.ended = true;
                return;
            }
            Ok(n) => {
                let now = Instant::now();
                if let Some(last) = client.last_read {
                    client.longest_gap = client.longest_gap.max(now - last);
                }
                client.last_read = Some(now);
                client.bytes += n as u64;
                client.reads += 1;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                client.ended = true;
                return;
            }
        }
    }
}

fn report(
    options: &HoldOptions,
    clients: &[Held],
    connect_failed: usize,
    elapsed: Duration,
) -> HoldReport {
    let connected: Vec<&Held> = clients.iter().filter(|client| client.connected).collect();
    let mut gaps: Vec<u64> = connected
        .iter()
        .map(|client| client.longest_gap.as_millis() as u64)
        .collect();
    gaps.sort_unstable();
    let quantile = |q: f64| -> u64 {
        if gaps.is_empty() {
            return 0;
        }
        let index = ((gaps.len() as f64 * q).ceil() as usize).clamp(1, gaps.len()) - 1;
        gaps[index]
    };
    let never_connected = clients.iter().filter(|client| !client.connected).count();
    HoldReport {
        clients: options.clients,
        connected: connected.len(),
        still_connected: connected.iter().filter(|client| !client.ended).count(),
        ended_early: connected.iter().filter(|client| client.ended).count(),
        connect_failed: connect_failed + never_connected,
        bytes: connected.iter().map(|client| client.bytes).sum(),
        reads: connected.iter().map(|client| client.reads).sum(),
        received_nothing: connected.iter().filter(|client| client.reads == 0).count(),
        max_gap_ms: gaps.last().copied().unwrap_or(0),
        client_max_gap_p50_ms: quantile(0.50),
        client_max_gap_p99_ms: quantile(0.99),
        elapsed_s: elapsed.as_secs_f64(),
    }
}
