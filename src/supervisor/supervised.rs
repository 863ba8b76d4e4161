//! What a running supervisor looks after, from its start until every worker has
//! stopped: the workers, the threads beside them, the pid file, systemd, an upgrade
//! and where a stop stands; what is due after each wake-up (a handover's trapped
//! connections taken included), and the end. Its answers to requests and to an
//! upgrade live in `requests` and `upgrading`.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Registry};

use crate::error::Failure;
use crate::metrics::MetricsStop;
use crate::pid_file::PidFile;
use crate::reload::ReloadRequests;
use crate::totals::Totals;
use crate::upgrade::Upgrader;
use crate::workers::{RunningWorkers, WorkersView};

use super::adopting::{Adopted, Adopting};
use super::service::{Liveness, Pings, ServiceManager};
use super::stop::Stop;

/// The log target of the supervisor's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
pub(super) const LOG_TARGET: &str = "greeter::supervisor";

/// Everything a running supervisor looks after, from the start of
/// [`Supervisor::run`](super::Supervisor::run) until every worker has stopped.
#[derive(Debug)]
pub(super) struct Supervised {
    /// The worker threads.
    pub(super) workers: RunningWorkers,
    /// The workers' published state (`/healthz`, systemd's status line).
    pub(super) view: WorkersView,
    /// Asks the reload thread for a reload.
    pub(super) reloads: ReloadRequests,
    /// The metrics endpoint's thread and its stop, with `--metrics`.
    pub(super) metrics: Option<(JoinHandle<()>, MetricsStop)>,
    /// `--pid-file`, once written.
    pub(super) pid_file: Option<PidFile>,
    /// The pings the loops answer, for the watchdog and `/livez`.
    pub(super) pings: Pings,
    /// What systemd is told, with `NOTIFY_SOCKET`; `None` once a new process of an
    /// upgrade serves (the service goes on there).
    pub(super) manager: Option<ServiceManager>,
    /// `/livez`'s verdict, with `--metrics`.
    pub(super) liveness: Option<Liveness>,
    /// What SIGUSR2 starts, if this process can upgrade.
    pub(super) upgrader: Option<Upgrader>,
    /// Where a stop stands.
    pub(super) stop: Stop,
    /// An upgrade's new process serves: the pid file and the service are its own.
    pub(super) handed_over: bool,
    /// The trapped connections of the process that upgraded to this one, coming.
    pub(super) adopting: Option<Adopting>,
}

impl Supervised {
    /// Whether a new process of an upgrade is under way (starting, or on its way out).
    pub(super) fn upgrading(&self) -> bool {
        self.upgrader
            .as_ref()
            .and_then(Upgrader::in_progress)
            .is_some()
    }

    /// How long the loop may sleep before something is due.
    pub(super) fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        [
            self.manager.as_ref().map(ServiceManager::next_due),
            self.liveness.as_ref().map(Liveness::next_due),
            self.stop
                .delay_ends()
                .map(|at| at.saturating_duration_since(now)),
            self.upgrader
                .as_ref()
                .and_then(Upgrader::next_due)
                .map(|at| at.saturating_duration_since(now)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What is due after each wake-up: the end of a shutdown delay, systemd's and
    /// `/livez`'s pings, and a worker that stopped on its own.
    pub(super) fn tick(&mut self) {
        self.end_delay_if_due();
        if let Some(manager) = &mut self.manager {
            manager.tick(&self.view, &mut self.pings);
        }
        if let Some(liveness) = &mut self.liveness {
            liveness.tick(&self.view, &mut self.pings);
        }
        // A worker that stopped on its own failed: take the others down with it.
        if !self.stop.stopping() && self.workers.stopped() > 0 {
            self.stop.set_stopping();
            self.workers.shutdown();
        }
    }

    /// Joins the workers once every one has stopped; returns their summed totals.
    pub(super) fn finish(self) -> Result<Totals, Failure> {
        let joined = self.workers.join();
        // After a handover, the scrapes this process took are answered before it
        // exits (each within its 2 s); the new process takes the rest.
        if self.handed_over {
            if let Some((thread, _)) = self.metrics {
                let _ = thread.join();
            }
        }
        // Removed unless it names the process that took over.
        drop(self.pid_file);
        let totals = joined?;
        info!(target: LOG_TARGET, "totals in_flight=0 {totals}");
        Ok(totals)
    }
}

impl Supervised {
    /// After a wake-up (`events`: the poll's): the trapped connections the old
    /// process handed over since, given to the workers; once it closes the channel,
    /// one line says how many came.
    pub(super) fn adopt_handed(&mut self, events: &Events, registry: &Registry) {
        let Some(adopting) = &mut self.adopting else {
            return;
        };
        let Some(Adopted {
            adopted,
            unreadable,
        }) = adopting.take_handed(events, registry, &self.workers)
        else {
            return;
        };
        if unreadable > 0 {
            warn!(
                target: LOG_TARGET,
                "upgrade: {unreadable} handed trapped connections came with a record this \
                 version cannot read (or not with their own socket); closed them"
            );
        }
        if adopted > 0 {
            info!(
                target: LOG_TARGET,
                "upgrade: took over {adopted} trapped connections from the old process"
            );
        }
        self.adopting = None;
    }
}
