//! Which workers a new connection wakes: one, not all, and only as many as there are
//! cores.
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

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use crate::handle::ServerHandle;

/// A round of an accepting worker at least this long counts it as behind.
pub(crate) const LONG_ROUND: Duration = Duration::from_millis(10);

/// A covering helper stays in the listener's poll (does not rest) while the first
/// worker's round in progress has run this long: the first worker is stuck.
pub(crate) const STUCK_ROUND: Duration = Duration::from_millis(25);

/// How long a covering helper leaves the listener after taking an arrival while the
/// first worker keeps up.
pub(crate) const COVER_REST: Duration = Duration::from_millis(25);

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
            log::debug!("EPOLLEXCLUSIVE refused; every worker is woken for every arrival");
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
mod tests {
    use super::*;
    use mio::net::TcpListener;
    use mio::{Events, Poll};
    use std::time::Duration;

    /// Two polls share a listener added here: an arrival reaches a poll under the
    /// listener's token, as a mio registration would, and removal stops the events.
    #[test]
    fn roles_follow_the_cores_and_listen_as_the_set_says() {
        let set = AcceptSet::new(2);
        assert_eq!(
            [set.role(0), set.role(1), set.role(2), set.role(63)],
            [Role::First, Role::Helper, Role::Reserve, Role::Reserve]
        );
        let listening = |set: &AcceptSet| {
            [Role::First, Role::Helper, Role::Reserve].map(|role| set.should_listen(role))
        };
        assert_eq!(listening(&set), [true, false, false]);
        set.accepting_worker_behind(true);
        assert_eq!(listening(&set), [true, true, false]);
        set.accepting_worker_full(true);
        assert_eq!(listening(&set), [true, true, true]);
        set.accepting_worker_behind(false);
        assert_eq!(listening(&set), [true, true, true], "still full");
        set.accepting_worker_full(false);
        assert_eq!(listening(&set), [true, false, false]);
        // One core: one helper still, to cover the first worker.
        assert_eq!(AcceptSet::new(1).role(1), Role::Helper);
        assert_eq!(AcceptSet::new(1).role(2), Role::Reserve);
    }

    #[test]
    fn the_first_workers_round_is_seen_running_until_it_ends() {
        let set = AcceptSet::new(2);
        let start = Instant::now();
        assert_eq!(set.first_round_running(start), None, "waits at first");
        set.first_round_began(start);
        let later = start + Duration::from_millis(30);
        assert_eq!(
            set.first_round_running(later),
            Some(Duration::from_millis(30))
        );
        set.first_round_ended();
        assert_eq!(set.first_round_running(later), None);
    }

    #[test]
    fn a_listener_added_here_reads_back_through_mio_and_is_removed_here() {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (first, second) = (Poll::new().unwrap(), Poll::new().unwrap());
        let token = Token(usize::MAX - 1);
        for poll in [&first, &second] {
            register(poll.registry(), listener.as_raw_fd(), token).unwrap();
        }
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let mut events = Events::with_capacity(4);
        let mut first = first;
        first
            .poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|event| event.token()).collect();
        assert_eq!(tokens, [token]);
        assert!(events.iter().all(|event| event.is_readable()));

        deregister(first.registry(), listener.as_raw_fd()).unwrap();
        // Not added any more: a second removal fails.
        assert!(deregister(first.registry(), listener.as_raw_fd()).is_err());
        let _another = std::net::TcpStream::connect(addr).unwrap();
        first.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
    }
}
