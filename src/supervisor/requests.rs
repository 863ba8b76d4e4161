//! The supervisor's answer to each [`Request`], and how it carries out each stage of a
//! stop (which [`Stop`](super::stop::Stop) decides): what the workers are asked, what
//! systemd is told, and the line logged.

use std::time::Instant;

use log::info;
use mio::Registry;

use crate::notify;

use super::request::Request;
use super::stop::StopStep;
use super::supervised::{Supervised, LOG_TARGET};

impl Supervised {
    /// Answers one request.
    pub(super) fn answer(&mut self, request: Request, registry: &Registry) {
        match request {
            Request::Drain | Request::StopNow | Request::Withdraw => {
                self.stop_upgrade(registry);
                let step = self.stop.on_request(request, Instant::now());
                self.take(step);
            }
            // The file is read on the reload thread: this one stays free.
            Request::Reload => self.reloads.request(),
            Request::LogTotals => {
                let snapshot = self.workers.snapshot();
                info!(
                    target: LOG_TARGET,
                    "totals in_flight={} {}",
                    snapshot.held,
                    snapshot.totals
                );
            }
            Request::Upgrade => self.start_upgrade(registry),
        }
    }

    /// Starts the drain once the shutdown delay is over.
    pub(super) fn end_delay_if_due(&mut self) {
        let step = self.stop.on_time(Instant::now());
        self.take(step);
    }

    /// Carries out one stage of a stop: what the workers are asked, what systemd is
    /// told, and the line logged.
    fn take(&mut self, step: StopStep) {
        match step {
            StopStep::Stay => {}
            StopStep::Drain => {
                notify::stopping();
                self.workers.shutdown();
            }
            StopStep::Delay(delay) => {
                self.view.announce_stopping();
                notify::stopping_after(delay);
                info!(
                    target: LOG_TARGET,
                    "shutdown: stop signal; /healthz answers 503, greeting on for {} before the drain (a second stop signal drains now)",
                    humantime::format_duration(delay)
                );
            }
            StopStep::DrainAfterDelay { early } => {
                if early {
                    info!(
                        target: LOG_TARGET,
                        "shutdown: second stop signal, ending the shutdown delay; draining now"
                    );
                } else {
                    info!(target: LOG_TARGET, "shutdown: the shutdown delay is over; draining");
                }
                notify::draining();
                self.workers.shutdown();
            }
            StopStep::CloseInFlight => {
                info!(
                    target: LOG_TARGET,
                    "shutdown: second stop signal, closing in-flight connections now"
                );
                self.workers.stop_now();
            }
            StopStep::StopNow => self.workers.stop_now(),
            StopStep::Withdraw => self.workers.shutdown(),
        }
    }
}
