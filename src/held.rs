//! The connections a server holds, and everything that bounds them: the slab keyed by
//! mio `Token`, the fixed-duration deadlines (one queue per [`Timer`]), the
//! per-address limits, and the bound on PROXY header waiters. It applies each
//! connection's [`Step`]s: registering what a phase waits for, starting its deadline,
//! and closing it. Closes are handed back (from [`HeldConnections::admit`], and from
//! [`HeldConnections::take_closed`] for the held ones), so that the server counts and
//! logs every close in one place.
//!
//! Only connections that could not be finished at once live here; the common case
//! (whole greeting written by the first `write`, nothing unsent, nothing received) is
//! advanced once by [`HeldConnections::admit`] and never gets an entry. Each phase has
//! one deadline in its timer's queue, found again by the connection's serial number: a
//! stale entry (its connection closed or moved on) is skipped or compacted away.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn, Level};
use mio::{Registry, Token};
use slab::Slab;
use socket2::SockRef;

use crate::access::{Policy, Pregreet};
use crate::close::{log_accept, CloseReason, Closed};
use crate::config::Config;
use crate::connection::{Connection, Phase, Step, Timer};
use crate::deadlines::{saturating_add, Deadline, DeadlineQueue};
use crate::error::describe_io_error;
use crate::greeting::Greeting;
use crate::per_ip::PerIpLimit;
use crate::served::{self, Served};

/// Stale deadline entries tolerated beyond twice the held connections before a queue
/// is compacted (so that a server holding nothing does not compact on every close).
const DEADLINE_SLACK: usize = 64;

/// A held connection with what holding it needs.
#[derive(Debug)]
struct Held {
    conn: Connection,
    /// The greeting it is being sent: the one current when it was accepted, kept
    /// (shared, never copied) across a reload that swaps the server's (or the deny
    /// message, for a denied client).
    greeting: Greeting,
    /// Tells this connection apart from a later one that reuses its slab key, so that a
    /// stale deadline never closes the newcomer.
    serial: u64,
}

/// Counters of what happens to connections on their way through here (the close
/// reasons are counted by the server, from the closes handed back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeldCounts {
    /// Greeting bytes written.
    pub(crate) bytes_sent: u64,
    /// Connections whose first write was partial, so they waited for writability.
    pub(crate) partial_writes: u64,
    /// Connections held after their whole greeting was written (flushing or
    /// lingering).
    pub(crate) lingered: u64,
    /// Clients greeted without their greet delay: their source had passed.
    pub(crate) passed: u64,
}

/// The held connections of one server.
#[derive(Debug)]
pub(crate) struct HeldConnections {
    /// The held connections, keyed by their mio `Token`.
    slab: Slab<Held>,
    /// Registers held connections with the server's poll (a clone of its registry).
    registry: Registry,
    /// One queue per [`Timer`], indexed by it.
    deadlines: [DeadlineQueue; 4],
    /// `--write-timeout`: a greeting after a `--greet-delay` has what the delay left.
    write_timeout: Duration,
    /// Held connections per client address, when `--max-per-ip` is set.
    per_ip: Option<PerIpLimit>,
    /// Connections waiting for their PROXY header, bounded apart from the greeted
    /// ones so that header-less connections cannot take every slot.
    header_waiters: usize,
    /// The most connections that may wait for their header at once.
    max_header_waiters: usize,
    /// Header waiters per socket peer (the client is not known yet), when
    /// `--max-per-ip` is set: its limit applies to them too.
    header_waiters_per_peer: Option<PerIpLimit>,
    /// The serial number for the next held connection.
    next_serial: u64,
    /// When the server started: the epoch of the connections' `accepted_ms`.
    started: Instant,
    /// `--max-connections`, for the `ACCEPT` line.
    max_connections: usize,
    /// Connections in their greet delay (held, but not counted against
    /// `--max-connections`: [`HeldConnections::counted`]).
    delayed: usize,
    /// `--max-delayed`: the most that may be in their greet delay at once.
    max_delayed: usize,
    /// Clients greeted at once because their source had passed (counted where the
    /// decision is made, which borrows the listener's policy from `self`).
    passed: Cell<u64>,
    /// The level of the `ACCEPT` line (info with `--log-connections`).
    log_level: Level,
    /// What each listener's connections get (its greeting and access policy), by the
    /// listener's index in the config: the loop's one copy, rebuilt whole from each
    /// config. A header waiter's client is checked against it once its header names
    /// it, with the policy current then.
    served: Vec<Served>,
    /// Closes of held connections not yet taken by the server; reused.
    closed: Vec<Closed>,
    /// See [`HeldCounts`].
    counts: HeldCounts,
}

impl HeldConnections {
    /// No connection held yet; room for `capacity` before anything grows.
    pub(crate) fn new(registry: Registry, config: &Config, capacity: usize) -> Self {
        let queue = |timer| {
            let capacity = match timer {
                Timer::Header if !config.any_proxy_protocol() => 0,
                // Delays are few until a listener has one; the queue grows then.
                Timer::Delay => 0,
                _ => capacity,
            };
            DeadlineQueue::with_capacity(timer_duration(config, timer), capacity)
        };
        HeldConnections {
            slab: Slab::with_capacity(capacity),
            registry,
            deadlines: Timer::ALL.map(queue),
            write_timeout: config.write_timeout,
            per_ip: config.max_per_ip.map(PerIpLimit::new),
            header_waiters: 0,
            max_header_waiters: max_header_waiters(config.max_connections),
            header_waiters_per_peer: config.max_per_ip.map(PerIpLimit::new),
            next_serial: 0,
            started: Instant::now(),
            max_connections: config.max_connections,
            delayed: 0,
            max_delayed: config.max_delayed,
            passed: Cell::new(0),
            log_level: config.connection_log_level,
            served: served::table(config),
            closed: Vec::new(),
            counts: HeldCounts::default(),
        }
    }

    /// A reload's greetings, policies, limits, timeouts and logging, for what happens
    /// from now on: a new `--max-per-ip` counts the connections already held,
    /// deadlines already running keep their time.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        self.served = served::table(config);
        for timer in Timer::ALL {
            self.deadlines[timer as usize].set_duration(timer_duration(config, timer));
        }
        self.write_timeout = config.write_timeout;
        match (
            config.max_per_ip,
            &mut self.per_ip,
            &mut self.header_waiters_per_peer,
        ) {
            (Some(limit), Some(per_ip), Some(per_peer)) => {
                per_ip.set_limit(limit);
                per_peer.set_limit(limit);
            }
            (Some(limit), _, _) => {
                let (mut per_ip, mut per_peer) = (PerIpLimit::new(limit), PerIpLimit::new(limit));
                for (_, held) in &self.slab {
                    let ip = held.conn.peer().ip();
                    match held.conn.phase() {
                        Phase::Header => per_peer.hold(ip),
                        _ => per_ip.hold(ip),
                    }
                }
                self.per_ip = Some(per_ip);
                self.header_waiters_per_peer = Some(per_peer);
            }
            (None, _, _) => {
                self.per_ip = None;
                self.header_waiters_per_peer = None;
            }
        }
        self.max_header_waiters = max_header_waiters(config.max_connections);
        self.max_connections = config.max_connections;
        self.max_delayed = config.max_delayed;
        self.log_level = config.connection_log_level;
    }

    /// How many connections are held.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// How many connections are held against `--max-connections`: all but those in
    /// their greet delay, which have `--max-delayed` to themselves.
    #[inline]
    pub(crate) fn counted(&self) -> usize {
        self.slab.len() - self.delayed
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// What happened to connections on their way through here so far.
    pub(crate) fn counts(&self) -> HeldCounts {
        HeldCounts {
            passed: self.passed.get(),
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
        // The clock is read only when something is queued: never on the fast path.
        if self.deadlines.iter().all(DeadlineQueue::is_empty) {
            return None;
        }
        let now = Instant::now();
        let soonest = self
            .deadlines
            .iter()
            .filter_map(|queue| queue.next(now))
            .min()?;
        Some(saturating_add(now, soonest))
    }

    /// A connection just accepted: advanced at once (the fast path), and held only if
    /// it must wait. Returns its close if it finished (or was refused) at once.
    #[inline]
    pub(crate) fn admit(&mut self, mut conn: Connection, now: Instant) -> Option<Closed> {
        let served = &self.served[conn.listener()];
        let (greeting, policy) = (&served.greeting, served.policy.as_ref());
        // Without --proxy-protocol the client is known at accept; with it, once the
        // header names it.
        let step = match conn.phase() {
            Phase::Header => match conn.advance(greeting) {
                Step::Named(client) => {
                    conn.set_peer(client);
                    self.greet_named(&mut conn, greeting, policy, now)
                }
                step => step,
            },
            _ => self.greet_named(&mut conn, greeting, policy, now),
        };
        let sending = bytes_for(&conn, greeting, policy);
        self.counts.bytes_sent += conn.sent(sending) as u64;
        match step {
            Step::Close(reason) => Some(closed(&conn, sending, reason)),
            // Only a header names a client, and it is named once.
            Step::Wait | Step::Named(_) => self.hold(conn, sending.clone(), now),
        }
    }

    /// A fresh connection whose client is known: its `ACCEPT` line, then it is greeted
    /// (at once, or after its greet delay), unless its policy or `--max-per-ip` turns
    /// it away.
    #[inline]
    fn greet_named(
        &self,
        conn: &mut Connection,
        greeting: &[u8],
        policy: Option<&Arc<Policy>>,
        now: Instant,
    ) -> Step {
        match self.admission(conn.peer(), self.counted(), policy, now) {
            Admission::Greet => conn.advance(greeting),
            Admission::Delay(pregreet) => conn.delay(pregreet == Pregreet::Drop),
            Admission::Refuse(reason) => Step::Close(reason),
            Admission::DenyMessage(message) => {
                conn.deny();
                conn.advance(message)
            }
        }
    }

    /// Logs the `ACCEPT` line of a connection whose client is now known (`held` were
    /// held against `--max-connections` before it), and says what it gets. The
    /// checks, in their documented order: the address list, the source's rate,
    /// `--max-per-ip`, the greet delay (skipped by a passed source, bounded by
    /// `--max-delayed`).
    // Always inlined: on the fast path the compiler then drops the checks a
    // listener without a policy never makes (it stopped inlining it on its own once
    // `greet_named` grew).
    #[inline(always)]
    fn admission<'p>(
        &self,
        client: SocketAddr,
        held: usize,
        policy: Option<&'p Arc<Policy>>,
        now: Instant,
    ) -> Admission<'p> {
        log_accept(client, held, self.max_connections, self.log_level);
        if let Some(policy) = policy {
            if let Some(refused) = refused_by(policy, client, now) {
                return refused;
            }
        }
        let admitted = self
            .per_ip
            .as_ref()
            .is_none_or(|limit| limit.admits(client.ip()));
        if !admitted {
            return Admission::Refuse(CloseReason::PerIpLimit);
        }
        match policy {
            Some(policy) if !policy.greet_delay.is_zero() => {
                self.delay_admission(policy, client.ip(), now)
            }
            _ => Admission::Greet,
        }
    }

    /// What a client at `ip` of a listener with a greet delay gets: its greeting at
    /// once if its source passed, else the delay if fewer than `--max-delayed` wait
    /// theirs, else nothing (postscreen's pre-queue limit): a flood of silent
    /// clients fills the delay's slots, never the greeting's.
    // Not inlined: the fast path of a listener without a delay never calls it.
    #[inline(never)]
    fn delay_admission(&self, policy: &Policy, ip: IpAddr, now: Instant) -> Admission<'static> {
        if policy
            .pass
            .as_ref()
            .is_some_and(|pass| pass.passes(ip, now))
        {
            self.passed.set(self.passed.get() + 1);
            return Admission::Greet;
        }
        if self.delayed >= self.max_delayed {
            return Admission::Refuse(CloseReason::DelayFull);
        }
        Admission::Delay(policy.pregreet)
    }

    /// Holds a connection that must wait: registers it for what its phase waits for
    /// and starts its phase's deadline. A header waiter may first need room; one that
    /// cannot be held is closed (and handed back).
    fn hold(&mut self, mut conn: Connection, greeting: Greeting, now: Instant) -> Option<Closed> {
        let phase = conn.phase();
        if phase == Phase::Header && !self.make_room_for_header_waiter(conn.peer().ip(), now) {
            debug!(
                target: crate::close::LOG_TARGET,
                "PROXY_ERROR peer={} error=\"its address has --max-per-ip connections waiting for their header\"",
                conn.peer()
            );
            return Some(closed(&conn, &greeting, CloseReason::ProxyHeader));
        }
        let key = self.slab.vacant_key();
        let interest = phase.interest();
        if let Err(err) = self
            .registry
            .register(conn.stream_mut(), Token(key), interest)
        {
            warn!(
                target: "greeter::held",
                "cannot register a connection with the poll: {}",
                describe_io_error(&err)
            );
            // Handed to the kernel already, or not begun: as good as it gets.
            let reason = match phase {
                Phase::Flushing | Phase::Lingering => CloseReason::Greeted,
                _ => CloseReason::Error,
            };
            return Some(closed(&conn, &greeting, reason));
        }
        self.count_progress(None, phase);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.push_deadline(conn.listener(), None, phase, now, key, serial);
        conn.set_accepted_ms(self.millis_since_start(now));
        self.count_in(phase, conn.peer().ip());
        self.slab.insert(Held {
            conn,
            greeting,
            serial,
        });
        None
    }

    /// Moves connection `key` along after a readiness event. Events for keys no longer
    /// held (closed earlier in the batch) are ignored.
    pub(crate) fn on_event(&mut self, key: usize, now: Instant) {
        let Some(held) = self.slab.get_mut(key) else {
            return;
        };
        let before = held.conn.phase();
        let sent_before = held.conn.sent(&held.greeting);
        let mut step = held.conn.advance(&held.greeting);
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

    /// A header waiter whose header named `client`: it stops counting as a waiter of
    /// its socket peer and counts for the client, unless the client's address holds
    /// its share (then it is closed here: `None`); else it is advanced again, toward
    /// its greeting.
    fn name_client(&mut self, key: usize, client: SocketAddr, now: Instant) -> Option<Step> {
        let socket_peer = self.slab[key].conn.peer();
        self.count_out(Phase::Header, socket_peer.ip());
        self.slab[key].conn.set_peer(client);
        // The policy its listener has now (a reload may have replaced it meanwhile).
        let listener = self.slab[key].conn.listener();
        let policy = self.served[listener].policy.clone();
        match self.admission(client, self.counted() - 1, policy.as_ref(), now) {
            Admission::Greet => {}
            Admission::Delay(pregreet) => {
                // Advanced below, where input that came with the header counts.
                let _ = self.slab[key].conn.delay(pregreet == Pregreet::Drop);
            }
            Admission::Refuse(reason) => {
                // Counted for nothing now, so closed without undoing anything.
                self.remove(key, reason);
                return None;
            }
            Admission::DenyMessage(message) => {
                let held = &mut self.slab[key];
                held.greeting = message.clone();
                held.conn.deny();
            }
        }
        self.count_in(self.slab[key].conn.phase(), client.ip());
        let held = &mut self.slab[key];
        Some(held.conn.advance(&held.greeting))
    }

    /// Closes the connections whose deadline has passed by `now` (or moves them on).
    #[inline]
    pub(crate) fn expire(&mut self, now: Instant) {
        for timer in Timer::ALL {
            while let Some(due) = self.deadlines[timer as usize].pop_expired(now) {
                if !is_live(&self.slab, &due, timer) {
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

    /// Closes every held connection (a drain that ran out of time): those still
    /// taking their greeting for `reason`, lingering ones as their linger cut short.
    pub(crate) fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.slab.iter().map(|(key, _)| key).collect();
        for key in keys {
            let reason = self.slab[key].conn.drain_reason(reason);
            self.close(key, reason);
        }
    }

    /// The closes of held connections since the last call, oldest first.
    pub(crate) fn take_closed(&mut self) -> std::vec::Drain<'_, Closed> {
        self.closed.drain(..)
    }

    /// Whether any held connection closed since [`HeldConnections::take_closed`].
    #[inline]
    pub(crate) fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Held connection `key` waited out its greet delay: unless it talked meanwhile,
    /// its source passes (its listener's table now: a reload may have replaced it).
    fn pass(&self, key: usize, now: Instant) {
        let conn = &self.slab[key].conn;
        if conn.pregreeted() {
            return;
        }
        let policy = self.served[conn.listener()].policy.as_ref();
        if let Some(pass) = policy.and_then(|policy| policy.pass.as_ref()) {
            pass.pass(conn.peer().ip(), now);
        }
    }

    /// Applies the step a held connection took from phase `before`.
    fn settle(&mut self, key: usize, before: Phase, step: Step, now: Instant) {
        // Out of its delay (to its greeting, or closed from it): its slot is free.
        if is_delaying(before) && !is_delaying(self.slab[key].conn.phase()) {
            self.delayed -= 1;
        }
        let reason = match step {
            Step::Close(reason) => reason,
            // A named client was advanced again before this.
            Step::Wait | Step::Named(_) => match self.rearm(key, before, now) {
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
        self.count_progress(Some(before), phase);
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
            let failed = self
                .registry
                .reregister(held.conn.stream_mut(), Token(key), needed)
                .is_err();
            if failed {
                return Err(CloseReason::Greeted);
            }
        }
        Ok(())
    }

    /// Closes held connection `key` for `reason` and hands its close back.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let conn = &self.slab[key].conn;
        self.count_out(conn.phase(), conn.peer().ip());
        self.remove(key, reason);
    }

    /// Takes connection `key` out (its accounting already undone), closes it, and
    /// hands its close back.
    fn remove(&mut self, key: usize, reason: CloseReason) {
        // Dropping the stream closes the socket, which also removes it from the poll:
        // no deregister call is needed for a descriptor that is never duplicated.
        let Held { conn, greeting, .. } = self.slab.remove(key);
        if reason.resets() {
            // Best effort: a failure leaves a plain close.
            let _ = SockRef::from(conn.stream()).set_linger(Some(Duration::ZERO));
        }
        self.closed.push(closed(&conn, &greeting, reason));
        self.compact_deadlines();
    }

    /// Counts a connection that is now held in `phase` from `ip`: a header waiter for
    /// its socket peer, any other for its client address.
    fn count_in(&mut self, phase: Phase, ip: IpAddr) {
        if is_delaying(phase) {
            self.delayed += 1;
        }
        if phase == Phase::Header {
            self.header_waiters += 1;
            if let Some(per_peer) = &mut self.header_waiters_per_peer {
                per_peer.hold(ip);
            }
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.hold(ip);
        }
    }

    /// Undoes [`HeldConnections::count_in`] for a connection that leaves `phase`.
    fn count_out(&mut self, phase: Phase, ip: IpAddr) {
        if is_delaying(phase) {
            self.delayed -= 1;
        }
        if phase == Phase::Header {
            self.header_waiters -= 1;
            if let Some(per_peer) = &mut self.header_waiters_per_peer {
                per_peer.release(ip);
            }
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.release(ip);
        }
    }

    /// Starts the deadline of a connection of `listener` that has entered `phase`
    /// from `before` (`None`: just held). It lasts its timer's duration, but a delay lasts its listener's
    /// `--greet-delay`, and the greeting after it what the delay left of
    /// `--write-timeout`.
    fn push_deadline(
        &mut self,
        listener: usize,
        before: Option<Phase>,
        phase: Phase,
        now: Instant,
        key: usize,
        serial: u64,
    ) {
        let queue = phase.timer() as usize;
        let delay = || {
            let policy = self.served[listener].policy.as_ref();
            policy.map_or(Duration::ZERO, |policy| policy.greet_delay)
        };
        let lasting = match (before, phase) {
            (_, Phase::Delaying { .. }) => delay(),
            (Some(Phase::Delaying { .. }), Phase::Writing { .. } | Phase::Flushing) => {
                self.write_timeout.saturating_sub(delay())
            }
            _ => {
                self.deadlines[queue].push(now, key, serial);
                return;
            }
        };
        self.deadlines[queue].push_lasting(now, lasting, key, serial);
    }

    /// Counts a connection that waits in `phase`, coming from `before` (`None`: just
    /// accepted): a partial write when it starts waiting to write, lingered when it
    /// starts waiting after its whole greeting was written.
    fn count_progress(&mut self, before: Option<Phase>, phase: Phase) {
        let greeted = |phase: Phase| matches!(phase, Phase::Flushing | Phase::Lingering);
        let writing = |phase: Phase| matches!(phase, Phase::Writing { .. });
        if greeted(phase) && !before.is_some_and(greeted) {
            self.counts.lingered += 1;
        } else if writing(phase) && !before.is_some_and(writing) {
            self.counts.partial_writes += 1;
        }
    }
}

impl HeldConnections {
    /// Whether a connection from socket peer `ip` may wait for its PROXY header, making
    /// room for it if need be. Not beyond `--max-per-ip` waiters from that peer. When
    /// a quarter of `--max-connections` already waits, the oldest waiter is closed:
    /// a header normally comes within milliseconds, so the oldest is the one least
    /// likely ever to send one, and a flood of header-less connections only ever
    /// pushes out its own.
    fn make_room_for_header_waiter(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self
            .header_waiters_per_peer
            .as_ref()
            .is_none_or(|limit| limit.admits(ip))
        {
            return false;
        }
        while self.header_waiters >= self.max_header_waiters {
            let Some(oldest) = self.deadlines[Timer::Header as usize].pop_oldest(now) else {
                break;
            };
            if is_live(&self.slab, &oldest, Timer::Header) {
                debug!(
                    target: crate::close::LOG_TARGET,
                    "PROXY_ERROR peer={} error=\"closed for a newer connection: too many wait for their header\"",
                    self.slab[oldest.key()].conn.peer()
                );
                self.close(oldest.key(), CloseReason::ProxyHeader);
            }
        }
        true
    }

    /// Drops the entries of connections that closed (or moved on) before their
    /// deadline, once they outnumber the held connections: amortised O(1) per close,
    /// and each queue stays below `2 x held + DEADLINE_SLACK` entries.
    fn compact_deadlines(&mut self) {
        let bound = 2 * self.slab.len() + DEADLINE_SLACK;
        for timer in Timer::ALL {
            let queue = &mut self.deadlines[timer as usize];
            if queue.len() > bound {
                queue.retain(|deadline| is_live(&self.slab, deadline, timer));
            }
        }
    }

    /// How many deadline entries (live or stale) are queued, for tests.
    #[cfg(test)]
    pub(crate) fn deadlines_queued(&self) -> usize {
        self.deadlines.iter().map(DeadlineQueue::len).sum()
    }
}

/// Whether `deadline` still belongs to a held connection in a phase `timer` bounds:
/// not to one that closed, moved on, or whose key has a new holder.
fn is_live(slab: &Slab<Held>, deadline: &Deadline, timer: Timer) -> bool {
    slab.get(deadline.key())
        .is_some_and(|held| held.serial == deadline.serial && held.conn.phase().timer() == timer)
}

/// Whether `phase` is a greet delay's.
fn is_delaying(phase: Phase) -> bool {
    matches!(phase, Phase::Delaying { .. })
}

/// The most connections that may wait for their PROXY header at once: a quarter of
/// the connection limit (at least one), so that the rest stays for clients that are
/// being greeted. A header normally comes with the first segment and never waits.
fn max_header_waiters(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// The queue duration of `timer` under `config` (a delay's is its listener's, given
/// with each entry).
fn timer_duration(config: &Config, timer: Timer) -> Duration {
    match timer {
        Timer::Header => config.proxy_timeout,
        Timer::Write => config.write_timeout,
        Timer::Linger => config.linger_timeout,
        Timer::Delay => Duration::ZERO,
    }
}

/// What `policy` refuses a client at `client` at `now`, if anything: the address
/// list first, then the source's rate.
#[inline]
fn refused_by<'p>(policy: &'p Policy, client: SocketAddr, now: Instant) -> Option<Admission<'p>> {
    if !policy.list.admits(client.ip()) {
        return Some(match &policy.deny_message {
            Some(message) => Admission::DenyMessage(message),
            None => Admission::Refuse(CloseReason::Denied),
        });
    }
    let over_rate = policy
        .rate
        .as_ref()
        .is_some_and(|rate| !rate.admits(client.ip(), now));
    over_rate.then_some(Admission::Refuse(CloseReason::Rate))
}

/// What a connection whose client is now known gets.
enum Admission<'p> {
    /// The greeting.
    Greet,
    /// The greeting after its greet delay; what a pregreeter gets.
    Delay(Pregreet),
    /// Nothing: closed at once for this reason.
    Refuse(CloseReason),
    /// A denied client: this deny message instead of the greeting.
    DenyMessage(&'p Greeting),
}

/// What `conn` is being sent: its listener's greeting, or for a denied client the
/// deny message.
#[inline]
fn bytes_for<'a>(
    conn: &Connection,
    greeting: &'a Greeting,
    policy: Option<&'a Arc<Policy>>,
) -> &'a Greeting {
    if conn.is_denied() {
        if let Some(message) = policy.and_then(|policy| policy.deny_message.as_ref()) {
            return message;
        }
    }
    greeting
}

/// The close of `conn`, being sent `greeting`, for `reason`. One closed while its PROXY
/// header was awaited never had its client named, nor its `ACCEPT` line logged. A
/// denied client that was sent the deny message counts as `denied`, however that
/// ended.
#[inline]
fn closed(conn: &Connection, greeting: &[u8], reason: CloseReason) -> Closed {
    let reason = if conn.is_denied() && reason.names().greeted {
        CloseReason::Denied
    } else {
        reason
    };
    let (input, first) = conn.input();
    Closed {
        peer: conn.peer(),
        accepted_ms: conn.accepted_ms(),
        // A greeting is at most 1 GiB (checked when a server is built).
        sent: conn.sent(greeting) as u32,
        reason,
        announced: conn.phase() != Phase::Header,
        input,
        first,
        pregreeted: conn.pregreeted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;

    #[test]
    fn held_connection_state_stays_small() {
        // Every held connection pays for this (its slab entry is no larger: the
        // vacant/occupied tag fits in a value `Held` never takes, as
        // scripts/held-rss.sh's 88 bytes show) and for one 16-byte deadline entry;
        // the budget for user-space memory per held connection is 95 bytes, and
        // `Held` may take 72 of them. mio's stream is 4 bytes in release builds and
        // 16 with debug assertions: so 72 + 16 bytes there.
        let held = std::mem::size_of::<Held>();
        let budget = if cfg!(debug_assertions) { 72 + 16 } else { 72 };
        assert!(held <= budget, "a held connection's state is {held} bytes");
        assert_eq!(std::mem::size_of::<Deadline>(), 16);
        assert_eq!(
            std::mem::size_of::<TcpStream>(),
            if cfg!(debug_assertions) { 16 } else { 4 }
        );
    }
}
