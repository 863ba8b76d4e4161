//! What the supervisor can be asked to do, and the channel any thread asks through:
//! a queue, and the waker of the supervisor's poll.

use std::sync::{Arc, Mutex};

use mio::Waker;

/// What the supervisor can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop accepting and drain within `--drain-timeout` (SIGINT, SIGTERM); asked a
    /// second time, close what is in flight at once. With `--shutdown-delay`, the
    /// first only announces the stop and greets on for the delay; the second starts
    /// the drain, the third closes what is in flight.
    Drain,
    /// Close what is in flight at once.
    StopNow,
    /// Read the config, greeting and address-list files again and hand the workers
    /// what a reload may change, for new connections (SIGHUP); on the reload thread,
    /// so that this one stays free.
    Reload,
    /// Log the `totals` line so far (SIGUSR1).
    LogTotals,
    /// Start the binary again, hand it the listening sockets, and drain once it
    /// serves (SIGUSR2).
    Upgrade,
    /// The process that was upgrading to this one stops it (SIGTERM from it: that
    /// upgrade was stopped, or this one did not report in time): drain as on
    /// SIGTERM, but it is not a stop signal, so that a stop signal that also comes
    /// (under systemd, `KillMode=control-group` sends one to every process of the
    /// service) is the first, not a second that would close what is in flight.
    Withdraw,
}

/// Sends requests to a running supervisor from any thread; never blocks.
#[derive(Debug, Clone)]
pub struct Requests {
    /// Requests not yet taken, in order.
    queue: Arc<Mutex<Vec<Request>>>,
    /// Wakes the supervisor's poll.
    waker: Arc<Waker>,
}

impl Requests {
    /// A channel whose requests wake the supervisor's poll through `waker`.
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Requests {
            queue: Arc::default(),
            waker,
        }
    }

    /// The waker of the supervisor's poll, for a worker thread to wake it as it ends.
    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Asks for `request`.
    pub fn send(&self, request: Request) {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request);
        // Best effort: if the wake fails, the supervisor's poll has failed too.
        let _ = self.waker.wake();
    }

    /// The requests not yet taken, in order.
    pub(super) fn take(&self) -> Vec<Request> {
        std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}
