//! The HTTP side of `--metrics`: a small mio readiness loop of its own, on its own
//! thread, so that idle, dribbling or hostile metrics clients can delay nothing but
//! themselves: a scrape is answered while up to [`MAX_CLIENTS`] others hold their
//! connections open, and the greeting loops never see any of it.
//!
//! Bounds: at most [`MAX_CLIENTS`] connections (a newcomer beyond that closes the
//! oldest one still sending its request: the idle are dropped first), each with
//! [`CLIENT_BUDGET`] from accept and a request head of at most [`MAX_REQUEST_BYTES`],
//! so the loop holds at most about a megabyte and `MAX_CLIENTS` descriptors.
//!
//! Every response ends as a greeting does: the write side is shut down, and input is
//! read and discarded until the client's EOF (or [`LINGER`]) before the close, so that
//! unread input never turns the close into a reset that destroys the response.
//!
//! `/healthz` must answer "paused" exactly when the greeting loops are out of
//! descriptors: a spare descriptor is given up for the one accept that needs it.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::accept::{self, AcceptFailure, ACCEPT_RETRY_DELAY};
use crate::error::{describe_io_error, Failure};
use crate::socket::{discard_input, write_greeting, InputState, WriteProgress};

use super::endpoint::{Request, Routes};
use super::negotiate::negotiate;
use super::registry::MetricsSource;

/// The most metrics connections held at once.
pub const MAX_CLIENTS: usize = 128;

/// The most time one client gets, from accept to the end of its response.
pub const CLIENT_BUDGET: Duration = Duration::from_secs(2);

/// The largest request head read; a longer one is answered 431 and closed.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The most headers a request may have; more is answered 431.
const MAX_HEADERS: usize = 32;

/// How long a client has, once its response is written, to close its side before
/// the connection is closed anyway.
pub const LINGER: Duration = Duration::from_millis(500);

const LISTENER: Token = Token(usize::MAX);

/// Wakes the loop to stop accepting ([`MetricsStop::stop_accepting`]).
const STOP: Token = Token(usize::MAX - 1);

/// Tells a running endpoint to stop accepting, answer the scrapes it has, and end:
/// after an upgrade's handover, so that no scrape in flight is cut off by this
/// process's exit (the new process serves the same socket).
#[derive(Debug, Clone)]
pub struct MetricsStop {
    asked: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl MetricsStop {
    /// Asks the endpoint to stop accepting and end once its clients are answered
    /// (each within its 2 s).
    pub fn stop_accepting(&self) {
        self.asked.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The metrics listener, bound at start-up so that a bad address is a start-up error.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound listener.
    listener: std::net::TcpListener,
}

impl MetricsServer {
    /// Binds `addr` for the metrics and health endpoints.
    ///
    /// # Errors
    /// A one-line [`Failure`] naming the address.
    pub fn bind(addr: SocketAddr) -> Result<Self, Failure> {
        let listener = std::net::TcpListener::bind(addr).map_err(|err| {
            Failure::new(
                format!("cannot listen for metrics on {addr}"),
                err,
                Some("check --metrics: a free port on an address of this host"),
            )
        })?;
        Ok(MetricsServer { listener })
    }

    /// The address bound, with the real port.
    ///
    /// # Errors
    /// If the socket cannot say.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves a listening socket that was passed on (by an upgrading process).
    pub fn from_listener(listener: std::net::TcpListener) -> Self {
        MetricsServer { listener }
    }

    /// A duplicate of its listening socket, for an upgrade to hand on.
    ///
    /// # Errors
    /// If the descriptor cannot be duplicated.
    pub fn try_clone_listener(&self) -> io::Result<std::net::TcpListener> {
        self.listener.try_clone()
    }

    /// Serves on a thread of its own until the process ends.
    ///
    /// # Errors
    /// If the loop or its thread cannot be started.
    pub fn spawn(self, source: MetricsSource) -> Result<(JoinHandle<()>, MetricsStop), Failure> {
        let fail = |err| Failure::new("cannot start the metrics endpoint", err, None);
        self.listener.set_nonblocking(true).map_err(fail)?;
        let mut listener = TcpListener::from_std(self.listener);
        let poll = Poll::new().map_err(fail)?;
        let stop = MetricsStop {
            asked: Arc::default(),
            waker: Arc::new(Waker::new(poll.registry(), STOP).map_err(fail)?),
        };
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(fail)?;
        let mut endpoint = HttpLoop {
            poll,
            listener,
            clients: Slab::with_capacity(MAX_CLIENTS),
            routes: Routes::new(source),
            spare: File::open("/dev/null").ok(),
            retry_accept_at: None,
            stop: Arc::clone(&stop.asked),
            accepting: true,
        };
        let thread = thread::Builder::new()
            .name("greeter-metrics".to_owned())
            .spawn(move || endpoint.run())
            .map_err(fail)?;
        Ok((thread, stop))
    }
}

/// The loop's state.
struct HttpLoop {
    poll: Poll,
    listener: TcpListener,
    /// The connections, keyed by their token.
    clients: Slab<Client>,
    /// What each path answers.
    routes: Routes,
    /// Given up for one accept when the process is out of descriptors.
    spare: Option<File>,
    /// Set when accepting stopped for lack of descriptors: when to try again.
    retry_accept_at: Option<Instant>,
    /// Set by [`MetricsStop::stop_accepting`].
    stop: Arc<AtomicBool>,
    /// Cleared once it stopped accepting.
    accepting: bool,
}

/// One metrics connection.
struct Client {
    stream: TcpStream,
    /// When it was accepted: the oldest reading client is the one dropped for room.
    accepted: Instant,
    /// When it is closed whatever it is doing.
    deadline: Instant,
    phase: ClientPhase,
}

enum ClientPhase {
    /// Reading the request head, gathered here.
    Reading(Vec<u8>),
    /// Writing the response; `.1` bytes of it are out.
    Writing(Vec<u8>, usize),
    /// The response is out and the write side shut down: discarding input until EOF.
    Lingering,
}

/// Whether a client is done with, after a step.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Wait,
    Answer(Request),
    Close,
}

impl HttpLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(err) = self.poll.poll(&mut events, self.timeout()) {
                if err.kind() != io::ErrorKind::Interrupted {
                    warn!(
                        target: "greeter::metrics_http", "metrics: the endpoint's poll failed, metrics are off: {err}");
                    return;
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER if self.accepting => self.accept_all(),
                    LISTENER | STOP => {}
                    Token(key) => self.advance(key),
                }
            }
            if self.accepting && self.stop.load(Ordering::SeqCst) {
                self.accepting = false;
                self.retry_accept_at = None;
                let _ = self.poll.registry().deregister(&mut self.listener);
            }
            if !self.accepting && self.clients.is_empty() {
                return;
            }
            let now = Instant::now();
            let expired: Vec<usize> = self
                .clients
                .iter()
                .filter(|(_, client)| client.deadline <= now)
                .map(|(key, _)| key)
                .collect();
            for key in expired {
                self.close(key);
            }
            if self.retry_accept_at.is_some_and(|at| at <= now) {
                self.accept_all();
            }
        }
    }

    /// Until the soonest deadline or accept retry; no timeout while nothing is due.
    fn timeout(&self) -> Option<Duration> {
        let soonest = self
            .clients
            .iter()
            .map(|(_, client)| client.deadline)
            .chain(self.retry_accept_at)
            .min()?;
        Some(soonest.saturating_duration_since(Instant::now()))
    }

    /// Accepts until the backlog is empty (edge triggering announces it only once).
    fn accept_all(&mut self) {
        self.retry_accept_at = None;
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.raw_os_error() == Some(libc::EMFILE) && self.spare.is_some() => {
                    drop(self.spare.take());
                    match self.listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    }
                }
                // The greeting loops' taxonomy: one lost connection goes on; running
                // out, or anything unexpected, waits rather than spins.
                Err(err) => {
                    debug!(target: "greeter::metrics_http", "metrics: accept failed: {}", describe_io_error(&err));
                    match accept::classify(&err) {
                        AcceptFailure::PerConnection => continue,
                        AcceptFailure::ResourcesExhausted | AcceptFailure::Unexpected => {
                            self.retry_accept_at = Some(Instant::now() + ACCEPT_RETRY_DELAY);
                            return;
                        }
                    }
                }
            };
            self.admit(stream);
        }
    }

    /// Takes a new client, closing the oldest one still reading its request (or the
    /// oldest of all) when the table is full.
    fn admit(&mut self, mut stream: TcpStream) {
        if self.clients.len() >= MAX_CLIENTS {
            let oldest = |reading_only: bool| {
                self.clients
                    .iter()
                    .filter(|(_, client)| {
                        !reading_only || matches!(client.phase, ClientPhase::Reading(_))
                    })
                    .min_by_key(|(_, client)| client.accepted)
                    .map(|(key, _)| key)
            };
            if let Some(key) = oldest(true).or_else(|| oldest(false)) {
                self.close(key);
            }
        }
        let key = self.clients.vacant_key();
        // Both directions from the start, so that no phase change needs an epoll_ctl
        // (edge triggering makes the extra writable events rare).
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            debug!(
                target: "greeter::metrics_http", "metrics: cannot register a client: {}",
                describe_io_error(&err)
            );
            return;
        }
        let now = Instant::now();
        self.clients.insert(Client {
            stream,
            accepted: now,
            deadline: now + CLIENT_BUDGET,
            phase: ClientPhase::Reading(Vec::new()),
        });
    }

    /// Moves client `key` along after a readiness event.
    fn advance(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let mut next = client.step();
        if let Next::Answer(request) = next {
            let response = self.routes.respond(&request);
            let client = &mut self.clients[key];
            client.phase = ClientPhase::Writing(response, 0);
            next = client.step();
        }
        if next == Next::Close {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        // Dropping the stream closes it, which also takes it out of the poll.
        if self.clients.try_remove(key).is_some() && self.spare.is_none() {
            self.spare = File::open("/dev/null").ok();
        }
    }
}

impl Client {
    /// Does what the phase can do now without blocking.
    fn step(&mut self) -> Next {
        let result = match &mut self.phase {
            ClientPhase::Reading(head) => read_request(&mut self.stream, head),
            ClientPhase::Writing(response, written) => {
                match write_greeting(&mut self.stream, response, written) {
                    WriteProgress::Complete => {
                        // All out: FIN, then wait briefly for the client's EOF.
                        let _ = self.stream.shutdown(Shutdown::Write);
                        self.phase = ClientPhase::Lingering;
                        self.deadline = Instant::now() + LINGER;
                        discard_until_eof(&mut self.stream)
                    }
                    WriteProgress::WouldBlock => Ok(Next::Wait),
                    WriteProgress::Failed(err) => Err(err),
                }
            }
            ClientPhase::Lingering => discard_until_eof(&mut self.stream),
        };
        result.unwrap_or_else(|err| {
            debug!(target: "greeter::metrics_http", "metrics: a client failed: {}", describe_io_error(&err));
            Next::Close
        })
    }
}

/// Reads what has arrived of a request head; once it is whole (or cannot be), what it
/// asks for. It holds at most one byte more than [`MAX_REQUEST_BYTES`], enough to
/// tell that a head is too long.
fn read_request(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<Next> {
    let mut chunk = [0u8; 1024];
    loop {
        // Up to one byte past the limit (never 0, which would read as EOF): by then
        // parse_request has answered.
        let room = (MAX_REQUEST_BYTES.saturating_sub(head.len()) + 1).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(Next::Close),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Wait),
            Err(err) => return Err(err),
        }
        if let Some(request) = parse_request(head) {
            return Ok(Next::Answer(request));
        }
    }
}

/// What a request head asks for, or `None` while it is not whole yet. Only its first
/// [`MAX_REQUEST_BYTES`] are parsed: a head not whole within them is too long however
/// the bytes arrived (in one read or many).
fn parse_request(head: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let too_large = Request::Refused("431 Request Header Fields Too Large", "too large\n");
    match request.parse(&head[..head.len().min(MAX_REQUEST_BYTES)]) {
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or("");
            // A query string (Prometheus's `params:`) does not change what is served.
            let path = request.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path).to_owned();
            // The first `Accept` only, as Go's `Header.Get` reads it.
            let accept = request
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case("accept"))
                .map(|header| header.value);
            let format = negotiate(accept);
            Some(match method {
                "GET" => Request::Get {
                    path,
                    head_only: false,
                    format,
                },
                "HEAD" => Request::Get {
                    path,
                    head_only: true,
                    format,
                },
                _ => Request::Refused("405 Method Not Allowed", "only GET and HEAD\n"),
            })
        }
        Ok(httparse::Status::Partial) if head.len() <= MAX_REQUEST_BYTES => None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => Some(too_large),
        Err(_) => Some(Request::Refused("400 Bad Request", "bad request\n")),
    }
}

/// Reads and discards input: `Close` at the client's EOF, else `Wait`. No byte
/// budget: the deadline bounds both the time and, at loopback speeds, the bytes.
fn discard_until_eof(stream: &mut TcpStream) -> io::Result<Next> {
    match discard_input(stream, &mut 0, usize::MAX, |_| {}) {
        InputState::Eof => Ok(Next::Close),
        InputState::Quiet | InputState::BudgetSpent => Ok(Next::Wait),
        InputState::Failed(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
