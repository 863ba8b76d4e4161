//! The supervisor: runs the worker loops, the reload thread and the metrics endpoint
//! until every worker has stopped, answering a stream of [`Request`]s (drain, stop
//! now, reload, log the totals) that any thread can send through [`Requests`]. The
//! binary maps signals to requests; tests send them directly.
//!
//! A second drain request closes what is still in flight at once (a first one that
//! finds the process draining already, after a handover, lets the drain go on); a
//! worker that stops on its own has failed, and the others are shut down with it.
//! With `--shutdown-delay`, a first drain request only says that the process is
//! stopping (`/healthz` answers 503, `STOPPING=1`) while the workers greet on for the
//! delay; a second one ends the delay, a third closes what is in flight.
//!
//! With `--metrics` it also pings every loop each [`LIVENESS_EVERY`] for `/livez`.
//!
//! It also owns what says that this process serves, in this order: the report to a
//! process upgrading to this one (first: it cannot block), `--pid-file`, systemd's
//! `READY=1`, then the caller's `on_serving` (the binary prints its listening lines).

//!
//! One job a file: `start` starts everything and says that it serves (`serving` is
//! what the caller is then told); `requests` answers each request and walks a stop
//! through its stages; `upgrading` starts an upgrade and follows it to its outcome;
//! `service` pings the loops for systemd and `/livez`. This file holds the requests'
//! channel and the loop that waits for them.

mod requests;
mod service;
mod serving;
mod start;
mod upgrading;

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{error, info};
use mio::{Events, Poll, Token, Waker};

use crate::error::Failure;
use crate::metrics::MetricsStop;
use crate::pid_file::PidFile;
use crate::reload::ReloadRequests;
use crate::startup::Prepared;
use crate::totals::Totals;
use crate::upgrade::{Report, UpgradeCommand, Upgrader};
use crate::workers::{RunningWorkers, WorkersView};

use requests::Stop;
use service::{Liveness, Pings, ServiceManager};
pub use serving::{announce, Serving};

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
    /// Re-read the greeting file for new connections (SIGHUP).
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

/// The one waker of the supervisor's poll (mio allows one per poll): woken by a
/// request and by a worker thread that ends; each wake-up looks at both.
const WAKE: Token = Token(0);

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::supervisor";

/// The report channel of an upgrade under way.
const UPGRADE_REPORT: Token = Token(1);

/// How often the loops are pinged for `/livez`: a loop that has not run a round for
/// this long (when the next ping is due) turns it 503.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// Sends requests to a running supervisor from any thread; never blocks.
#[derive(Debug, Clone)]
pub struct Requests {
    /// Requests not yet taken, in order.
    queue: Arc<Mutex<Vec<Request>>>,
    /// Wakes the supervisor's poll.
    waker: Arc<Waker>,
}

impl Requests {
    /// Asks for `request`.
    pub fn send(&self, request: Request) {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request);
        // Best effort: if the wake fails, the supervisor's poll has failed too.
        let _ = self.waker.wake();
    }

    fn take(&self) -> Vec<Request> {
        std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// Runs a [`Prepared`] server.
#[derive(Debug)]
pub struct Supervisor {
    poll: Poll,
    requests: Requests,
    /// What SIGUSR2 starts, if this process can upgrade (the binary; not an
    /// embedding program or a test).
    upgrade: Option<UpgradeCommand>,
    /// The report channel of the process that is upgrading to this one, if one is.
    report: Option<Report>,
}

/// Everything a running supervisor looks after, from [`Supervisor::run`]'s start
/// until every worker has stopped.
#[derive(Debug)]
struct Supervised {
    workers: RunningWorkers,
    /// The workers' published state (`/healthz`, systemd's status line).
    view: WorkersView,
    /// Asks the reload thread for a reload.
    reloads: ReloadRequests,
    /// The metrics endpoint's thread and its stop, with `--metrics`.
    metrics: Option<(JoinHandle<()>, MetricsStop)>,
    /// `--pid-file`, once written.
    pid_file: Option<PidFile>,
    /// The pings the loops answer, for the watchdog and `/livez`.
    pings: Pings,
    /// What systemd is told, with `NOTIFY_SOCKET`; `None` once a new process of an
    /// upgrade serves (the service goes on there).
    manager: Option<ServiceManager>,
    /// `/livez`'s verdict, with `--metrics`.
    liveness: Option<Liveness>,
    /// What SIGUSR2 starts, if this process can upgrade.
    upgrader: Option<Upgrader>,
    /// Where a stop stands.
    stop: Stop,
    /// An upgrade's new process serves: the pid file and the service are its own.
    handed_over: bool,
}

impl Supervisor {
    /// A supervisor, ready to take requests before it runs.
    ///
    /// # Errors
    /// If its poll cannot be created.
    pub fn new() -> Result<Supervisor, Failure> {
        let fail = |err| Failure::new("cannot set up the supervisor", err, None);
        let poll = Poll::new().map_err(fail)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(fail)?);
        Ok(Supervisor {
            poll,
            requests: Requests {
                queue: Arc::default(),
                waker,
            },
            upgrade: None,
            report: None,
        })
    }

    /// Lets [`Request::Upgrade`] start `command`.
    pub fn enable_upgrades(&mut self, command: UpgradeCommand) {
        self.upgrade = Some(command);
    }

    /// Tells the process upgrading to this one how the start went: `ready` as soon as
    /// the workers run, before anything that can block, or why it failed.
    pub fn report_to(&mut self, report: Report) {
        self.report = Some(report);
    }

    /// Where to send requests.
    pub fn requests(&self) -> Requests {
        self.requests.clone()
    }

    /// Starts everything `server` holds, says that it serves (see the module's
    /// documentation for the order), calls `on_serving`, then answers requests until
    /// every worker has stopped and no new process of an upgrade is on its way out;
    /// returns the workers' summed totals.
    ///
    /// # Errors
    /// If a thread cannot be started, or a worker failed.
    pub fn run(
        mut self,
        server: Prepared,
        on_serving: impl FnOnce(Serving),
    ) -> Result<Totals, Failure> {
        let mut supervised = self.start(server, on_serving)?;
        let mut events = Events::with_capacity(8);
        // A new process that does not serve is waited for: this one never exits
        // leaving it behind.
        while !supervised.workers.all_stopped() || supervised.upgrading() {
            if let Err(err) = self.poll.poll(&mut events, supervised.next_due()) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The documented line (it was the signal loop before this was a library).
                error!(target: LOG_TARGET, "signal loop failed: {err}; stopping the workers");
                supervised.workers.stop_now();
                break;
            }
            let was_upgrading = supervised.upgrading();
            let registry = self.poll.registry();
            for request in self.requests.take() {
                supervised.answer(request, registry);
            }
            let reported = events.iter().any(|event| event.token() == UPGRADE_REPORT);
            supervised.follow_upgrade(reported, was_upgrading, registry);
            supervised.tick();
        }
        supervised.finish()
    }
}

impl Supervised {
    /// Whether a new process of an upgrade is under way (starting, or on its way out).
    fn upgrading(&self) -> bool {
        self.upgrader
            .as_ref()
            .and_then(Upgrader::in_progress)
            .is_some()
    }

    /// How long the loop may sleep before something is due.
    fn next_due(&self) -> Option<Duration> {
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
    fn tick(&mut self) {
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
    fn finish(self) -> Result<Totals, Failure> {
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
