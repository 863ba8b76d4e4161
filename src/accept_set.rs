//! The accept set: which of the workers that share the listening sockets a new
//! connection wakes (one, not all, and only as many as there are cores), each
//! worker's role and its [`Sharing`] state (standby, stepping in and out, covering a
//! stuck first worker), and the `EPOLLEXCLUSIVE` registration that puts a worker's
//! listeners in or out of its poll when its part changes.
//!
//! The workers share one listening socket (one accept queue: `workers.rs` says why),
//! each registering it with its own poll. Registered the usual way, every arrival
//! wakes every worker blocked in `epoll_wait`, and all but one find the queue empty:
//! with `--workers 64` on 2 cores that thundering herd cut throughput to a quarter.
//! `EPOLLEXCLUSIVE` (Linux 4.5) makes the kernel wake only one poll that is waiting
//! (polls that are busy still get the event queued, cheaply, and take it on their
//! next round, so no arrival can be missed).
//!
//! One wake-up per arrival is not enough when there are more workers than cores: the
//! kernel wakes the first worker *waiting* in `epoll_wait`, so while the first ones
//! are busy it wakes later ones, and a third runnable loop on 2 cores only adds
//! context switches (`--workers 64` served 73% of one worker's rate). Even one per
//! core costs: two accepting loops on 2 cores that a local client also uses cost 1.06-
//! 1.08x one loop's CPU a connection, each hand-over a wake-up and the socket's
//! state crossing cores. So the [`AcceptSet`] gives the workers roles:
//! - the **first** worker always takes wake-ups;
//! - **helpers** (the next ones, up to one worker per core) step in while an
//!   accepting worker falls behind: one of its rounds found a quarter of the backlog
//!   (up to the round's accept budget) waiting, and for a second after its last such
//!   round;
//! - **reserves** (the rest) step in only while an accepting worker is full (at its
//!   `--max-connections`), so that no connection waits in the backlog while some
//!   worker has room; so do helpers.
//!
//! "Behind" is time as well as accepts: a round of an accepting worker that lasts
//! [`LONG_ROUND`] or more (large greetings to fast readers, many held connections)
//! counts too, so that work that lives in the connections spreads as well.
//!
//! And helpers **cover** the first worker, which is what `EPOLLEXCLUSIVE` gives when
//! every worker listens: the kernel wakes a waiting poll, so a helper that keeps the
//! listener in its poll is woken only by an arrival that found the first worker not
//! waiting (busy in a round, or stopped: a debugger, a swapped-out page). It accepts
//! what is queued and then, if the first worker's round in progress has not yet run
//! for [`STUCK_ROUND`], rests: it leaves the listener for [`COVER_REST`] and comes
//! back (its registration, taken again, reports what queued meanwhile). So a stuck
//! first worker delays a connection by at most about [`COVER_REST`] while a helper
//! has room, a first worker that keeps up costs a helper at most two wake-ups per
//! [`COVER_REST`] (the arrival, and the end of its rest), and an idle server wakes
//! nobody. The first worker publishes only
//! when its round started (two atomic stores a round, no system call).
//!
//! mio has no flag for it, so this module goes beneath mio in one place: it adds and
//! removes the listener with `epoll_ctl` on the poll's own epoll descriptor, with the
//! same edge-triggered readable interest and the token in `data` exactly as mio
//! stores it, so the events read back through mio as any other. A listener added here
//! must be removed here too ([`deregister`]): mio's own deregistration checks (with
//! debug assertions) that mio added the source.
//!
//! The loop (`server.rs`) tells its [`Sharing`] what each round saw
//! ([`Sharing::follow`]) and moves its listeners as the answer says
//! ([`move_listeners`]); it pays nothing of this when it serves its listeners alone.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::{Registry, Token};

use crate::accept::ACCEPT_BUDGET;
use crate::error::describe_io_error;
use crate::handle::ServerHandle;

/// The log target of the workers' lines (behind, caught up, covering, stepping in and
/// out): documented (docs/operations.md: `RUST_LOG=greeter::server=debug`) from when
/// they were logged by the loop, so kept.
const LOG_TARGET: &str = "greeter::server";

/// The target of the one line about the kernel's support, kept from the module that
/// logged it before the accept set had a room of its own.
const KERNEL_LOG_TARGET: &str = "greeter::wake_one";

/// A round of an accepting worker at least this long counts it as behind.
pub(crate) const LONG_ROUND: Duration = Duration::from_millis(10);

/// A covering helper stays in the listener's poll (does not rest) while the first
/// worker's round in progress has run this long: the first worker is stuck.
pub(crate) const STUCK_ROUND: Duration = Duration::from_millis(25);

/// How long a covering helper leaves the listener after taking an arrival while the
/// first worker keeps up.
pub(crate) const COVER_REST: Duration = Duration::from_millis(25);

/// How long an accepting loop stays counted as behind after its last round that found
/// its backlog deep: helpers do not come and go with every round.
const BEHIND_HOLD: Duration = Duration::from_secs(1);

/// A worker's part in taking the wake-ups of the shared listening sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Always listens.
    First,
    /// Listens while an accepting worker is behind or full, and covers the first
    /// worker (see the module's doc) otherwise.
    Helper,
    /// Listens while an accepting worker is full.
    Reserve,
}

/// The workers that share listening sockets: which take wake-ups, and how the others
/// are told to step in.
#[derive(Debug)]
pub(crate) struct AcceptSet {
    /// The first worker and the helpers: one worker per core.
    per_core: usize,
    /// How many accepting workers are full now.
    full: AtomicUsize,
    /// How many accepting workers are behind now.
    behind: AtomicUsize,
    /// Every worker's handle but the first's, by index - 1, to wake them (set once,
    /// after every worker is built).
    others: OnceLock<Vec<ServerHandle>>,
    /// The clock's zero for `first_round_started`.
    epoch: Instant,
    /// When the first worker's round in progress started, in nanoseconds since
    /// `epoch` plus one; 0 while it waits in its poll.
    first_round_started: AtomicU64,
}

impl AcceptSet {
    /// A set for a host with `cores` cores (at least one).
    pub(crate) fn new(cores: usize) -> Self {
        AcceptSet {
            // One helper even on one core: a stuck first worker needs cover there too.
            per_core: cores.max(2),
            full: AtomicUsize::new(0),
            behind: AtomicUsize::new(0),
            others: OnceLock::new(),
            epoch: Instant::now(),
            first_round_started: AtomicU64::new(0),
        }
    }

    /// The first worker began a round at `at` (its poll returned).
    #[inline]
    pub(crate) fn first_round_began(&self, at: Instant) {
        let since = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.first_round_started.store(since + 1, Ordering::Relaxed);
    }

    /// The first worker finished its round: it waits in its poll.
    #[inline]
    pub(crate) fn first_round_ended(&self) {
        self.first_round_started.store(0, Ordering::Relaxed);
    }

    /// How long the first worker's round in progress has run at `now` (`None`: it
    /// waits in its poll).
    pub(crate) fn first_round_running(&self, now: Instant) -> Option<Duration> {
        let started = self
            .first_round_started
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        let since = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        Some(Duration::from_nanos(since.saturating_sub(started)))
    }

    /// Worker `index`'s role.
    pub(crate) fn role(&self, index: usize) -> Role {
        match index {
            0 => Role::First,
            index if index < self.per_core => Role::Helper,
            _ => Role::Reserve,
        }
    }

    /// The handles of every worker but the first, in order, to wake them (once).
    pub(crate) fn set_others(&self, others: Vec<ServerHandle>) {
        let _ = self.others.set(others);
    }

    /// Whether a worker of `role` that has room should listen now.
    pub(crate) fn should_listen(&self, role: Role) -> bool {
        let full = || self.full.load(Ordering::Relaxed) > 0;
        match role {
            Role::First => true,
            Role::Helper => full() || self.behind.load(Ordering::Relaxed) > 0,
            Role::Reserve => full(),
        }
    }

    /// An accepting worker filled (`true`) or has room again (`false`). Helpers and
    /// reserves are woken when one fills, so that they listen; they stop at their
    /// next round once none is full.
    pub(crate) fn accepting_worker_full(&self, full: bool) {
        if full {
            self.full.fetch_add(1, Ordering::Relaxed);
            self.wake(|_| true);
        } else {
            self.full.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// An accepting worker fell behind (`true`) or caught up (`false`). Helpers are
    /// woken when one falls behind.
    pub(crate) fn accepting_worker_behind(&self, behind: bool) {
        if behind {
            self.behind.fetch_add(1, Ordering::Relaxed);
            self.wake(|role| role == Role::Helper);
        } else {
            self.behind.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Wakes the workers (but the first) whose role `wanted` says.
    fn wake(&self, wanted: impl Fn(Role) -> bool) {
        let others = self.others.get().into_iter().flatten();
        for (index, other) in (1..).zip(others) {
            if wanted(self.role(index)) {
                let _ = other.wake();
            }
        }
    }
}

/// A loop's place among workers that share listening sockets.
#[derive(Debug)]
pub(crate) struct Sharing {
    /// Which of the workers take wake-ups now.
    set: Arc<AcceptSet>,
    /// Its index among the workers, for the log.
    index: usize,
    /// When it listens (see the module's doc).
    role: Role,
    /// Whether this accepting loop is counted as full in the set.
    counted_full: bool,
    /// While this accepting loop is counted as behind: until when, unless it falls
    /// behind again.
    behind_until: Option<Instant>,
    /// A covering helper that took an arrival while the first worker kept up: until
    /// when it stays out of the listener's poll (see the module's doc).
    resting_until: Option<Instant>,
    /// Whether a covering helper stays in because the first worker is stuck (for the
    /// log: once per episode).
    covering_stuck: bool,
}

/// What one round of a sharing loop saw, for [`Sharing::follow`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    /// When the round began (its poll returned).
    pub(crate) began: Instant,
    /// How many connections it accepted.
    pub(crate) accepted: usize,
    /// Whether a listener's event woke it.
    pub(crate) listener_readable: bool,
    /// Whether the loop is below its `--max-connections`.
    pub(crate) has_room: bool,
    /// Whether its listeners are in its poll now.
    pub(crate) listening: bool,
    /// Its `--backlog`, which says how deep a backlog is deep.
    pub(crate) backlog: i32,
}

impl Sharing {
    /// Worker `index` of `set`, in the role the set gives it; counted neither full nor
    /// behind.
    pub(crate) fn new(set: &Arc<AcceptSet>, index: usize) -> Self {
        Sharing {
            set: Arc::clone(set),
            index,
            role: set.role(index),
            counted_full: false,
            behind_until: None,
            resting_until: None,
            covering_stuck: false,
        }
    }

    /// The loop's poll returned at `now`: the first worker publishes that its round
    /// runs (two atomic stores a round, with [`AcceptSet::first_round_ended`]).
    #[inline]
    pub(crate) fn round_began(&self, now: Instant) {
        if self.role == Role::First {
            self.set.first_round_began(now);
        }
    }

    /// When the loop must wake for the set even if nothing else happens: when its rest
    /// ends, and once when its count as behind runs out (a helper that fell behind
    /// may get no other round to say it caught up, and would keep the others
    /// listening).
    pub(crate) fn wake_at(&self) -> [Option<Instant>; 2] {
        [self.resting_until, self.behind_until]
    }

    /// Follows one round of the loop (not called once it drains): counts it full or
    /// behind in the set as it is, and returns whether it should keep its listeners
    /// in its poll now: while it has room, and as its role says (the module's doc
    /// says why): the first always, a helper while an accepting loop is behind or
    /// full, a reserve while one is full. An arrival wakes one waiting loop
    /// (`EPOLLEXCLUSIVE`), so a full loop that stayed registered could take every
    /// wake-up and leave the connections in the backlog while others have room
    /// (nginx steps out the same way). The caller moves the listeners
    /// ([`move_listeners`]) only when the answer differs from `round.listening`.
    pub(crate) fn follow(&mut self, round: Round) -> bool {
        let now = round.began;
        if self.role != Role::Reserve {
            if self.counted_full == round.has_room {
                self.counted_full = !round.has_room;
                self.set.accepting_worker_full(!round.has_room);
            }
            let lasted = Instant::now().saturating_duration_since(now);
            self.follow_backlog(round.accepted, behind_at(round.backlog), lasted, now);
        }
        if self.role == Role::First {
            self.set.first_round_ended();
        }
        let stepped_in = self.set.should_listen(self.role);
        let covering = self.role == Role::Helper && !stepped_in;
        if covering && round.listener_readable && round.listening {
            self.follow_first_worker(now);
        }
        if self.resting_until.is_some_and(|until| now >= until) {
            self.resting_until = None;
        }
        let listen = round.has_room && (stepped_in || (covering && self.resting_until.is_none()));
        if listen != round.listening && !covering {
            debug!(
                target: LOG_TARGET,
                "worker {} {} the shared listeners",
                self.index,
                if listen { "listens on" } else { "steps out of" }
            );
        }
        listen
    }

    /// Counts this accepting loop as behind in its set from a round that accepted
    /// `behind_at` connections or more, or that lasted [`LONG_ROUND`] or more
    /// (`round`), until a round after [`BEHIND_HOLD`] without either.
    fn follow_backlog(&mut self, accepted: usize, behind_at: usize, round: Duration, now: Instant) {
        if accepted >= behind_at || round >= LONG_ROUND {
            if self.behind_until.is_none() {
                debug!(
                    target: LOG_TARGET,
                    "worker {} is behind ({accepted} connections in one round of {} ms): helpers step in",
                    self.index,
                    round.as_millis()
                );
                self.set.accepting_worker_behind(true);
            }
            self.behind_until = Some(now + BEHIND_HOLD);
        } else if self.behind_until.is_some_and(|until| now >= until) {
            debug!(target: LOG_TARGET, "worker {} caught up", self.index);
            self.behind_until = None;
            self.set.accepting_worker_behind(false);
        }
    }

    /// A covering helper was woken by an arrival, so the first worker was not waiting
    /// in its poll: it stays in the listener's poll while the first worker's round has
    /// run for [`STUCK_ROUND`] or more, and otherwise rests for [`COVER_REST`] (the
    /// module's doc says why).
    fn follow_first_worker(&mut self, now: Instant) {
        let running = self.set.first_round_running(now);
        if running.is_some_and(|running| running >= STUCK_ROUND) {
            if !self.covering_stuck {
                self.covering_stuck = true;
                debug!(
                    target: LOG_TARGET,
                    "worker {} covers worker 0, whose round has run for {} ms",
                    self.index,
                    running.unwrap_or_default().as_millis()
                );
            }
            self.resting_until = None;
        } else {
            self.covering_stuck = false;
            self.resting_until = Some(now + COVER_REST);
        }
    }
}

/// How many connections one round of an accepting loop must find waiting for the loop
/// to count as behind: a quarter of the listen backlog (so helpers step in well
/// before it overflows), and no more than a round's accept budget.
fn behind_at(backlog: i32) -> usize {
    (usize::try_from(backlog).unwrap_or(0) / 4).clamp(1, ACCEPT_BUDGET)
}

/// Puts a loop's listening sockets (each `fd` with its token) into its poll
/// (`listen`) or takes them out, as [`Sharing::follow`] said: putting one back reports
/// what is already queued. A failure is logged, not returned: the loop goes on with
/// the others.
pub(crate) fn move_listeners(
    registry: &Registry,
    listeners: impl Iterator<Item = (RawFd, Token)>,
    listen: bool,
) {
    for (fd, token) in listeners {
        let changed = if listen {
            register(registry, fd, token)
        } else {
            deregister(registry, fd)
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
}

/// Adds the listening socket `fd` to `registry`'s poll as `token`: readable,
/// edge-triggered, and waking one waiting poll per arrival. On a kernel without
/// `EPOLLEXCLUSIVE` it is added without it (every worker woken, as before).
///
/// # Errors
/// If `epoll_ctl` fails (the descriptor is not a socket, or already added).
pub(crate) fn register(registry: &Registry, fd: RawFd, token: Token) -> io::Result<()> {
    // mio's readable interest is EPOLLIN | EPOLLRDHUP | EPOLLET; EPOLLRDHUP cannot go
    // with EPOLLEXCLUSIVE, and a listening socket never reports it anyway.
    const READABLE: u32 = (libc::EPOLLIN | libc::EPOLLET) as u32;
    match epoll_ctl(
        registry,
        libc::EPOLL_CTL_ADD,
        fd,
        READABLE | libc::EPOLLEXCLUSIVE as u32,
        token,
    ) {
        // Linux before 4.5 does not know the flag.
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            debug!(
                target: KERNEL_LOG_TARGET,
                "EPOLLEXCLUSIVE refused; every worker is woken for every arrival"
            );
            epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, READABLE, token)
        }
        result => result,
    }
}

/// Removes the listening socket `fd`, added by [`register`], from `registry`'s poll.
///
/// # Errors
/// If `epoll_ctl` fails (the descriptor was not added).
pub(crate) fn deregister(registry: &Registry, fd: RawFd) -> io::Result<()> {
    epoll_ctl(registry, libc::EPOLL_CTL_DEL, fd, 0, Token(0))
}

fn epoll_ctl(
    registry: &Registry,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: Token,
) -> io::Result<()> {
    // mio's epoll selector keeps the token in the event's data as a u64.
    let mut event = libc::epoll_event {
        events,
        u64: token.0 as u64,
    };
    // SAFETY: `registry.as_raw_fd()` is the epoll descriptor of a live poll (the
    // registry borrows it), `fd` is a descriptor the caller owns, and `event` is a
    // valid, initialised epoll_event that the kernel only reads during the call.
    let result = unsafe { libc::epoll_ctl(registry.as_raw_fd(), op, fd, &mut event) };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
