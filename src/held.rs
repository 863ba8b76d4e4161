//! The connections a server holds: the slab keyed by mio `Token`, the fast path
//! ([`HeldConnections::admit`]: a fresh connection advanced once), and the applying
//! of each held connection's [`Step`]s: registering what a phase waits for, starting
//! its deadline ([`crate::timers`]), counting its slots ([`crate::slots`]), renaming
//! it when its PROXY header names its client, and closing it. Who is greeted, and
//! with what, is [`crate::admission`]'s to say. Closes are handed back (from
//! [`HeldConnections::admit`], and from [`HeldConnections::take_closed`] for the held
//! ones), so that the server counts and logs every close in one place; the `ACCEPT`
//! line is logged here, in [`HeldConnections::announce`], and nowhere else.
//!
//! Only connections that could not be finished at once live here; the common case
//! (whole greeting written by the first `write`, nothing unsent, nothing received) is
//! advanced once by [`HeldConnections::admit`] and never gets an entry. Each phase has
//! one deadline in its timer's queue, found again by the connection's serial number: a
//! stale entry (its connection closed or moved on) is skipped or compacted away.
//!
//! Its rooms: `admitting` (a client now known taking its admission: the one place a
//! verdict becomes a step), `header_waiters` (a PROXY header waiter's room and renaming),
//! `closing` (how a held connection ends and its close is handed back), `traps`
//! (`--tarpit`'s moments: trapped, a drip due, the drain), `handing` (trapped
//! connections handed to an upgrade's new process, and adopted from the old one),
//! `counts` (what the totals take from here).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{warn, Level};
use mio::{Registry, Token};
use slab::Slab;

use crate::admission::PolicyTable;
use crate::close::{log_accept, log_proxy_error, CloseReason, Closed};
use crate::config::Config;
use crate::connection::{Connection, Phase, Readiness, Step};
use crate::deadlines::Deadline;
use crate::error::describe_io_error;
use crate::geoip::TrapsByCountry;
use crate::greeting::Greeting;
use crate::slots::Slots;
use crate::timers::{Timer, Timers};
pub(crate) use counts::HeldCounts;

mod admitting;
mod closing;
mod counts;
mod handing;
mod header_waiters;
mod traps;

use admitting::{greet, served, take_verdict};
use traps::{note_trap, Geo};

#[cfg(test)]
mod tests;

/// A held connection with what holding it needs.
#[derive(Debug)]
struct Held {
    conn: Connection,
    /// The greeting it is being sent: the one current when it was accepted, kept
    /// (shared, never copied) across a reload that swaps its listener's (or the deny
    /// message, for a denied client).
    greeting: Greeting,
    /// Tells this connection apart from a later one that reuses its slab key, so that a
    /// stale deadline never closes the newcomer.
    serial: u64,
}

/// The held connections of one server.
#[derive(Debug)]
pub(crate) struct HeldConnections {
    /// The held connections, keyed by their mio `Token`.
    slab: Slab<Held>,
    /// Registers held connections with the server's poll (a clone of its registry).
    registry: Registry,
    /// The deadlines of the held connections' phases.
    timers: Timers,
    /// What the held connections take of the server's limits.
    slots: Slots,
    /// What each listener's connections get: the loop's one table, rebuilt whole
    /// from each config. A header waiter's client is checked against it once its
    /// header names it, with the policy current then.
    table: PolicyTable,
    /// `--write-timeout`: a greeting after a `--greet-delay` has what the delay left.
    write_timeout: Duration,
    /// The serial number for the next held connection.
    next_serial: u64,
    /// When the server started: the epoch of the connections' `accepted_ms`.
    started: Instant,
    /// `--max-connections`, for the `ACCEPT` line.
    max_connections: usize,
    /// The level of the `ACCEPT` line (info with `--log-connections`).
    log_level: Level,
    /// Closes of held connections not yet taken by the server; reused.
    closed: Vec<Closed>,
    /// See [`HeldCounts`].
    counts: HeldCounts,
    /// `--trap-timeout`: how long a trap may last (`None`: forever).
    trap_timeout: Option<Duration>,
    /// What makes the random lines dripped to trapped clients (one per loop).
    rng: fastrand::Rng,
    /// `--geoip-db`, and the trap counters by country.
    geo: Geo,
}

impl HeldConnections {
    /// No connection held yet; room for `capacity` before anything grows.
    pub(crate) fn new(
        registry: Registry,
        config: &Config,
        capacity: usize,
        traps: Arc<TrapsByCountry>,
    ) -> Self {
        HeldConnections {
            slab: Slab::with_capacity(capacity),
            registry,
            timers: Timers::new(config, capacity),
            slots: Slots::new(config),
            table: PolicyTable::new(served(config)),
            write_timeout: config.write_timeout,
            next_serial: 0,
            started: Instant::now(),
            max_connections: config.max_connections,
            log_level: config.connection_log_level,
            closed: Vec::new(),
            counts: HeldCounts::default(),
            trap_timeout: config.trap_timeout,
            rng: fastrand::Rng::new(),
            geo: Geo {
                db: config.geoip.clone(),
                traps,
            },
        }
    }

    /// A reload's greetings, policies, limits, timeouts and logging, for what happens
    /// from now on: a new `--max-per-ip` counts the connections already held,
    /// deadlines already running keep their time.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        self.table.replace(served(config));
        self.timers.reconfigure(config);
        self.write_timeout = config.write_timeout;
        let held = self
            .slab
            .iter()
            .map(|(_, held)| (held.conn.phase(), held.conn.peer().ip()));
        self.slots.reconfigure(config, held);
        self.max_connections = config.max_connections;
        self.log_level = config.connection_log_level;
        self.trap_timeout = config.trap_timeout;
        self.geo.db = config.geoip.clone();
    }

    /// How many connections are held.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// How many connections are held against `--max-connections`: all but those in
    /// their greet delay, which have `--max-delayed` to themselves, and the trapped
    /// ones, which have `--max-trapped`.
    #[inline]
    pub(crate) fn counted(&self) -> usize {
        self.slab.len() - self.slots.delayed() - self.slots.trapped()
    }

    /// How many connections are trapped (`--tarpit`).
    pub(crate) fn trapped(&self) -> usize {
        self.slots.trapped()
    }

    /// Whether `--max-trapped` connections are trapped in the whole server.
    #[inline]
    pub(crate) fn trap_full(&self) -> bool {
        self.slots.trap_full()
    }

    /// Counts this holder's trapped connections with the other workers' in
    /// `server_trapped` ([`Slots::share_trapped`]).
    pub(crate) fn share_trapped(&mut self, server_trapped: &Arc<AtomicUsize>) {
        self.slots.share_trapped(server_trapped);
    }

    /// Whether other workers share the trapped count.
    pub(crate) fn trapped_shared(&self) -> bool {
        self.slots.trapped_shared()
    }

    /// How many connections are in their greet delay.
    pub(crate) fn delayed(&self) -> usize {
        self.slots.delayed()
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// What happened to connections on their way through here so far.
    pub(crate) fn counts(&self) -> HeldCounts {
        HeldCounts {
            passed: self.table.passed(),
            ..self.counts
        }
    }

    /// When the server started: the epoch of [`HeldConnections::millis_since_start`].
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since the server started, wrapping every 49 days (only ever used
    /// as a difference over one connection's life).
    pub(crate) fn millis_since_start(&self, at: Instant) -> u32 {
        at.duration_since(self.started).as_millis() as u32
    }

    /// The soonest deadline, if any (it may be stale: the loop then wakes for nothing).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A connection just accepted: advanced at once (the fast path), and held only if
    /// it must wait. Returns its close if it finished (or was refused) at once.
    #[inline]
    pub(crate) fn admit(&mut self, mut conn: Connection, now: Instant) -> Option<Closed> {
        let table = &self.table;
        let greeting = table.greeting(conn.listener());
        // Without --proxy-protocol the client is known at accept; with it, once the
        // header names it.
        let (step, sending) = match conn.phase() {
            Phase::Header => match conn.advance(greeting) {
                Step::Named(client) => {
                    conn.set_peer(client);
                    self.announce(client, self.counted());
                    greet(table, &self.slots, &mut conn, client, greeting, now)
                }
                step => (step, greeting),
            },
            _ => {
                let client = conn.peer();
                self.announce(client, self.counted());
                greet(table, &self.slots, &mut conn, client, greeting, now)
            }
        };
        self.counts.bytes_sent += conn.sent(sending) as u64;
        match step {
            Step::Close(reason) => Some(self.closed(&conn, sending, reason)),
            // Only a header names a client, and it is named once.
            // A pregreeter's trap is taken in `greet`.
            Step::Wait | Step::Named(_) | Step::Trap => self.hold(conn, sending.clone(), now),
        }
    }

    /// Logs the `ACCEPT` line of a connection from `client` (`held` were held against
    /// `--max-connections` before it): when its client is named, or as it closes if
    /// its PROXY header never named one. The one place the line is logged.
    #[inline(always)]
    fn announce(&self, client: SocketAddr, held: usize) {
        log_accept(client, held, self.max_connections, self.log_level);
    }

    /// The owed `ACCEPT` line of a connection closed before its PROXY header named its
    /// client (logged under its socket's peer).
    // Out of line: the fast path closes connections whose client is known.
    #[cold]
    #[inline(never)]
    fn announce_unnamed(&self, conn: &Connection) {
        self.announce(conn.peer(), self.counted());
    }

    /// Holds a connection that must wait: registers it for what its phase waits for
    /// and starts its phase's deadline. A header waiter may first need room; one that
    /// cannot be held is closed (and handed back).
    // Not inlined: the fast path (greeted and closed at once) never holds, and `hold`
    // inlined into the accept loop made every connection's path longer.
    #[inline(never)]
    fn hold(&mut self, mut conn: Connection, greeting: Greeting, now: Instant) -> Option<Closed> {
        let phase = conn.phase();
        if phase == Phase::Header && !self.make_room_for_header_waiter(conn.peer().ip(), now) {
            log_proxy_error(
                conn.peer(),
                "its address has --max-per-ip connections waiting for their header",
            );
            return Some(self.closed(&conn, &greeting, CloseReason::ProxyHeader));
        }
        if phase.is_trapped() {
            note_trap(
                &mut self.counts,
                &self.table,
                &self.geo,
                self.log_level,
                &mut conn,
                &greeting,
            );
        }
        let key = self.slab.vacant_key();
        let interest = phase.interest();
        if let Err(err) = self
            .registry
            .register(conn.stream_mut(), Token(key), interest)
        {
            let reason = registration_failure(phase, &err);
            return Some(self.closed(&conn, &greeting, reason));
        }
        self.counts.progress(None, phase);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.push_deadline(conn.listener(), None, phase, now, key, serial);
        // A trapped one keeps its trap's start there.
        if !phase.is_trapped() {
            conn.set_accepted_ms(self.millis_since_start(now));
        }
        self.slots.count_in(phase, conn.peer().ip());
        self.slab.insert(Held {
            conn,
            greeting,
            serial,
        });
        None
    }

    /// Moves connection `key` along after a readiness event. Events for keys no longer
    /// held (closed earlier in the batch) are ignored.
    pub(crate) fn on_event(&mut self, key: usize, readiness: Readiness, now: Instant) {
        let Some(held) = self.slab.get_mut(key) else {
            return;
        };
        let before = held.conn.phase();
        let sent_before = held.conn.sent(&held.greeting);
        let mut step = if before.is_trapped() {
            held.conn.on_trap_event(readiness)
        } else {
            held.conn.advance(&held.greeting)
        };
        if let Step::Named(client) = step {
            match self.name_client(key, client, now) {
                Some(next) => step = next,
                None => return,
            }
        }
        let held = &self.slab[key];
        self.counts.bytes_sent += (held.conn.sent(&held.greeting) - sent_before) as u64;
        self.settle(key, before, step, now);
    }

    /// Closes the connections whose deadline has passed by `now` (or moves them on).
    #[inline]
    pub(crate) fn expire(&mut self, now: Instant) {
        // Nothing held, nothing queued: the common round of a greeting server.
        if self.timers.is_empty() {
            return;
        }
        for timer in Timer::ALL {
            while let Some(due) = self
                .timers
                .pop_expired(timer, now, |due, timer| is_live(&self.slab, due, timer))
            {
                if timer == Timer::Drip {
                    self.drip(due.key(), now);
                    continue;
                }
                if timer == Timer::Delay {
                    self.pass(due.key(), now);
                }
                let held = &mut self.slab[due.key()];
                let (before, sent_before) = (held.conn.phase(), held.conn.sent(&held.greeting));
                // A delay that ends writes the greeting.
                let step = held.conn.on_deadline(&held.greeting);
                self.counts.bytes_sent += (held.conn.sent(&held.greeting) - sent_before) as u64;
                self.settle(due.key(), before, step, now);
            }
        }
    }

    /// Held connection `key` waited out its greet delay: unless it talked meanwhile,
    /// its source passes (its listener's table now: a reload may have replaced it).
    fn pass(&self, key: usize, now: Instant) {
        let conn = &self.slab[key].conn;
        if conn.pregreeted() {
            return;
        }
        let policy = self.table.policy(conn.listener());
        if let Some(pass) = policy.and_then(|policy| policy.pass.as_ref()) {
            pass.pass(conn.peer().ip(), now);
        }
    }

    /// Applies the step a held connection took from phase `before`.
    fn settle(&mut self, key: usize, before: Phase, step: Step, now: Instant) {
        let step = match step {
            // Counts its own slots.
            Step::Trap => self.trap_pregreeter(key),
            step => {
                let conn = &self.slab[key].conn;
                self.slots.moved(before, conn.phase(), conn.peer().ip());
                step
            }
        };
        let reason = match step {
            Step::Close(reason) => reason,
            // A named client was advanced again before this; a pregreeter's trap was
            // taken above.
            Step::Wait | Step::Named(_) | Step::Trap => match self.rearm(key, before, now) {
                Ok(()) => return,
                Err(reason) => reason,
            },
        };
        self.close(key, reason);
    }

    /// A held connection that waits on, in a phase it may just have entered: register
    /// what the new phase needs and start its deadline.
    fn rearm(&mut self, key: usize, before: Phase, now: Instant) -> Result<(), CloseReason> {
        let (phase, serial) = (self.slab[key].conn.phase(), self.slab[key].serial);
        if phase.timer() != before.timer() {
            let listener = self.slab[key].conn.listener();
            self.push_deadline(listener, Some(before), phase, now, key, serial);
        }
        self.counts.progress(Some(before), phase);
        let held = &mut self.slab[key];
        // It is registered for at least what its phase before needed. A phase that
        // needs less keeps that (flushing to lingering stays writable too): the
        // spurious events are rare and cheaper than an epoll_ctl.
        let (needed, registered) = (phase.interest(), before.interest());
        let covered = (!needed.is_readable() || registered.is_readable())
            && (!needed.is_writable() || registered.is_writable());
        if !covered {
            // Re-registering re-checks readiness, so input that is already queued (or
            // an EOF) produces an event without an extra read here.
            self.registry
                .reregister(held.conn.stream_mut(), Token(key), needed)
                .map_err(|err| registration_failure(phase, &err))?;
        }
        Ok(())
    }

    /// Starts the deadline of a connection of `listener` that has entered `phase`
    /// from `before` (`None`: just held). It lasts its timer's duration, but a delay
    /// lasts its listener's `--greet-delay`, and the greeting after it what the delay
    /// left of `--write-timeout`.
    fn push_deadline(
        &mut self,
        listener: usize,
        before: Option<Phase>,
        phase: Phase,
        now: Instant,
        key: usize,
        serial: u64,
    ) {
        let timer = phase.timer();
        let lasting = match (before, phase) {
            (_, Phase::Delaying { .. }) => self.table.greet_delay(listener),
            (_, Phase::Trapped { .. }) => self.table.drip(listener).interval,
            (Some(Phase::Delaying { .. }), Phase::Writing { .. } | Phase::Flushing) => self
                .write_timeout
                .saturating_sub(self.table.greet_delay(listener)),
            _ => return self.timers.push(timer, now, key, serial),
        };
        self.timers.push_lasting(timer, now, lasting, key, serial);
    }

    /// How many deadline entries (live or stale) are queued, for tests.
    #[cfg(test)]
    pub(crate) fn deadlines_queued(&self) -> usize {
        self.timers.len()
    }
}

/// Why a connection closes when the poll refuses to take it (or to change what it
/// waits for) in `phase`: a greeting already handed to the kernel (flushing or
/// lingering) counts as greeted, anything before that as an error. The one rule, for a
/// fresh registration and a re-registration alike; the refusal is logged.
fn registration_failure(phase: Phase, err: &io::Error) -> CloseReason {
    warn!(
        target: "greeter::held",
        "cannot register a connection with the poll: {}",
        describe_io_error(err)
    );
    match phase {
        Phase::Flushing | Phase::Lingering => CloseReason::Greeted,
        Phase::Header | Phase::Delaying { .. } | Phase::Writing { .. } | Phase::Trapped { .. } => {
            CloseReason::Error
        }
    }
}

/// Whether `deadline` still belongs to a held connection in a phase `timer` bounds:
/// not to one that closed, moved on, or whose key has a new holder.
fn is_live(slab: &Slab<Held>, deadline: &Deadline, timer: Timer) -> bool {
    slab.get(deadline.key())
        .is_some_and(|held| held.serial == deadline.serial && held.conn.phase().timer() == timer)
}
