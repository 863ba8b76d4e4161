//! The server: one thread, one `mio::Poll`, one listener.
//!
//! The life of a connection:
//!
//! ```text
//! accept ─► write greeting ─► all written ─► shutdown(Write) ─► TCP_INFO: nothing
//!                │                                   │          unsent, no input ─► close
//!                │ partial                           │
//!                ▼                                   ├─ unsent ─► Flushing: discard input;
//!  Writing: register WRITABLE, write deadline;       │   on each event ask TCP_INFO again;
//!  write the rest on each writable event ─► all      │   all sent ─► close (or Lingering
//!  written ─► shutdown(Write) ─► TCP_INFO ─► (same)  │   if input came); write deadline
//!                                                    └─ input ─► Lingering: discard input
//!                                                        until EOF, the linger deadline or
//!                                                        the byte budget ─► close
//! ```
//!
//! Most connections take the top line: `accept4`, `write`, `shutdown`,
//! `getsockopt(TCP_INFO)`, `close`; they never touch the slab or `epoll_ctl`.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, log_enabled, warn, Level};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::accept::{self, AcceptFailure, ACCEPT_RETRY_DELAY};
use crate::config::Config;
use crate::connection::{
    after_greeting, discard_input, peer_went_away, would_block, write_greeting, AfterGreeting,
    Connection, InputState, Phase, WriteProgress, LINGER_DISCARD_LIMIT,
};
use crate::deadlines::{saturating_add, Deadline, DeadlineQueue};
use crate::error::{describe_io_error, StartupError};
use crate::fdlimit;
use crate::handle::{ServerHandle, Snapshot, StopRequest};
use crate::per_ip::PerIpLimit;
use crate::tcp_state::TcpProgress;
use crate::totals::Totals;

/// Reserved tokens sit at the top of the range; connections use their slab key, which
/// is bounded by `--max-connections` and so never reaches these.
const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// The most connections one round of the loop accepts. A flood that refills the
/// backlog as fast as it drains cannot then starve held connections, deadlines or a
/// shutdown: the next round comes back to the backlog without waiting for an event.
pub const ACCEPT_BUDGET: usize = 256;

/// Stale deadline entries tolerated beyond twice the held connections before a queue
/// is compacted (so that a server holding nothing does not compact on every close).
const DEADLINE_SLACK: usize = 64;

/// How many readiness events one `epoll_wait` may return.
const EVENTS_PER_POLL: usize = 1024;

/// A flushing connection waits for input and for the moment the kernel has sent the
/// rest. No event says "all sent", but after `shutdown(Write)` every wake-up of the
/// socket is reported as writable, and the last one comes when the peer acknowledges
/// our FIN; each event re-checks `TCP_INFO`.
const FLUSHING_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// The greeting server. Build it with [`Server::bind`] or [`Server::from_listener`],
/// then call [`Server::run`].
///
/// # Examples
/// ```no_run
/// use greeter::{Config, Server};
///
/// let server = Server::bind(Config::new("127.0.0.1:0".parse().unwrap()))?;
/// println!("listening on {}", server.local_addr());
/// let handle = server.handle();
/// let running = std::thread::spawn(move || server.run());
/// handle.shutdown()?;
/// let totals = running.join().unwrap()?;
/// println!("greeted {}", totals.greeted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    /// The readiness poll: the listener, the waker and the connections
    /// that wait for something.
    poll: Poll,
    /// The listening socket; `None` once a shutdown has stopped accepting.
    listener: Option<TcpListener>,
    /// The address actually bound (with the real port when 0 was asked for).
    local_addr: SocketAddr,
    /// The greeting and the limits.
    config: Config,
    /// Connections that could not be finished at once, keyed by their token.
    connections: Slab<Connection>,
    /// Write-timeout deadlines of connections still taking their greeting (writing or
    /// flushing).
    write_deadlines: DeadlineQueue,
    /// Linger-timeout deadlines of connections waiting for their peer's EOF.
    linger_deadlines: DeadlineQueue,
    /// Whether to accept when the listener is readable, and why not.
    accept_state: AcceptState,
    /// An ongoing accept failure (exhaustion): logged once when it starts and once
    /// when it ends, never once per failed accept.
    accept_trouble: Option<AcceptTrouble>,
    /// Carries shutdown requests in and the published totals out; read after every
    /// poll.
    handle: ServerHandle,
    /// Held connections per client address, when `--max-per-ip` is set.
    per_ip: Option<PerIpLimit>,
    /// When a shutdown's drain ends; `None` while serving.
    drain_deadline: Option<Instant>,
    /// The counters behind the `totals` line.
    totals: Totals,
    /// The serial number for the next held connection.
    next_serial: u64,
    /// When the server was built: the epoch of `Connection::accepted_ms`.
    started: Instant,
}

/// Whether the accept loop may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// Accept whenever the listener reports readiness.
    Ready,
    /// The last round spent its accept budget with connections still queued; no new
    /// event will announce them, so the next round polls without waiting and accepts
    /// again.
    BudgetSpent,
    /// Stopped at `--max-connections`; connections may wait in the backlog, and no new
    /// event will announce them, so accept again as soon as a slot frees.
    AtCapacity,
    /// Stopped by an error that retrying at once cannot fix; retry at `retry_at`, or
    /// sooner when one of our connections closes and frees a descriptor.
    Paused {
        /// When to try again.
        retry_at: Instant,
        /// Set when a connection closed since the pause began.
        descriptor_freed: bool,
    },
}

/// An episode of failing accepts, for its start and end log lines.
#[derive(Debug)]
struct AcceptTrouble {
    /// When the first accept failed.
    since: Instant,
    /// How many accepts failed since.
    failures: u64,
}

/// Why a connection was closed; each maps to one counter of [`Totals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Greeted,
    PeerReset,
    WriteTimeout,
    DrainTimeout,
    PerIpLimit,
    Flood,
    Error,
}

impl CloseReason {
    /// The `reason=` value of the `CLOSE` log line.
    fn as_str(self) -> &'static str {
        match self {
            CloseReason::Greeted => "greeted",
            CloseReason::PeerReset => "reset",
            CloseReason::WriteTimeout => "timeout",
            CloseReason::DrainTimeout => "drain",
            CloseReason::PerIpLimit => "per-ip",
            CloseReason::Flood => "flood",
            CloseReason::Error => "error",
        }
    }

    /// The reason for closing after a failed read or write.
    fn for_error(err: &io::Error) -> Self {
        if peer_went_away(err) {
            CloseReason::PeerReset
        } else {
            CloseReason::Error
        }
    }
}

/// Binds a listening TCP socket with an explicit backlog (`std` and mio use 128, which
/// drops SYNs under bursts) and `SO_REUSEADDR`, so a restart is not refused while old
/// connections sit in TIME_WAIT. Never `SO_REUSEPORT`: a second server on the same
/// address must fail, not silently take half the connections (workers share this one
/// socket instead). With `send_buffer`, `SO_SNDBUF` is set here once and every accepted
/// socket inherits it.
///
/// # Errors
/// A one-line [`StartupError`] naming the address, the cause and the likely fix.
pub fn listen(
    addr: SocketAddr,
    backlog: i32,
    send_buffer: Option<usize>,
) -> Result<std::net::TcpListener, StartupError> {
    let fail = |err: io::Error| {
        let hint = match err.kind() {
            io::ErrorKind::AddrInUse => Some(
                "another process is listening on this port: stop it, or choose another \
                 --port (0 picks a free one)",
            ),
            io::ErrorKind::PermissionDenied => {
                Some("ports below 1024 need privileges: use a higher --port")
            }
            io::ErrorKind::AddrNotAvailable => {
                Some("no local interface has this address: check --host")
            }
            _ => None,
        };
        StartupError::new(format!("cannot listen on {addr}"), err, hint)
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

impl Server {
    /// Binds `config.listen` and builds a server on it.
    ///
    /// # Errors
    /// As [`listen`], or if the event loop cannot be created.
    pub fn bind(config: Config) -> Result<Server, StartupError> {
        let listener = listen(config.listen, config.backlog, config.send_buffer)?;
        Server::from_listener(listener, config)
    }

    /// Builds a server on an already-bound, listening socket (`config.listen` and
    /// `config.backlog` are then not used).
    ///
    /// # Errors
    /// If the socket cannot be made nonblocking or the event loop cannot be created.
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: Config,
    ) -> Result<Server, StartupError> {
        let loop_error = |err| StartupError::new("cannot set up the event loop", err, None);
        listener.set_nonblocking(true).map_err(loop_error)?;
        let local_addr = listener.local_addr().map_err(loop_error)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new().map_err(loop_error)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(loop_error)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(loop_error)?;
        // Sized for the connection limit up front, so no doubling copy happens under
        // load; capacity that is never touched costs address space, not memory. But
        // never beyond what the open-file limit lets the server hold.
        let capacity = config.max_connections.min(fdlimit::soft_limit());
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            write_deadlines: DeadlineQueue::with_capacity(config.write_timeout, capacity),
            linger_deadlines: DeadlineQueue::with_capacity(config.linger_timeout, capacity),
            connections: Slab::with_capacity(capacity),
            per_ip: config.max_per_ip.map(PerIpLimit::new),
            config,
            accept_state: AcceptState::Ready,
            accept_trouble: None,
            handle: ServerHandle::new(waker),
            drain_deadline: None,
            totals: Totals::default(),
            next_serial: 0,
            started: Instant::now(),
        })
    }

    /// The address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listening socket's `SO_SNDBUF` as the kernel reports it, if `--send-buffer`
    /// set one (otherwise accepted sockets autotune theirs).
    pub fn send_buffer(&self) -> Option<usize> {
        self.config.send_buffer?;
        let listener = self.listener.as_ref()?;
        SockRef::from(listener).send_buffer_size().ok()
    }

    /// A handle that shuts the server down or reads its totals from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until shut down, then returns what was done.
    ///
    /// # Errors
    /// Only if polling itself fails; errors of single connections or accepts are
    /// counted and logged, never returned.
    pub fn run(mut self) -> io::Result<Totals> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        while !self.turn(&mut events, None)? {}
        self.publish();
        Ok(self.totals)
    }

    /// Runs one round of the loop: waits for readiness (at most `max_wait`, and never
    /// past the next deadline), then handles what is ready. [`Server::run`] is these
    /// rounds until a shutdown has drained; benchmarks use single rounds to time the
    /// accept/send path alone.
    ///
    /// Returns `true` once a shutdown has finished (nothing more will happen).
    ///
    /// # Errors
    /// Only if polling itself fails.
    pub fn turn(&mut self, events: &mut Events, max_wait: Option<Duration>) -> io::Result<bool> {
        let until_deadline = self
            .next_wakeup()
            .map(|at| at.saturating_duration_since(Instant::now()));
        let timeout = match (until_deadline, max_wait) {
            _ if self.accept_state == AcceptState::BudgetSpent => Some(Duration::ZERO),
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Err(err) = self.poll.poll(events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(err);
        }
        let mut listener_readable = false;
        for event in events.iter() {
            match event.token() {
                LISTENER => listener_readable = true,
                // The waker only interrupts the poll; the request is read below.
                WAKER => {}
                Token(key) => self.on_connection_event(key),
            }
        }
        let now = Instant::now();
        self.expire_deadlines(now);
        let stop = self.handle.requested();
        if stop != StopRequest::None && self.drain_deadline.is_none() {
            self.begin_drain(now);
        }
        // The listener goes last: a key freed by a close above can be reused by a new
        // connection only once every event of this batch, which named the old holder,
        // has been handled.
        if self.should_accept(listener_readable, now) {
            self.accept_queued(now, ACCEPT_BUDGET, self.config.max_connections);
        }
        let finished = match self.drain_deadline {
            Some(drain_deadline) => {
                if stop == StopRequest::Now || now >= drain_deadline {
                    self.close_all(CloseReason::DrainTimeout);
                }
                self.connections.is_empty()
            }
            None => false,
        };
        self.publish();
        Ok(finished)
    }

    /// Makes this round's figures visible to [`ServerHandle::snapshot`].
    fn publish(&self) {
        self.handle.publish(Snapshot {
            totals: self.totals,
            in_flight: self.connections.len(),
        });
    }

    /// What the server has done so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The soonest moment the loop must wake up without an event, if any.
    fn next_wakeup(&self) -> Option<Instant> {
        let retry_at = match self.accept_state {
            AcceptState::Paused { retry_at, .. } => Some(retry_at),
            _ => None,
        };
        [
            self.write_deadlines.next(),
            self.linger_deadlines.next(),
            retry_at,
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn should_accept(&self, listener_readable: bool, now: Instant) -> bool {
        if self.listener.is_none() {
            return false;
        }
        match self.accept_state {
            AcceptState::Ready => listener_readable,
            AcceptState::BudgetSpent => true,
            AcceptState::AtCapacity => self.connections.len() < self.config.max_connections,
            AcceptState::Paused {
                retry_at,
                descriptor_freed,
            } => descriptor_freed || now >= retry_at,
        }
    }

    /// Accepts until the backlog is empty (edge triggering announces it only once),
    /// `budget` connections were taken, `cap` connections are held, or accepting fails
    /// for lack of resources.
    fn accept_queued(&mut self, now: Instant, budget: usize, cap: usize) {
        for _ in 0..budget {
            if self.connections.len() >= cap {
                // Leave the rest in the kernel's backlog until a slot frees.
                self.accept_state = AcceptState::AtCapacity;
                return;
            }
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.greet(stream, peer, now),
                Err(err) if would_block(&err) => {
                    self.accept_state = AcceptState::Ready;
                    self.end_accept_trouble(now);
                    return;
                }
                Err(err) => match accept::classify(&err) {
                    AcceptFailure::PerConnection => {
                        self.totals.accept_errors += 1;
                        debug!("ACCEPT_ERROR error=\"{}\"", describe_io_error(&err));
                    }
                    AcceptFailure::ResourcesExhausted | AcceptFailure::Unexpected => {
                        self.pause_accepting(&err, now);
                        return;
                    }
                },
            }
        }
        self.accept_state = AcceptState::BudgetSpent;
    }

    fn pause_accepting(&mut self, err: &io::Error, now: Instant) {
        self.accept_state = AcceptState::Paused {
            retry_at: saturating_add(now, ACCEPT_RETRY_DELAY),
            descriptor_freed: false,
        };
        match &mut self.accept_trouble {
            Some(trouble) => trouble.failures += 1,
            None => {
                warn!(
                    "accept paused: {}; retrying every {}ms and whenever a connection closes \
                     ({})",
                    describe_io_error(err),
                    ACCEPT_RETRY_DELAY.as_millis(),
                    accept::remedy(err)
                );
                self.accept_trouble = Some(AcceptTrouble {
                    since: now,
                    failures: 1,
                });
            }
        }
    }

    fn end_accept_trouble(&mut self, now: Instant) {
        if let Some(trouble) = self.accept_trouble.take() {
            info!(
                "accept resumed: backlog drained after {} failed accepts over {}ms",
                trouble.failures,
                now.duration_since(trouble.since).as_millis()
            );
        }
    }

    /// The fast path: write the greeting at once, check once for input, close.
    fn greet(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        self.totals.accepted += 1;
        if let Some(per_ip) = &self.per_ip {
            if !per_ip.admits(peer.ip()) {
                // Closed at once, without the greeting: this address holds its share.
                let accepted_ms = self.millis_since_start(now);
                self.record_close(peer, accepted_ms, 0, CloseReason::PerIpLimit);
                return;
            }
        }
        if log_enabled!(Level::Debug) {
            debug!(
                "ACCEPT peer={peer} n={}/{}",
                self.connections.len() + 1,
                self.config.max_connections
            );
        }
        let mut sent = 0;
        let progress = write_greeting(&mut stream, &self.config.greeting, &mut sent);
        self.totals.bytes_sent += sent as u64;
        match progress {
            WriteProgress::Complete => match shut_down_and_check(&stream) {
                AfterGreeting::Close => {
                    let accepted_ms = self.millis_since_start(now);
                    self.record_close(peer, accepted_ms, sent, CloseReason::Greeted);
                }
                AfterGreeting::Flush => {
                    self.hold(stream, peer, now, Phase::Flushing { discarded: 0 })
                }
                AfterGreeting::Linger => {
                    self.hold(stream, peer, now, Phase::Lingering { discarded: 0 })
                }
            },
            WriteProgress::WouldBlock => {
                self.totals.partial_writes += 1;
                self.hold(stream, peer, now, Phase::Writing { sent });
            }
            WriteProgress::Failed(err) => self.record_close(
                peer,
                self.millis_since_start(now),
                sent,
                CloseReason::for_error(&err),
            ),
        }
    }

    /// Puts a connection that cannot be finished at once in the slab and the poll.
    fn hold(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        accepted_at: Instant,
        phase: Phase,
    ) {
        let key = self.connections.vacant_key();
        let serial = self.next_serial;
        self.next_serial += 1;
        let accepted_ms = self.millis_since_start(accepted_at);
        // The deadline of a phase counts from accept: the write timeout bounds the whole
        // time a peer takes to get the greeting, from us or from the kernel.
        let interest = match phase {
            Phase::Writing { .. } => {
                self.write_deadlines.push(accepted_at, key, serial);
                Interest::WRITABLE
            }
            Phase::Flushing { .. } => {
                self.totals.lingered += 1;
                self.write_deadlines.push(accepted_at, key, serial);
                FLUSHING_INTEREST
            }
            Phase::Lingering { .. } => {
                self.totals.lingered += 1;
                self.linger_deadlines.push(accepted_at, key, serial);
                Interest::READABLE
            }
        };
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            warn!(
                "cannot register a connection with the poll: {}",
                describe_io_error(&err)
            );
            let (sent, reason) = match phase {
                Phase::Writing { sent } => (sent, CloseReason::Error),
                Phase::Flushing { .. } | Phase::Lingering { .. } => {
                    (self.config.greeting.len(), CloseReason::Greeted)
                }
            };
            self.record_close(peer, accepted_ms, sent, reason);
            return;
        }
        let inserted = self.connections.insert(Connection {
            stream,
            peer,
            accepted_ms,
            phase,
            serial,
        });
        debug_assert_eq!(inserted, key, "the slab filled the key it announced");
        if let Some(per_ip) = &mut self.per_ip {
            per_ip.hold(peer.ip());
        }
    }

    fn on_connection_event(&mut self, key: usize) {
        // A closed connection's events can still be in this batch: ignore them.
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Writing { mut sent } => {
                let before = sent;
                let progress = write_greeting(&mut conn.stream, &self.config.greeting, &mut sent);
                self.totals.bytes_sent += (sent - before) as u64;
                conn.phase = Phase::Writing { sent };
                match progress {
                    WriteProgress::Complete => self.finish_writing(key),
                    WriteProgress::WouldBlock => {}
                    WriteProgress::Failed(err) => self.close(key, CloseReason::for_error(&err)),
                }
            }
            Phase::Flushing { mut discarded } => {
                let input = discard_input(&mut conn.stream, &mut discarded, LINGER_DISCARD_LIMIT);
                conn.phase = Phase::Flushing { discarded };
                match input {
                    InputState::Quiet => self.check_flushed(key, Instant::now()),
                    // The peer closed its side: a late byte of its own can no longer
                    // draw a reset, and the kernel sends the rest after the close.
                    InputState::Eof => self.close(key, CloseReason::Greeted),
                    InputState::BudgetSpent => self.close(key, CloseReason::Flood),
                    InputState::Failed(err) => self.close(key, CloseReason::for_error(&err)),
                }
            }
            Phase::Lingering { mut discarded } => {
                let state = discard_input(&mut conn.stream, &mut discarded, LINGER_DISCARD_LIMIT);
                conn.phase = Phase::Lingering { discarded };
                if !matches!(state, InputState::Quiet) {
                    self.close(key, CloseReason::Greeted);
                }
            }
        }
    }

    /// After a greeting that needed several writes: shut down the write side and, as
    /// on the fast path, close at once or hold the connection until the rest is sent
    /// or the peer closes.
    fn finish_writing(&mut self, key: usize) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let (phase, interest) = match shut_down_and_check(&conn.stream) {
            AfterGreeting::Close => return self.close(key, CloseReason::Greeted),
            // Its write deadline, pushed at accept, goes on bounding it.
            AfterGreeting::Flush => (Phase::Flushing { discarded: 0 }, FLUSHING_INTEREST),
            AfterGreeting::Linger => {
                self.linger_deadlines.push(Instant::now(), key, conn.serial);
                (Phase::Lingering { discarded: 0 }, Interest::READABLE)
            }
        };
        self.totals.lingered += 1;
        conn.phase = phase;
        // Re-registering re-checks readiness, so input that is already queued (or an
        // EOF) produces an event without an extra read here.
        let registered = self
            .poll
            .registry()
            .reregister(&mut conn.stream, Token(key), interest);
        if registered.is_err() {
            self.close(key, CloseReason::Greeted);
        }
    }

    /// A flushing connection whose input is drained: once the kernel has sent the
    /// whole greeting it closes, or lingers if the peer has sent data.
    fn check_flushed(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let Phase::Flushing { discarded } = conn.phase else {
            return;
        };
        match TcpProgress::of(&conn.stream) {
            Ok(progress) if progress.unsent > 0 => {}
            Ok(_) if discarded > 0 => {
                // Stays registered for writability too: the spurious events that
                // brings are rare and cheaper than an epoll_ctl.
                conn.phase = Phase::Lingering { discarded };
                self.linger_deadlines.push(now, key, conn.serial);
            }
            _ => self.close(key, CloseReason::Greeted),
        }
    }

    fn expire_deadlines(&mut self, now: Instant) {
        while let Some(due) = self.write_deadlines.pop_expired(now) {
            // A flushing connection whose rest went out since its last event is
            // finished, not timed out.
            if self.connections.get(due.key).is_some_and(|conn| {
                conn.serial == due.serial && matches!(conn.phase, Phase::Flushing { .. })
            }) {
                self.check_flushed(due.key, now);
            }
            self.expire(due.key, due.serial, CloseReason::WriteTimeout);
        }
        while let Some(due) = self.linger_deadlines.pop_expired(now) {
            self.expire(due.key, due.serial, CloseReason::Greeted);
        }
    }

    /// Closes the connection a due deadline names, unless the entry is stale: the key
    /// has a new holder, or the connection has left the phase the deadline was for.
    fn expire(&mut self, key: usize, serial: u64, reason: CloseReason) {
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        let phase_matches = match conn.phase {
            Phase::Writing { .. } | Phase::Flushing { .. } => reason == CloseReason::WriteTimeout,
            Phase::Lingering { .. } => reason == CloseReason::Greeted,
        };
        if conn.serial == serial && phase_matches {
            self.close(key, reason);
        }
    }

    /// Stops accepting and starts the drain: connections already queued in the
    /// backlog are greeted first, beyond `--max-connections` if need be, since closing
    /// the listener would reset them. The kernel queues at most `backlog + 1`, so that
    /// many accepts take every one queued now without chasing later arrivals forever.
    fn begin_drain(&mut self, now: Instant) {
        if self.listener.is_some() {
            let queued_at_most = self.config.backlog.max(0) as usize + 1;
            self.accept_queued(now, queued_at_most, usize::MAX);
        }
        if let Some(mut listener) = self.listener.take() {
            // Best effort: dropping the listener closes it and leaves the poll anyway.
            let _ = self.poll.registry().deregister(&mut listener);
        }
        // Nothing is accepted any more: no retry timer, no zero-timeout polls.
        self.accept_state = AcceptState::Ready;
        self.drain_deadline = Some(saturating_add(now, self.config.drain_timeout));
        info!(
            "shutdown: stopped accepting; waiting up to {} for {} in-flight greetings",
            humantime::format_duration(self.config.drain_timeout),
            self.connections.len()
        );
    }

    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let reason = match self.connections[key].phase {
                Phase::Writing { .. } | Phase::Flushing { .. } => reason,
                Phase::Lingering { .. } => CloseReason::Greeted,
            };
            self.close(key, reason);
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        // Dropping the stream closes the socket, which also removes it from the poll:
        // no deregister call is needed for a descriptor that is never duplicated.
        let conn = self.connections.remove(key);
        if matches!(
            reason,
            CloseReason::WriteTimeout | CloseReason::DrainTimeout | CloseReason::Flood
        ) {
            // The peer is not taking the greeting: abort with a reset so the kernel
            // frees the queued bytes now instead of keeping an orphan socket that
            // retransmits to a peer that will not read (best effort).
            let _ = SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        let sent = match conn.phase {
            Phase::Writing { sent } => sent,
            Phase::Flushing { .. } | Phase::Lingering { .. } => self.config.greeting.len(),
        };
        self.record_close(conn.peer, conn.accepted_ms, sent, reason);
        if let Some(per_ip) = &mut self.per_ip {
            per_ip.release(conn.peer.ip());
        }
        self.compact_deadlines();
        if let AcceptState::Paused {
            descriptor_freed, ..
        } = &mut self.accept_state
        {
            *descriptor_freed = true;
        }
    }

    /// Drops the entries of connections that closed (or moved on) before their
    /// deadline, once they outnumber the held connections: amortised O(1) per close,
    /// and each queue stays below `2 x held + DEADLINE_SLACK` entries.
    fn compact_deadlines(&mut self) {
        let bound = 2 * self.connections.len() + DEADLINE_SLACK;
        let connections = &self.connections;
        let holds = |deadline: &Deadline, in_phase: fn(&Phase) -> bool| {
            connections
                .get(deadline.key)
                .is_some_and(|conn| conn.serial == deadline.serial && in_phase(&conn.phase))
        };
        if self.write_deadlines.len() > bound {
            self.write_deadlines.retain(|deadline| {
                holds(deadline, |phase| {
                    matches!(phase, Phase::Writing { .. } | Phase::Flushing { .. })
                })
            });
        }
        if self.linger_deadlines.len() > bound {
            self.linger_deadlines.retain(|deadline| {
                holds(deadline, |phase| matches!(phase, Phase::Lingering { .. }))
            });
        }
    }

    fn record_close(
        &mut self,
        peer: SocketAddr,
        accepted_ms: u32,
        sent: usize,
        reason: CloseReason,
    ) {
        let counter = match reason {
            CloseReason::Greeted => &mut self.totals.greeted,
            CloseReason::PeerReset => &mut self.totals.reset,
            CloseReason::WriteTimeout => &mut self.totals.timed_out,
            CloseReason::DrainTimeout => &mut self.totals.drained,
            CloseReason::PerIpLimit => &mut self.totals.per_ip_rejected,
            CloseReason::Flood => &mut self.totals.flooded,
            CloseReason::Error => &mut self.totals.failed,
        };
        *counter += 1;
        if log_enabled!(Level::Debug) {
            let elapsed_ms = self
                .millis_since_start(Instant::now())
                .wrapping_sub(accepted_ms);
            debug!(
                "CLOSE peer={peer} bytes={sent} ms={elapsed_ms} reason={}",
                reason.as_str()
            );
        }
    }

    /// Milliseconds since the server started, wrapping every 49 days (only ever used
    /// as a difference over one connection's life).
    fn millis_since_start(&self, at: Instant) -> u32 {
        at.duration_since(self.started).as_millis() as u32
    }
}

/// Sends the FIN right behind the greeting, then asks the kernel whether anything is
/// left in either direction.
///
/// The FIN goes first because closing a socket that holds unread input sends a reset:
/// sent after the FIN, a reset can no longer turn the peer's clean EOF into an error,
/// even if the peer's bytes land between the check and the close (best effort: a peer
/// that is already gone shows in the check).
fn shut_down_and_check(stream: &TcpStream) -> AfterGreeting {
    let _ = stream.shutdown(Shutdown::Write);
    after_greeting(TcpProgress::of(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Connections that finish long before their deadlines leave entries behind; the
    /// queues must stay bounded by what is held, not grow with rate x timeout.
    #[test]
    fn deadline_queues_stay_bounded_by_held_connections() {
        let mut config =
            Config::new("127.0.0.1:0".parse().unwrap()).with_greeting(vec![7u8; 4 * 1024 * 1024]);
        config.write_timeout = Duration::from_secs(3600);
        config.linger_timeout = Duration::from_secs(3600);
        let mut server = Server::bind(config).unwrap();
        let addr = server.local_addr();
        let clients = std::thread::spawn(move || {
            for _ in 0..300 {
                let mut peer = std::net::TcpStream::connect(addr).unwrap();
                // Sending first makes the connection linger after its greeting too.
                std::io::Write::write_all(&mut peer, b"hi").unwrap();
                let mut sink = Vec::new();
                peer.read_to_end(&mut sink).unwrap();
                assert_eq!(sink.len(), 4 * 1024 * 1024);
            }
        });
        let mut events = Events::with_capacity(64);
        let mut most_queued = 0;
        while !clients.is_finished() {
            server
                .turn(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            let queued = server.write_deadlines.len() + server.linger_deadlines.len();
            let bound = 2 * (2 * server.connections.len() + DEADLINE_SLACK);
            assert!(
                queued <= bound,
                "{queued} deadlines queued for {} held",
                server.connections.len()
            );
            most_queued = most_queued.max(queued);
        }
        clients.join().unwrap();
        // Every connection was held after its greeting, so each pushed a deadline.
        assert_eq!(server.totals().lingered, 300, "{}", server.totals());
        assert!(most_queued > 0);
    }
}
