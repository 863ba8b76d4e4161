//! The supervisor's start: the workers, the reload thread and the metrics endpoint
//! started, then what says that this process serves, in this order: the report to a
//! process upgrading to this one (first: it cannot block), `--pid-file`, systemd's
//! `READY=1`, then the caller's `on_serving`.

use log::warn;

use crate::error::Failure;
use crate::metrics::{self, MetricsSource};
use crate::notify;
use crate::pid_file::PidFile;
use crate::startup::Prepared;
use crate::upgrade::{Report, Upgrader};

use super::adopting::Adopting;
use super::service::{Liveness, Pings, ServiceManager};
use super::serving::Serving;
use super::stop::Stop;
use super::supervised::{Supervised, LOG_TARGET};
use super::Supervisor;

impl Supervisor {
    /// Starts everything `server` holds and says that it serves; a failure before
    /// that is told to the process upgrading to this one, if one is.
    pub(super) fn start(
        &mut self,
        server: Prepared,
        on_serving: impl FnOnce(Serving),
    ) -> Result<Supervised, Failure> {
        let mut report = self.report.take();
        let addrs = server.workers.local_addrs().to_vec();
        let workers = server
            .workers
            .spawn(self.requests.waker())
            .map_err(|err| report_failure(&mut report, err))?;
        let reload_counts = server.reloader.counts();
        let reloads = server
            .reloader
            .spawn(workers.view())
            .map_err(|err| report_failure(&mut report, err))?;
        let mut metrics_addr = None;
        let mut metrics_endpoint = None;
        if let Some(endpoint) = server.metrics {
            let addr = endpoint
                .local_addr()
                .map_err(|err| Failure::new("cannot start the metrics endpoint", err, None))
                .map_err(|err| report_failure(&mut report, err))?;
            metrics_endpoint = Some(
                endpoint
                    .spawn(MetricsSource {
                        workers: workers.view(),
                        reloads: reload_counts,
                        lifetime_buckets: MetricsSource::lifetime_buckets_for(server.longest_held),
                    })
                    .map_err(|err| report_failure(&mut report, err))?,
            );
            metrics::announce(addr);
            metrics_addr = Some(addr);
        }
        // First, as soon as the workers run: the process upgrading to this one waits
        // for it (and stops this one if it does not come in time), so nothing that can
        // block (a disk, systemd's socket, a stdout nobody reads) comes before it.
        let adopting = report.take().and_then(|report| {
            Adopting::new(report.ready(), self.poll.registry())
                .map_err(|err| {
                    warn!(
                        target: LOG_TARGET,
                        "upgrade: cannot read the old process's trapped connections ({err}); \
                         it keeps them until it drains"
                    );
                })
                .ok()
        });
        let pid_file = server.pid_file.and_then(PidFile::create);
        let view = workers.view();
        let mut pings = Pings::default();
        let manager = notify::enabled().then(|| ServiceManager::new(&view, &mut pings));
        let liveness = metrics_endpoint
            .is_some()
            .then(|| Liveness::new(&view, &mut pings));
        on_serving(Serving {
            addrs,
            metrics: metrics_addr,
            view: view.clone(),
        });
        let upgrader = self.upgrade.take().map(|command| {
            Upgrader::new(
                command,
                server.handover,
                server.upgrade_timeout,
                server.drain_timeout,
            )
        });
        Ok(Supervised {
            workers,
            view,
            reloads,
            metrics: metrics_endpoint,
            pid_file,
            pings,
            manager,
            liveness,
            upgrader,
            stop: Stop::new(server.shutdown_delay),
            handed_over: false,
            adopting,
        })
    }
}

/// Tells the process upgrading to this one, if one is, why this one failed before it
/// served; returns the failure.
fn report_failure(report: &mut Option<Report>, failure: Failure) -> Failure {
    if let Some(report) = report.take() {
        report.failed(&failure);
    }
    failure
}
