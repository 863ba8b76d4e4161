//! The server: one thread, one `mio::Poll`, one or more listeners. This file is the loop
//! (`run`/`turn`), the drain, a reload's hand-over to the held connections, and the
//! counting of closes. Each accepted connection is a `Connection` advanced once by
//! `held.rs`: most are greeted and closed right there (`accept4`, `write`,
//! `shutdown`, `getsockopt(TCP_INFO)`, `close`: no slab entry, no `epoll_ctl`); the
//! rest are held. Every close is counted and logged here, in `record`.
//!
//! Next door: the listening sockets and the accept rotation over them
//! (`server/listeners.rs`), when to accept (`accept.rs`), the worker's part among
//! workers that share the listeners (`accept_set.rs`), and where the sockets come from
//! ([`crate::listener`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;
use mio::net::TcpStream;
use mio::{Events, Poll, Token, Waker};

use crate::accept::AcceptGate;
pub use crate::accept::ACCEPT_BUDGET;
use crate::accept_set::{self, AcceptSet, Round, Sharing};
use crate::close::CloseReason;
use crate::config::Config;
use crate::connection::{Connection, Readiness};
use crate::deadlines::saturating_add;
use crate::error::Failure;
use crate::fdlimit;
use crate::handle::{ServerHandle, Snapshot, StopRequest};
use crate::held::HeldConnections;
use crate::listener::{listen_config, ListeningSocket};
use crate::totals::Totals;

mod closes;
use closes::{observe_trap, record};
mod handing;
mod listeners;
#[cfg(test)]
mod tests;

use listeners::{listener_index, listener_token, registrations, Listening, ReadyListeners};

/// The waker's token, the top of the range; the listeners' tokens come below it
/// ([`listeners::listener_token`]).
const WAKER: Token = Token(usize::MAX);

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::server";

/// How many readiness events one `epoll_wait` may return.
const EVENTS_PER_POLL: usize = 1024;

/// How often a worker whose tarpit listeners stopped at `--max-trapped` looks
/// whether another worker's trap ended (with one worker, its own close says so).
const TRAP_FULL_LOOK: Duration = Duration::from_millis(50);

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
    /// The listening sockets, each with its listener's index in the config and its
    /// PROXY setting; empty once a shutdown has stopped accepting.
    listeners: Vec<Listening>,
    /// The listeners that may have connections queued (an event came, or the last
    /// accept loop stopped before `WouldBlock`), in the order they are accepted from.
    ready: ReadyListeners,
    /// The addresses actually bound (with the real port when 0 was asked for).
    local_addrs: Vec<SocketAddr>,
    /// The limits (greetings and policies are in the held connections' policy table).
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
    /// The tarpit listeners not accepted from while `--max-trapped` clients are
    /// trapped (their clients wait in the backlog); queued again when one leaves.
    trap_parked: Vec<usize>,
}

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
        let (registered, local_addrs) =
            listeners::register(&poll, sockets, &config).map_err(loop_error)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(loop_error)?;
        let registry = poll.registry().try_clone().map_err(loop_error)?;
        // Sized for the connection limit up front, so no doubling copy happens under
        // load; capacity that is never touched costs address space, not memory. But
        // never beyond what the open-file limit lets the server hold.
        let capacity = config.max_connections.min(fdlimit::soft_limit());
        let handle = ServerHandle::new(waker);
        let traps = Arc::clone(handle.traps_by_country());
        let server = Server {
            poll,
            ready: ReadyListeners::new(registered.len()),
            listeners: registered,
            local_addrs,
            held: HeldConnections::new(registry, &config, capacity, traps),
            greeting_bytes: first_greeting_bytes(&config),
            config,
            gate: AcceptGate::new(),
            handle,
            drain_deadline: None,
            totals: Totals::default(),
            sharing: None,
            listening: true,
            trap_parked: Vec::new(),
        };
        // Readers see its greeting and limit before its first round.
        server.publish();
        Ok(server)
    }

    /// Tells the server that other loops serve the same listening sockets
    /// ([`crate::Workers`] does), and that it is worker `index` of `set`: it takes
    /// wake-ups from them only as the set says.
    pub(crate) fn share_listeners(&mut self, set: &Arc<AcceptSet>, index: usize) {
        self.sharing = Some(Sharing::new(set, index));
        self.follow_accept_set(0, false, Instant::now());
    }

    /// Counts this server's trapped connections with other workers' in
    /// `server_trapped`, so that `--max-trapped` bounds them all.
    pub(crate) fn share_trapped(&mut self, server_trapped: &Arc<AtomicUsize>) {
        self.held.share_trapped(server_trapped);
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
        totals.trapped = held.trapped;
        totals.dripped = held.dripped;
        totals.trapped_ms = held.trapped_ms;
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
            sharing.round_began(now);
        }
        let mut listener_readable = false;
        for event in events.iter() {
            match event.token() {
                // The waker only interrupts the poll; the request is read below.
                WAKER => {}
                Token(key) if key >= listener_token(self.ready.count() - 1).0 => {
                    self.ready.mark(listener_index(key));
                    listener_readable = true;
                }
                Token(key) => {
                    let readiness = Readiness {
                        writable: event.is_writable(),
                        read_closed: event.is_read_closed(),
                        error: event.is_error(),
                    };
                    self.held.on_event(key, readiness, now);
                }
            }
        }
        self.held.expire(now);
        self.record_held_closes();
        self.handle.answer_ping();
        let reloaded = match self.handle.take_new_config() {
            Some(config) => {
                self.reconfigure(&config);
                true
            }
            None => false,
        };
        // A trap left (or a reload changed the limit): the tarpit listeners stopped
        // at --max-trapped go on.
        if !self.trap_parked.is_empty() && (reloaded || !self.held.trap_full()) {
            for index in self.trap_parked.drain(..) {
                self.ready.mark(index);
            }
            listener_readable = true;
        }
        if let Some(handed) = self.handle.take_adopted() {
            self.adopt_handed(handed, now);
        }
        let stop = self.handle.requested();
        if stop != StopRequest::None && self.drain_deadline.is_none() {
            self.begin_stop(now);
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
                } else if self.held.trapped() > 0 && self.held.trapped() == self.held.len() {
                    // The in-flight greetings are done; traps never finish, so they
                    // are not waited for (reason drain).
                    self.held.close_trapped();
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
        // A sharing loop also wakes when the accept set needs a round.
        let [resting_until, behind_until] =
            self.sharing.as_ref().map_or([None, None], Sharing::wake_at);
        // Tarpit listeners stopped at --max-trapped go on once a trap ends, which
        // another worker's trap may do unseen: looked at again shortly.
        let trap_look = (!self.trap_parked.is_empty() && self.held.trapped_shared())
            .then(|| Instant::now() + TRAP_FULL_LOOK);
        let wake_at = [
            self.held.next_deadline(),
            trap_look,
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

    /// A loop that shares its listeners tells the accept set what this round saw
    /// (`accepted`: how many connections it accepted), and puts its listeners into its
    /// poll or takes them out as the set answers (`accept_set.rs` says when and why);
    /// the `epoll_ctl`s happen only when its part changes. Not once it drains.
    fn follow_accept_set(&mut self, accepted: usize, listener_readable: bool, now: Instant) {
        let Some(sharing) = self.sharing.as_mut() else {
            return;
        };
        if self.drain_deadline.is_some() {
            return;
        }
        let listen = sharing.follow(Round {
            began: now,
            accepted,
            listener_readable,
            has_room: self.held.counted() < self.config.max_connections,
            listening: self.listening,
            backlog: self.config.backlog,
        });
        if listen != self.listening {
            let registry = self.poll.registry();
            accept_set::move_listeners(registry, registrations(&self.listeners), listen);
            self.listening = listen;
        }
    }

    /// Makes this round's figures visible to [`ServerHandle::snapshot`].
    fn publish(&self) {
        self.handle.publish(Snapshot {
            totals: self.totals(),
            held: self.held.len(),
            delayed: self.held.delayed(),
            trapped: self.held.trapped(),
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

    /// A connection just accepted: advanced at once (the fast path: greeted and closed
    /// right away, usually), held only if it must wait.
    fn greet(&mut self, stream: TcpStream, peer: SocketAddr, socket: usize, now: Instant) {
        self.totals.accepted += 1;
        let listening = &self.listeners[socket];
        let conn = Connection::accepted(stream, peer, listening.proxy_protocol, listening.listener);
        if let Some(closed) = self.held.admit(conn, now) {
            // Never held: it lived from this round's start until now.
            let lifetime = || Instant::now().duration_since(now).as_millis() as u32;
            let level = self.config.connection_log_level;
            record(&mut self.totals, &closed, level, lifetime);
        }
    }

    /// Stops accepting and starts the drain: connections already queued in the
    /// backlog are greeted first (`take_backlog`), beyond `--max-connections` if need
    /// be, since closing the listener would reset them; not in an upgrade's drain,
    /// whose new process has the same listening sockets and accepts them. The kernel
    /// queues at most `backlog + 1` per listener, so that many accepts take every one
    /// queued now without chasing later arrivals forever.
    fn begin_drain(&mut self, now: Instant, take_backlog: bool) {
        if take_backlog && !self.listeners.is_empty() {
            self.ready.mark_all();
            let queued_at_most = (self.config.backlog.max(0) as usize + 1) * self.listeners.len();
            self.accept_queued(now, queued_at_most, usize::MAX);
        }
        for listening in self.listeners.drain(..) {
            // Deregistered first: another worker may hold a duplicate of the socket,
            // which keeps it open (and in this poll) after this drop.
            if self.listening {
                let _ = accept_set::deregister(self.poll.registry(), listening.socket.as_raw_fd());
            }
        }
        self.listening = false;
        self.gate.close();
        self.drain_deadline = Some(saturating_add(now, self.config.drain_timeout));
        // Trapped clients are not in flight: they are closed once the rest are done.
        let in_flight = self.held.len() - self.held.trapped();
        if in_flight == 0 {
            info!(target: LOG_TARGET, "shutdown: stopped accepting; nothing in flight");
        } else {
            info!(
                target: LOG_TARGET,
                "shutdown: stopped accepting; waiting up to {} for {} in-flight greetings",
                humantime::format_duration(self.config.drain_timeout),
                in_flight
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
            // A connection closed while its PROXY header was awaited was held too; a
            // trap's time is not a greeting's (its `ms=` is its own).
            if closed.trapped_ms == 0 {
                self.totals.observe_held_lifetime(lifetime);
            } else {
                observe_trap(&mut self.totals, closed.trapped_ms);
            }
            record(&mut self.totals, &closed, level, || lifetime);
        }
        self.gate.descriptor_freed();
    }
}
