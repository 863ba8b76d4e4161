//! SIGUSR2 as the supervisor sees it: start a new process (or say why not), follow it
//! to its outcome, and act on it: hand over and drain once it serves, name this
//! process again if it did not, and stop it with this one.

use std::time::Instant;

use log::{info, warn};
use mio::{Events, Registry, Token};

use crate::notify;
use crate::upgrade::Outcome;

use super::supervised::{Supervised, LOG_TARGET};

/// The token of an upgrade's report channel in the supervisor's poll (beside its
/// waker's).
const UPGRADE_REPORT: Token = Token(1);

impl Supervised {
    /// SIGUSR2: starts the new process, unless one is under way, the server is
    /// stopping, or this process cannot upgrade.
    pub(super) fn start_upgrade(&mut self, registry: &Registry) {
        let stopping = self.stop.begun();
        let Some(upgrader) = &mut self.upgrader else {
            warn!(
                target: LOG_TARGET,
                "upgrade: not available in this process (only greeter-server upgrades); ignoring it"
            );
            return;
        };
        if stopping {
            info!(target: LOG_TARGET, "upgrade: this process is stopping; ignoring SIGUSR2");
            return;
        }
        if let Some(pid) = upgrader.in_progress() {
            info!(target: LOG_TARGET, "upgrade: one is under way (pid {pid}); ignoring SIGUSR2");
            return;
        }
        if self.adopting.is_some() {
            // The process that upgraded to this one is still handing its trapped
            // clients over: another upgrade now would drain this one before it has
            // them all, and the rest would be closed.
            info!(
                target: LOG_TARGET,
                "upgrade: still taking over the trapped connections of the process that \
                 upgraded to this one; ignoring SIGUSR2 (send it again once it has exited)"
            );
            return;
        }
        if let Some(why) = upgrader.refusal() {
            warn!(target: LOG_TARGET, "upgrade: refused: {why}");
            return;
        }
        let exe = upgrader.exe().display().to_string();
        match upgrader.start(registry, UPGRADE_REPORT) {
            Ok(pid) => {
                info!(
                    target: LOG_TARGET,
                    "upgrade: started {exe} (pid {pid}); handing it the listening sockets"
                )
            }
            Err(err) => {
                warn!(
                    target: LOG_TARGET,
                    "upgrade: keeping this process: cannot start {exe}: {err}"
                )
            }
        }
    }

    /// A stop request: this process stops accepting, so its copies of the listening
    /// sockets go, and a stop during an upgrade stops the new process too (this one
    /// exits once it is gone): one that is not yet serving is asked to stop with
    /// SIGTERM (it drains what it accepted) rather than left to come up on its own.
    pub(super) fn stop_upgrade(&mut self, registry: &Registry) {
        let Some(upgrader) = &mut self.upgrader else {
            return;
        };
        upgrader.release_sockets();
        if let Some(pid) = upgrader.stop(registry) {
            info!(
                target: LOG_TARGET,
                "upgrade: stopping the new process (pid {pid}) too, as this one is stopping"
            );
        }
    }

    /// Follows an upgrade under way after a wake-up (`events`: the poll's, which may
    /// hold its report channel's), and acts on its outcome; `was_upgrading`: one was
    /// under way before the wake-up's requests.
    pub(super) fn follow_upgrade(
        &mut self,
        events: &Events,
        was_upgrading: bool,
        registry: &Registry,
    ) {
        let Some(upgrader) = &mut self.upgrader else {
            return;
        };
        let reported = events.iter().any(|event| event.token() == UPGRADE_REPORT);
        let outcome = match reported {
            true => upgrader.on_report(registry),
            false => None,
        }
        .or_else(|| upgrader.on_time(Instant::now(), registry));
        match outcome {
            Some(Outcome::Serving(pid)) => self.hand_over(pid),
            Some(Outcome::Failed(why)) => {
                warn!(target: LOG_TARGET, "upgrade: keeping this process: {why}");
            }
            Some(Outcome::Stopped(line)) => info!(target: LOG_TARGET, "upgrade: {line}"),
            Some(Outcome::Killed(line)) => warn!(target: LOG_TARGET, "upgrade: {line}"),
            None => {}
        }
        // A new process that did not serve may have written the pid file (and
        // removed it) or told systemd it is the main process, if it reported just as
        // it was stopped: both name this one again.
        if was_upgrading && !self.upgrading() && !self.handed_over {
            if let Some(pid_file) = &self.pid_file {
                pid_file.reclaim();
            }
            if self.manager.is_some() && !self.stop.stopping() {
                notify::ready(&self.view.snapshot());
            }
        }
    }

    /// The new process (`pid`) serves: the pid file names it, and this one drains,
    /// unless it was stopping already.
    fn hand_over(&mut self, pid: u32) {
        self.handed_over = true;
        // Named from now on, before the new process gets to it.
        if let Some(pid_file) = &mut self.pid_file {
            pid_file.hand_over(pid);
        }
        if self.stop.stopping() {
            info!(
                target: LOG_TARGET,
                "upgrade: the new process (pid {pid}) serves; this one was stopping already"
            );
            return;
        }
        info!(
            target: LOG_TARGET,
            "upgrade: the new process (pid {pid}) serves; draining this one"
        );
        // Not STOPPING=1, and no more STATUS= or WATCHDOG=1 from here: the service
        // goes on, in the new process.
        self.manager = None;
        self.stop.set_stopping();
        let channel = self.upgrader.as_mut().and_then(|upgrader| {
            upgrader.release_sockets();
            upgrader.take_serving_channel()
        });
        if let Some((_, stop)) = &self.metrics {
            stop.stop_accepting();
        }
        // The trapped connections go to the new process first: the drain would
        // close them.
        match channel {
            Some(channel) => self.workers.hand_over_then_drain(channel),
            None => self.workers.shutdown(),
        }
    }
}
