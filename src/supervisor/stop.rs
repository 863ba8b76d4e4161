//! A stop's stages: a first stop signal drains (or, with `--shutdown-delay`, greets on
//! for the delay with `/healthz` answering 503, then drains), a second ends the delay
//! or closes what is in flight. [`Stop`] decides the stage and has no effects of its
//! own, so that its table is tested apart (`stop/tests.rs`); the supervisor carries
//! each stage out.

use std::time::{Duration, Instant};

use super::request::Request;

#[cfg(test)]
mod tests;

/// Where a stop stands.
#[derive(Debug)]
pub(super) struct Stop {
    /// `--shutdown-delay`.
    shutdown_delay: Duration,
    /// This process no longer accepts (a stop, a handover or a failed worker).
    stopping: bool,
    /// It was asked to stop (SIGTERM, SIGINT), at least once.
    asked: bool,
    /// While a stop waits out the shutdown delay: when the drain starts.
    delay_ends: Option<Instant>,
}

/// What one stage of a stop asks of the workers, and what it says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StopStep {
    /// Nothing changes.
    Stay,
    /// A first stop signal: stop accepting and drain (`STOPPING=1`).
    Drain,
    /// A first stop signal with `--shutdown-delay`: greet on for this long, with
    /// `/healthz` answering 503 (`STOPPING=1` with the delay).
    Delay(Duration),
    /// The shutdown delay is over, cut short by a second stop signal (`early`) or in
    /// its time: drain now.
    DrainAfterDelay {
        /// A second stop signal ended it.
        early: bool,
    },
    /// A second stop signal while draining: close what is in flight now.
    CloseInFlight,
    /// [`Request::StopNow`]: close what is in flight, nothing said.
    StopNow,
    /// [`Request::Withdraw`]: drain, nothing said (not `STOPPING=1`: this process may
    /// never have been the service's main process, and the one that withdraws it
    /// tells systemd itself).
    Withdraw,
}

impl Stop {
    /// No stop yet; a first stop signal waits out `shutdown_delay` before the drain.
    pub(super) fn new(shutdown_delay: Duration) -> Self {
        Stop {
            shutdown_delay,
            stopping: false,
            asked: false,
            delay_ends: None,
        }
    }

    /// Whether this process no longer accepts.
    pub(super) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether a stop has begun: the process stops accepting, or waits out the
    /// shutdown delay.
    pub(super) fn begun(&self) -> bool {
        self.stopping || self.delay_ends.is_some()
    }

    /// When the shutdown delay ends, while one runs.
    pub(super) fn delay_ends(&self) -> Option<Instant> {
        self.delay_ends
    }

    /// The process stops accepting for a cause of its own (a handover, a failed
    /// worker), not a request.
    pub(super) fn set_stopping(&mut self) {
        self.stopping = true;
    }

    /// The stage a stop request (`Drain`, `StopNow`, `Withdraw`) at `now` starts.
    pub(super) fn on_request(&mut self, request: Request, now: Instant) -> StopStep {
        match request {
            Request::Drain if !self.asked => {
                self.asked = true;
                // Already draining (after a handover, or for a failed worker), the
                // drain goes on: under systemd a stop sends SIGTERM to every process
                // of the service, the old one of an upgrade too (which does not wait
                // out the shutdown delay either).
                if self.stopping {
                    StopStep::Stay
                } else if self.shutdown_delay.is_zero() {
                    self.stopping = true;
                    StopStep::Drain
                } else {
                    // Still accepting: a load balancer that has not yet seen
                    // /healthz's 503 may send more.
                    self.delay_ends = Some(now + self.shutdown_delay);
                    StopStep::Delay(self.shutdown_delay)
                }
            }
            Request::Drain if self.delay_ends.is_some() => {
                self.delay_ends = None;
                self.stopping = true;
                StopStep::DrainAfterDelay { early: true }
            }
            Request::Drain => StopStep::CloseInFlight,
            Request::StopNow => {
                self.delay_ends = None;
                self.asked = true;
                self.stopping = true;
                StopStep::StopNow
            }
            Request::Withdraw if !self.stopping => {
                self.delay_ends = None;
                self.stopping = true;
                StopStep::Withdraw
            }
            _ => StopStep::Stay,
        }
    }

    /// The stage the time starts at `now`: the drain, once the shutdown delay is over
    /// (unless a worker failed meanwhile and the process is stopping already).
    pub(super) fn on_time(&mut self, now: Instant) -> StopStep {
        if self.delay_ends.is_none_or(|at| now < at) {
            return StopStep::Stay;
        }
        self.delay_ends = None;
        if self.stopping {
            return StopStep::Stay;
        }
        self.stopping = true;
        StopStep::DrainAfterDelay { early: false }
    }
}
