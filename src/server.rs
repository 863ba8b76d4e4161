//! The server: one thread, one `mio::Poll`, one or more listeners. This file is the loop
//! (`run`/`turn`), accepting and the drain. Each accepted connection is a
//! `Connection` advanced once by `held.rs`: most are greeted and closed right there
//! (`accept4`, `write`, `shutdown`, `getsockopt(TCP_INFO)`, `close`: no slab entry, no
//! `epoll_ctl`); the rest are held. Every close is counted and logged here, in
//! `record`. The accept policy lives in `accept.rs`, the socket setup in
//! [`crate::listener`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token, Waker};
use socket2::SockRef;

use crate::accept::{self, AcceptFailure, AcceptGate, ReadyListeners};
use crate::close::{log_close, log_pregreet, CloseReason, Closed};
use crate::config::{Config, MAX_GREETING_BYTES};
use crate::connection::Connection;
use crate::deadlines::saturating_add;
use crate::error::{describe_io_error, Failure};
use crate::fdlimit;
use crate::handle::{ServerHandle, Snapshot, StopRequest};
use crate::held::HeldConnections;
use crate::listener::{defer_accept, listen_config, ListeningSocket};
use crate::socket::would_block;
use crate::totals::Totals;
use crate::wake_one::{self, AcceptSet, Role};

/// Reserved tokens sit at the top of the range: the waker, then the listeners downward
/// (listener `i` is `usize::MAX - 1 - i`); connections use their slab key, which is
/// bounded by `--max-connections` and so never reaches these.
const WAKER: Token = Token(usize::MAX);

/// The token of listener `index`.
fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

/// The most connections one round of the loop accepts. A flood that refills the
/// backlog as fast as it drains cannot then starve held connections, deadlines or a
/// shutdown: the next round comes back to the backlog without waiting for an event.
pub const ACCEPT_BUDGET: usize = 256;

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::server";

/// How many readiness events one `epoll_wait` may return.
const EVENTS_PER_POLL: usize = 1024;

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
/// println!("greeted {}", totals.greeted());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    /// The readiness poll: the listener, the waker and the connections
    /// that wait for something.
    poll: Poll,
    /// The listening sockets, each with what its connections get; empty once a
    /// shutdown has stopped accepting.
    listeners: Vec<Listening>,
    /// The listeners that may have connections queued (an event came, or the last
    /// accept loop stopped before `WouldBlock`), in the order they are accepted from.
    ready: ReadyListeners,
    /// The addresses actually bound (with the real port when 0 was asked for).
    local_addrs: Vec<SocketAddr>,
    /// The limits (the greetings are the listeners').
    config: Config,
    /// Connections that could not be finished at once, with their deadlines.
    held: HeldConnections,
    /// Whether to accept when the listener is readable, and why not.
    gate: AcceptGate,
    /// Carries shutdown requests in and the published totals out; read after every
    /// poll.
    handle: ServerHandle,
    /// When a shutdown's drain ends; `None` while serving.
    drain_deadline: Option<Instant>,
    /// The counters behind the `totals` line.
    totals: Totals,
    /// The size of the first listener's greeting, for the snapshot.
    greeting_bytes: usize,
    /// Its place among workers that serve the same listening sockets (`None`: it
    /// serves them alone); see [`Server::follow_accept_set`].
    sharing: Option<Sharing>,
    /// Whether the listeners are in this loop's poll (they leave it while a loop that
    /// shares them is full, and for good at a drain).
    listening: bool,
}

/// A loop's place among workers that share listening sockets.
#[derive(Debug)]
struct Sharing {
    /// Which of the workers take wake-ups now.
    set: Arc<AcceptSet>,
    /// Its index among the workers, for the log.
    index: usize,
    /// When it listens (`wake_one.rs`).
    role: Role,
    /// Whether this accepting loop is counted as full in the set.
    counted_full: bool,
    /// While this accepting loop is counted as behind: until when, unless it falls
    /// behind again.
    behind_until: Option<Instant>,
    /// A covering helper that took an arrival while the first worker kept up: until
    /// when it stays out of the listener's poll (`wake_one.rs`).
    resting_until: Option<Instant>,
    /// Whether a covering helper stays in because the first worker is stuck (for the
    /// log: once per episode).
    covering_stuck: bool,
}

/// How long an accepting loop stays counted as behind after its last round that found
/// its backlog deep: helpers do not come and go with every round.
const BEHIND_HOLD: Duration = Duration::from_secs(1);

/// A listening socket with what the connections it accepts get.
#[derive(Debug)]
struct Listening {
    /// The socket.
    socket: TcpListener,
    /// Its listener's index in [`Config::listeners`]: what its connections get is
    /// that listener's entry in the loop's one table (`served.rs`).
    listener: u16,
    /// Whether its connections begin with a PROXY protocol header.
    proxy_protocol: bool,
}

/// Why an accept loop on one listener stopped before its backlog was empty.
#[derive(Debug)]
enum Stopped {
    /// Its share of the round's budget ran out.
    ShareSpent,
    /// The gate stopped accepting (the cap, or a pause).
    Gate,
}

/// The most listening sockets one server serves (a connection names its socket in
/// 16 bits).
const MAX_LISTENING_SOCKETS: usize = u16::MAX as usize;

/// The size of the first listener's greeting (the one the snapshot reports).
fn first_greeting_bytes(config: &Config) -> usize {
    config
        .listeners
        .first()
        .map_or(0, |listener| listener.greeting.len())
}

impl Server {
    /// Binds every address of `config.listen` and builds a server on them.
    ///
    /// # Errors
    /// As [`crate::listener::listen`], or if the event loop cannot be created.
    pub fn bind(config: Config) -> Result<Server, Failure> {
        let sockets = listen_config(&config)?;
        Server::from_sockets(sockets, config)
    }

    /// Builds a server on an already-bound, listening socket, serving it as the first
    /// listener of `config` (whose addresses, `backlog` and `send_buffer` are then not
    /// used).
    ///
    /// # Errors
    /// If the socket cannot be made nonblocking or the event loop cannot be created.
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: Config,
    ) -> Result<Server, Failure> {
        let socket = ListeningSocket {
            socket: listener,
            listener: 0,
        };
        Server::from_sockets(vec![socket], config)
    }

    /// Builds a server on already-bound, listening sockets (at least one), each
    /// serving the listener of `config` it names.
    ///
    /// # Errors
    /// If a socket cannot be made nonblocking, names no listener of `config`, or the
    /// event loop cannot be created.
    pub fn from_sockets(sockets: Vec<ListeningSocket>, config: Config) -> Result<Server, Failure> {
        let loop_error = |err| Failure::new("cannot set up the event loop", err, None);
        let poll = Poll::new().map_err(loop_error)?;
        let mut local_addrs = Vec::with_capacity(sockets.len());
        let mut registered = Vec::with_capacity(sockets.len());
        for (index, ListeningSocket { socket, listener }) in sockets.into_iter().enumerate() {
            let Some(served) = config.listeners.get(listener) else {
                return Err(loop_error(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a socket names listener {listener}, which the config lacks"),
                )));
            };
            if served.greeting.len() as u64 > MAX_GREETING_BYTES {
                return Err(loop_error(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a greeting of {} bytes is over 1 GiB",
                        served.greeting.len()
                    ),
                )));
            }
            socket.set_nonblocking(true).map_err(loop_error)?;
            local_addrs.push(socket.local_addr().map_err(loop_error)?);
            if served.proxy_protocol {
                defer_accept(&socket);
            }
            let socket = TcpListener::from_std(socket);
            // One worker woken per arrival when several share the socket.
            wake_one::register(poll.registry(), socket.as_raw_fd(), listener_token(index))
                .map_err(loop_error)?;
            registered.push(Listening {
                socket,
                // Fits: checked against MAX_LISTENING_SOCKETS below, and a config has
                // no more listeners than sockets.
                listener: listener as u16,
                proxy_protocol: served.proxy_protocol,
            });
        }
        if registered.is_empty() {
            return Err(loop_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listening socket",
            )));
        }
        let waker = Waker::new(poll.registry(), WAKER).map_err(loop_error)?;
        let registry = poll.registry().try_clone().map_err(loop_error)?;
        // Sized for the connection limit up front, so no doubling copy happens under
        // load; capacity that is never touched costs address space, not memory. But
        // never beyond what the open-file limit lets the server hold.
        let capacity = config.max_connections.min(fdlimit::soft_limit());
        if registered.len() > MAX_LISTENING_SOCKETS {
            return Err(loop_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("more than {MAX_LISTENING_SOCKETS} listening sockets"),
            )));
        }
        let server = Server {
            poll,
            ready: ReadyListeners::new(registered.len()),
            listeners: registered,
            local_addrs,
            held: HeldConnections::new(registry, &config, capacity),
            greeting_bytes: first_greeting_bytes(&config),
            config,
            gate: AcceptGate::new(),
            handle: ServerHandle::new(waker),
            drain_deadline: None,
            totals: Totals::default(),
            sharing: None,
            listening: true,
        };
        // Readers see its greeting and limit before its first round.
        server.publish();
        Ok(server)
    }

    /// The (first) address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address the server listens on, in order, with the real ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The listening socket's `SO_SNDBUF` as the kernel reports it, if `--send-buffer`
    /// set one (otherwise accepted sockets autotune theirs).
    pub fn send_buffer(&self) -> Option<usize> {
        self.config.send_buffer?;
        let listening = self.listeners.first()?;
        SockRef::from(&listening.socket).send_buffer_size().ok()
    }

    /// Tells the server that other loops serve the same listening sockets
    /// ([`crate::Workers`] does), and that it is worker `index` of `set`: it takes
    /// wake-ups from them only as the set says.
    pub(crate) fn share_listeners(&mut self, set: &Arc<AcceptSet>, index: usize) {
        self.sharing = Some(Sharing {
            set: Arc::clone(set),
            index,
            role: set.role(index),
            counted_full: false,
            behind_until: None,
            resting_until: None,
            covering_stuck: false,
        });
        self.follow_accept_set(0, false, Instant::now());
    }

    /// A handle that shuts the server down or reads its totals from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// What the server has done so far.
    pub fn totals(&self) -> Totals {
        let held = self.held.counts();
        let mut totals = self.totals;
        totals.bytes_sent = held.bytes_sent;
        totals.partial_writes = held.partial_writes;
        totals.lingered = held.lingered;
        totals.passed = held.passed;
        totals
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
        Ok(self.totals())
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
        if let Err(err) = self.poll.poll(events, self.poll_timeout(max_wait)) {
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(err);
        }
        let now = Instant::now();
        if let Some(sharing) = &self.sharing {
            if sharing.role == Role::First {
                sharing.set.first_round_began(now);
            }
        }
        let mut listener_readable = false;
        for event in events.iter() {
            match event.token() {
                // The waker only interrupts the poll; the request is read below.
                WAKER => {}
                Token(key) if key >= listener_token(self.ready.count() - 1).0 => {
                    self.ready.mark(usize::MAX - 1 - key);
                    listener_readable = true;
                }
                Token(key) => self.held.on_event(key, now),
            }
        }
        self.held.expire(now);
        self.record_held_closes();
        self.handle.answer_ping();
        if let Some(config) = self.handle.take_new_config() {
            self.reconfigure(&config);
        }
        let stop = self.handle.requested();
        if stop != StopRequest::None && self.drain_deadline.is_none() {
            self.begin_drain(now);
        }
        // The listener goes last: a key freed by a close above can be reused by a new
        // connection only once every event of this batch, which named the old holder,
        // has been handled. Connections in their greet delay have --max-delayed to
        // themselves: a silent flood never keeps the listener from being read.
        let has_room = self.held.counted() < self.config.max_connections;
        let accepted_before = self.totals.accepted;
        if !self.listeners.is_empty() && self.gate.should_accept(listener_readable, has_room, now) {
            self.accept_queued(now, ACCEPT_BUDGET, self.config.max_connections);
            // Header waiters closed to make room for newer ones.
            self.record_held_closes();
        }
        // Checked here so that a loop that serves its listeners alone pays no call.
        if self.sharing.is_some() {
            let accepted = self.totals.accepted - accepted_before;
            self.follow_accept_set(accepted as usize, listener_readable, now);
        }
        let finished = match self.drain_deadline {
            Some(drain_deadline) => {
                if stop == StopRequest::Now || now >= drain_deadline {
                    self.held.close_all(CloseReason::DrainTimeout);
                    self.record_held_closes();
                }
                self.held.is_empty()
            }
            None => false,
        };
        self.publish();
        Ok(finished)
    }

    /// How long the next poll may wait: not at all if connections are known to be
    /// queued, else until the soonest deadline, accept retry or drain end, and at
    /// most `max_wait`.
    fn poll_timeout(&self, max_wait: Option<Duration>) -> Option<Duration> {
        if self.gate.must_poll_at_once() {
            return Some(Duration::ZERO);
        }
        // A sharing loop also wakes when its rest ends, and once when its count as
        // behind runs out (a helper that fell behind may get no other round to say
        // it caught up, and would keep the others listening).
        let (resting_until, behind_until) = self.sharing.as_ref().map_or((None, None), |sharing| {
            (sharing.resting_until, sharing.behind_until)
        });
        let wake_at = [
            self.held.next_deadline(),
            self.gate.retry_at(),
            self.drain_deadline,
            resting_until,
            behind_until,
        ]
        .into_iter()
        .flatten()
        .min();
        let until_wake = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
        match (until_wake, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A loop that shares its listeners keeps them in its poll only while it should
    /// take their wake-ups: while it has room (below its `--max-connections`), and as
    /// its role says (`wake_one.rs` says why): the first always, a helper while an
    /// accepting loop is behind or full, a reserve while one is full. An arrival wakes
    /// one waiting loop (`EPOLLEXCLUSIVE`), so a full loop that stayed registered
    /// could take every wake-up and leave the connections in the backlog while others
    /// have room (nginx steps out the same way). Putting a listener back reports what
    /// is already queued; the `epoll_ctl`s happen only when a loop's part changes.
    /// `accepted`: how many connections this round accepted.
    fn follow_accept_set(&mut self, accepted: usize, listener_readable: bool, now: Instant) {
        let Some(sharing) = self.sharing.as_mut() else {
            return;
        };
        if self.drain_deadline.is_some() {
            return;
        }
        let has_room = self.held.counted() < self.config.max_connections;
        if sharing.role != Role::Reserve {
            if sharing.counted_full == has_room {
                sharing.counted_full = !has_room;
                sharing.set.accepting_worker_full(!has_room);
            }
            let round = Instant::now().saturating_duration_since(now);
            let deep = behind_at(self.config.backlog);
            follow_backlog(sharing, accepted, deep, round, now);
        }
        if sharing.role == Role::First {
            sharing.set.first_round_ended();
        }
        let stepped_in = sharing.set.should_listen(sharing.role);
        let covering = sharing.role == Role::Helper && !stepped_in;
        if covering && listener_readable && self.listening {
            follow_first_worker(sharing, now);
        }
        if sharing.resting_until.is_some_and(|until| now >= until) {
            sharing.resting_until = None;
        }
        let listen = has_room && (stepped_in || (covering && sharing.resting_until.is_none()));
        if listen == self.listening {
            return;
        }
        if !covering {
            debug!(
                target: LOG_TARGET,
                "worker {} {} the shared listeners",
                sharing.index,
                if listen { "listens on" } else { "steps out of" }
            );
        }
        let registry = self.poll.registry();
        for (index, listening) in self.listeners.iter().enumerate() {
            let fd = listening.socket.as_raw_fd();
            let changed = if listen {
                wake_one::register(registry, fd, listener_token(index))
            } else {
                wake_one::deregister(registry, fd)
            };
            if let Err(err) = changed {
                warn!(
                    target: LOG_TARGET,
                    "cannot {} a shared listener: {}",
                    if listen {
                        "resume listening on"
                    } else {
                        "step out of"
                    },
                    describe_io_error(&err)
                );
            }
        }
        self.listening = listen;
    }

    /// Makes this round's figures visible to [`ServerHandle::snapshot`].
    fn publish(&self) {
        self.handle.publish(Snapshot {
            totals: self.totals(),
            held: self.held.len(),
            delayed: self.held.len() - self.held.counted(),
            accept_paused: self.gate.retry_at().is_some(),
            draining: self.drain_deadline.is_some(),
            stopping: false,
            greeting_bytes: self.greeting_bytes,
            max_connections: self.config.max_connections,
        });
    }

    /// A reload's config, for new connections: each listener's greeting and policy
    /// (header waiters named from now on are checked against the new policy), the
    /// limits, timeouts and logging. Held connections keep the greeting `Arc` they
    /// started with, and the deadlines already running.
    fn reconfigure(&mut self, config: &Config) {
        self.greeting_bytes = first_greeting_bytes(config);
        self.held.reconfigure(config);
        self.config = config.clone();
    }

    /// Accepts from the listeners that may have connections queued, each once in
    /// turn with an equal share of what the ones before it left of `budget`, until
    /// every backlog is empty (edge triggering announces them only once), the budget
    /// is spent, `cap` connections are held, or accepting fails for lack of resources.
    fn accept_queued(&mut self, now: Instant, budget: usize, cap: usize) {
        let mut left = budget;
        for turns in (1..=self.ready.len()).rev() {
            let Some(index) = self.ready.next() else {
                break;
            };
            let share = left.div_ceil(turns);
            left -= share;
            match self.accept_from(index, now, share, cap) {
                Ok(unused) => {
                    left += unused;
                    self.ready.drained(index);
                }
                Err(Stopped::ShareSpent) => self.ready.later(index),
                // At capacity or paused: the gate says so; the rest stay queued.
                Err(Stopped::Gate) => {
                    self.ready.first_again(index);
                    return;
                }
            }
        }
        if self.ready.is_empty() {
            self.gate.drained(now);
        } else {
            self.gate.budget_spent();
        }
    }

    /// Accepts up to `share` connections from listener `index`: `Ok(unused)` once its
    /// backlog is empty, with what is left of the share; `Err` when the share ran out
    /// first or accepting must stop (the cap, or a pause).
    fn accept_from(
        &mut self,
        index: usize,
        now: Instant,
        share: usize,
        cap: usize,
    ) -> Result<usize, Stopped> {
        for used in 0..share {
            if self.held.counted() >= cap {
                // Leave the rest in the kernel's backlog until a slot frees.
                self.gate.at_capacity();
                return Err(Stopped::Gate);
            }
            match self.listeners[index].socket.accept() {
                Ok((stream, peer)) => self.greet(stream, peer, index, now),
                Err(err) if would_block(&err) => return Ok(share - used),
                Err(err) => match accept::classify(&err) {
                    AcceptFailure::PerConnection => {
                        self.totals.accept_errors += 1;
                        debug!(
                            target: LOG_TARGET,
                            "ACCEPT_ERROR error=\"{}\"",
                            describe_io_error(&err)
                        );
                    }
                    AcceptFailure::ResourcesExhausted | AcceptFailure::Unexpected => {
                        if self.gate.pause(&err, now) {
                            self.totals.accept_pauses += 1;
                        }
                        return Err(Stopped::Gate);
                    }
                },
            }
        }
        Err(Stopped::ShareSpent)
    }

    /// A connection just accepted: advanced at once (the fast path: greeted and closed
    /// right away, usually), held only if it must wait.
    fn greet(&mut self, stream: TcpStream, peer: SocketAddr, listener: usize, now: Instant) {
        self.totals.accepted += 1;
        let listening = &self.listeners[listener];
        let conn = Connection::accepted(stream, peer, listening.proxy_protocol, listening.listener);
        if let Some(closed) = self.held.admit(conn, now) {
            // Never held: it lived from this round's start until now.
            let lifetime = || Instant::now().duration_since(now).as_millis() as u32;
            let level = self.config.connection_log_level;
            record(&mut self.totals, &closed, level, lifetime);
        }
    }

    /// Stops accepting and starts the drain: connections already queued in the
    /// backlog are greeted first, beyond `--max-connections` if need be, since closing
    /// the listener would reset them. The kernel queues at most `backlog + 1` per
    /// listener, so that many accepts take every one queued now without chasing later
    /// arrivals forever.
    fn begin_drain(&mut self, now: Instant) {
        if !self.listeners.is_empty() {
            self.ready.mark_all();
            let queued_at_most = (self.config.backlog.max(0) as usize + 1) * self.listeners.len();
            self.accept_queued(now, queued_at_most, usize::MAX);
        }
        for listening in self.listeners.drain(..) {
            // Deregistered first: another worker may hold a duplicate of the socket,
            // which keeps it open (and in this poll) after this drop.
            if self.listening {
                let _ = wake_one::deregister(self.poll.registry(), listening.socket.as_raw_fd());
            }
        }
        self.listening = false;
        self.gate.close();
        self.drain_deadline = Some(saturating_add(now, self.config.drain_timeout));
        if self.held.is_empty() {
            info!(target: LOG_TARGET, "shutdown: stopped accepting; nothing in flight");
        } else {
            info!(
                target: LOG_TARGET,
                "shutdown: stopped accepting; waiting up to {} for {} in-flight greetings",
                humantime::format_duration(self.config.drain_timeout),
                self.held.len()
            );
        }
    }

    /// Counts and logs the closes of held connections, and lets a paused accept retry.
    #[inline]
    fn record_held_closes(&mut self) {
        if self.held.has_closed() {
            self.record_each_held_close();
        }
    }

    fn record_each_held_close(&mut self) {
        let started = self.held.started();
        let level = self.config.connection_log_level;
        // One clock read for the batch: the histogram wants every held lifetime.
        let now_ms = Instant::now().duration_since(started).as_millis() as u32;
        for closed in self.held.take_closed() {
            let lifetime = now_ms.wrapping_sub(closed.accepted_ms);
            // A connection closed while its PROXY header was awaited was held too.
            self.totals.observe_held_lifetime(lifetime);
            record(&mut self.totals, &closed, level, || lifetime);
        }
        self.gate.descriptor_freed();
    }
}

/// Counts a close under its reason and logs its `CLOSE` line (its `ACCEPT` line, even
/// one owed by a connection whose PROXY header never came, was logged by `held.rs`).
#[inline(always)]
fn record(
    totals: &mut Totals,
    closed: &Closed,
    level: log::Level,
    lifetime_ms: impl FnOnce() -> u32,
) {
    totals.count_close(closed.reason);
    // Only a held connection reads input: the fast path passes one predicted branch.
    if closed.input > 0 {
        record_input(totals, closed, level);
    }
    log_close(closed, level, lifetime_ms);
}

/// Counts what a peer that sent data sent first, and a pregreeter's `PREGREET` line.
#[cold]
fn record_input(totals: &mut Totals, closed: &Closed, level: log::Level) {
    totals.count_peer_input(closed.first);
    if closed.pregreeted {
        totals.pregreeted += 1;
        if log::log_enabled!(target: crate::close::LOG_TARGET, level) {
            log_pregreet(closed, level);
        }
    }
}

/// How many connections one round of an accepting loop must find waiting for the loop
/// to count as behind: a quarter of the listen backlog (so helpers step in well
/// before it overflows), and no more than a round's accept budget.
fn behind_at(backlog: i32) -> usize {
    (usize::try_from(backlog).unwrap_or(0) / 4).clamp(1, ACCEPT_BUDGET)
}

/// Counts an accepting loop as behind in its set from a round that accepted
/// `behind_at` connections or more, or that lasted [`wake_one::LONG_ROUND`] or more
/// (`round`), until a round after [`BEHIND_HOLD`] without either.
fn follow_backlog(
    sharing: &mut Sharing,
    accepted: usize,
    behind_at: usize,
    round: Duration,
    now: Instant,
) {
    if accepted >= behind_at || round >= wake_one::LONG_ROUND {
        if sharing.behind_until.is_none() {
            debug!(
                target: LOG_TARGET,
                "worker {} is behind ({accepted} connections in one round of {} ms): helpers step in",
                sharing.index,
                round.as_millis()
            );
            sharing.set.accepting_worker_behind(true);
        }
        sharing.behind_until = Some(now + BEHIND_HOLD);
    } else if sharing.behind_until.is_some_and(|until| now >= until) {
        debug!(target: LOG_TARGET, "worker {} caught up", sharing.index);
        sharing.behind_until = None;
        sharing.set.accepting_worker_behind(false);
    }
}

/// A covering helper was woken by an arrival, so the first worker was not waiting in
/// its poll: it stays in the listener's poll while the first worker's round has run
/// for [`wake_one::STUCK_ROUND`] or more, and otherwise rests for
/// [`wake_one::COVER_REST`] (`wake_one.rs` says why).
fn follow_first_worker(sharing: &mut Sharing, now: Instant) {
    let running = sharing.set.first_round_running(now);
    if running.is_some_and(|running| running >= wake_one::STUCK_ROUND) {
        if !sharing.covering_stuck {
            sharing.covering_stuck = true;
            debug!(
                target: LOG_TARGET,
                "worker {} covers worker 0, whose round has run for {} ms",
                sharing.index,
                running.unwrap_or_default().as_millis()
            );
        }
        sharing.resting_until = None;
    } else {
        sharing.covering_stuck = false;
        sharing.resting_until = Some(now + wake_one::COVER_REST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The watchdog's ping is answered only by a loop that runs a round: a stuck loop
    /// stops the pings (the supervisor sends WATCHDOG=1 only for answered ones).
    #[test]
    fn a_ping_is_answered_by_the_next_round_only() {
        let mut server = Server::bind(Config::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let handle = server.handle();
        handle.ping(1).unwrap();
        assert!(!handle.answered(1), "no round has run since the ping");
        let mut events = Events::with_capacity(8);
        // The ping woke the loop: this round returns at once and answers it.
        server
            .turn(&mut events, Some(Duration::from_secs(30)))
            .unwrap();
        assert!(handle.answered(1));
        handle.ping(2).unwrap();
        assert!(!handle.answered(2));
    }

    /// A PROXY listener defers accepts until data has come (`TCP_DEFER_ACCEPT`), so
    /// that a header sent with the connection is read at accept; a plain one does not
    /// (its clients wait for the server to speak).
    #[test]
    fn only_proxy_listeners_defer_accepts() {
        let deferred = |config: Config| {
            let server = Server::bind(config).unwrap();
            let socket = &server.listeners[0].socket;
            let mut seconds: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: the listener's descriptor is live for the call; `seconds` and
            // `len` describe a writable c_int.
            let rc = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&mut seconds as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            seconds
        };
        let plain = Config::new("127.0.0.1:0".parse().unwrap());
        assert_eq!(deferred(plain.clone()), 0);
        assert!(deferred(plain.with_proxy_protocol()) >= 1);
    }

    /// A listener with a deep backlog among many idle ones gets the whole budget of the
    /// rounds that follow the first, not an equal share with listeners that have
    /// nothing waiting (whose accepts would only fail with EAGAIN).
    #[test]
    fn idle_listeners_leave_the_accept_budget_to_the_busy_one() {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap());
        let one = config.listeners[0].clone();
        config.listeners = vec![one; 200];
        let mut server = Server::bind(config).unwrap();
        let busy = server.local_addrs()[0];
        // Queued in the backlog before the first round: more than two budgets.
        let clients: Vec<std::net::TcpStream> = (0..3 * ACCEPT_BUDGET)
            .map(|_| std::net::TcpStream::connect(busy).unwrap())
            .collect();
        let mut events = Events::with_capacity(1024);
        for _ in 0..2 {
            server.turn(&mut events, Some(Duration::ZERO)).unwrap();
        }
        assert_eq!(server.totals().accepted, 2 * ACCEPT_BUDGET as u64);
        drop(clients);
    }

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
            // Each queue stays below 2 x held + 64 entries.
            let queued = server.held.deadlines_queued();
            let bound = 2 * (2 * server.held.len() + 64);
            assert!(
                queued <= bound,
                "{queued} deadlines queued for {} held",
                server.held.len()
            );
            most_queued = most_queued.max(queued);
        }
        clients.join().unwrap();
        // Every connection was held after its greeting, so each pushed a deadline.
        assert_eq!(server.totals().lingered, 300, "{}", server.totals());
        assert!(most_queued > 0);
    }
}
