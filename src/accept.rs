//! The accept policy: which `accept(2)` failures concern one connection only and which
//! mean the server must stop accepting for a while, the [`AcceptGate`] that says
//! when the server accepts (ready, budget spent, at capacity, paused), and the
//! round's budget ([`ACCEPT_BUDGET`]). The accept loop itself, the rotation over the
//! listeners, is `server/listeners.rs`.
//!
//! One bad accept must never end the server. Linux passes some network errors of a
//! queued connection to `accept` itself (see accept(2), "Error handling"); those are
//! skipped like a connection that went away. Running out of descriptors or memory is
//! different: under edge triggering no new event arrives for connections already
//! queued, and retrying at once would spin, so the server pauses and retries on a timer
//! or as soon as one of its own connections frees a descriptor.

use std::io;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::deadlines::saturating_add;
use crate::error::describe_io_error;

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::accept";

/// The most connections one round of the loop accepts. A flood that refills the
/// backlog as fast as it drains cannot then starve held connections, deadlines or a
/// shutdown: the next round comes back to the backlog without waiting for an event.
pub const ACCEPT_BUDGET: usize = 256;

/// How long accepting pauses after a resource-exhaustion error before it is retried
/// (sooner if a connection closes and frees a descriptor).
pub(crate) const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// What an accept error means for the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// Only that connection is lost: count it and go on accepting.
    PerConnection,
    /// Out of descriptors or memory: pause, keep the queue, retry later.
    ResourcesExhausted,
    /// Anything else: pause like exhaustion, so that a broken listener cannot spin.
    Unexpected,
}

/// Classifies an error returned by `accept`.
pub(crate) fn classify(err: &io::Error) -> AcceptFailure {
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            AcceptFailure::ResourcesExhausted
        }
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EINTR
            | libc::EPROTO
            | libc::EPERM
            | libc::ETIMEDOUT
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET
            | libc::EOPNOTSUPP,
        ) => AcceptFailure::PerConnection,
        _ => match err.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted => AcceptFailure::PerConnection,
            _ => AcceptFailure::Unexpected,
        },
    }
}

/// How to fix a pause, for the one warning logged per episode.
pub(crate) fn remedy(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EMFILE) => {
            "the process is out of file descriptors: raise the limit (ulimit -n, or \
             LimitNOFILE= in the systemd unit) or lower --max-connections"
        }
        Some(libc::ENFILE) => {
            "the system is out of file descriptors: raise fs.file-max or lower \
             --max-connections"
        }
        Some(libc::ENOBUFS | libc::ENOMEM) => {
            "the kernel is short of memory for sockets: lower --max-connections or add memory"
        }
        _ => "unexpected accept error; the listener will be retried",
    }
}

/// Whether the accept loop may run, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
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
struct Trouble {
    /// When the first accept failed.
    since: Instant,
    /// How many accepts failed since.
    failures: u64,
}

/// The accept state machine: ready, budget spent, at capacity, or paused by
/// exhaustion, with the retry and the one-warning-per-episode logging. The server asks
/// it before accepting and tells it how each accept loop ended.
#[derive(Debug)]
pub(crate) struct AcceptGate {
    /// Whether to accept, and why not.
    state: GateState,
    /// An ongoing accept failure (exhaustion): logged once when it starts and once
    /// when it ends, never once per failed accept.
    trouble: Option<Trouble>,
}

impl AcceptGate {
    /// Ready to accept.
    pub(crate) fn new() -> Self {
        AcceptGate {
            state: GateState::Ready,
            trouble: None,
        }
    }

    /// Whether to run the accept loop this round: on a listener event when ready, at
    /// once after a spent budget, when a slot freed at capacity, when a paused retry
    /// is due or a descriptor freed.
    pub(crate) fn should_accept(
        &self,
        listener_readable: bool,
        has_room: bool,
        now: Instant,
    ) -> bool {
        match self.state {
            GateState::Ready => listener_readable,
            GateState::BudgetSpent => true,
            GateState::AtCapacity => has_room,
            GateState::Paused {
                retry_at,
                descriptor_freed,
            } => descriptor_freed || now >= retry_at,
        }
    }

    /// Whether the next poll must not wait: connections are known to be queued.
    pub(crate) fn must_poll_at_once(&self) -> bool {
        self.state == GateState::BudgetSpent
    }

    /// When a paused gate retries, if it is paused.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            GateState::Paused { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }

    /// The backlog is empty: ready again, and an episode of failures has ended.
    pub(crate) fn drained(&mut self, now: Instant) {
        self.state = GateState::Ready;
        if let Some(trouble) = self.trouble.take() {
            info!(
                target: LOG_TARGET,
                "accept resumed: backlog drained after {} failed accepts over {}ms",
                trouble.failures,
                now.duration_since(trouble.since).as_millis()
            );
        }
    }

    /// The round's budget is spent before the backlog was.
    pub(crate) fn budget_spent(&mut self) {
        self.state = GateState::BudgetSpent;
    }

    /// The connection limit is reached.
    pub(crate) fn at_capacity(&mut self) {
        self.state = GateState::AtCapacity;
    }

    /// An accept failed for lack of resources (or unexpectedly): pause, and log the
    /// first failure of an episode. Returns whether an episode began.
    pub(crate) fn pause(&mut self, err: &io::Error, now: Instant) -> bool {
        self.state = GateState::Paused {
            retry_at: saturating_add(now, ACCEPT_RETRY_DELAY),
            descriptor_freed: false,
        };
        match &mut self.trouble {
            Some(trouble) => {
                trouble.failures += 1;
                false
            }
            None => {
                warn!(
                    target: LOG_TARGET,
                    "accept paused: {}; retrying every {}ms and whenever a connection closes \
                     ({})",
                    describe_io_error(err),
                    ACCEPT_RETRY_DELAY.as_millis(),
                    remedy(err)
                );
                self.trouble = Some(Trouble {
                    since: now,
                    failures: 1,
                });
                true
            }
        }
    }

    /// One of the server's connections closed: a paused gate may retry at once.
    pub(crate) fn descriptor_freed(&mut self) {
        if let GateState::Paused {
            descriptor_freed, ..
        } = &mut self.state
        {
            *descriptor_freed = true;
        }
    }

    /// The listener is gone (a drain began): no retry timer, no zero-timeout polls.
    pub(crate) fn close(&mut self) {
        self.state = GateState::Ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn fd_and_memory_exhaustion_pause_accepting() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                classify(&os(code)),
                AcceptFailure::ResourcesExhausted,
                "{code}"
            );
        }
    }

    #[test]
    fn errors_of_one_queued_connection_are_skipped() {
        for code in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPROTO,
            libc::EINTR,
        ] {
            assert_eq!(classify(&os(code)), AcceptFailure::PerConnection, "{code}");
        }
    }

    #[test]
    fn the_gate_pauses_retries_and_comes_back_after_a_spent_budget() {
        let now = Instant::now();
        let mut gate = AcceptGate::new();
        assert!(gate.should_accept(true, true, now));
        assert!(!gate.should_accept(false, true, now));

        gate.budget_spent();
        assert!(gate.must_poll_at_once());
        assert!(
            gate.should_accept(false, true, now),
            "no new event will come"
        );

        gate.at_capacity();
        assert!(!gate.should_accept(true, false, now));
        assert!(gate.should_accept(false, true, now), "a slot freed");

        assert!(gate.pause(&os(libc::EMFILE), now), "an episode begins");
        assert!(!gate.pause(&os(libc::EMFILE), now), "and goes on");
        assert_eq!(gate.retry_at(), Some(now + ACCEPT_RETRY_DELAY));
        assert!(!gate.should_accept(true, true, now));
        assert!(gate.should_accept(false, true, now + ACCEPT_RETRY_DELAY));
        gate.descriptor_freed();
        assert!(gate.should_accept(false, true, now));
        gate.drained(now);
        assert_eq!(gate.retry_at(), None);
        assert!(gate.trouble.is_none(), "the episode ended");
    }

    #[test]
    fn anything_else_pauses_rather_than_ends_the_server() {
        assert_eq!(classify(&os(libc::EBADF)), AcceptFailure::Unexpected);
        assert!(remedy(&os(libc::EMFILE)).contains("ulimit -n"));
    }
}
