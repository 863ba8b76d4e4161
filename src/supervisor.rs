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

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Events, Poll, Token, Waker};

use crate::error::Failure;
use crate::metrics::{self, MetricsSource};
use crate::notify;
use crate::pid_file;
use crate::startup::Prepared;
use crate::totals::Totals;
use crate::upgrade::{Outcome, Report, UpgradeCommand, Upgrader};
use crate::workers::WorkersView;

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

/// What is serving once [`Supervisor::run`] has started everything.
#[derive(Debug)]
pub struct Serving {
    /// The addresses the workers listen on, in order, with the real ports.
    pub addrs: Vec<SocketAddr>,
    /// The metrics endpoint's address, with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// The workers' published state.
    pub view: WorkersView,
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
        let mut report = self.report.take();
        let addrs = server.workers.local_addrs().to_vec();
        let running = server
            .workers
            .spawn(Arc::clone(&self.requests.waker))
            .map_err(|err| report_failure(&mut report, err))?;
        let reload_counts = server.reloader.counts();
        let reloads = server
            .reloader
            .spawn(running.view())
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
                        workers: running.view(),
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
        if let Some(report) = report.take() {
            report.ready();
        }
        let pid_file = server.pid_file;
        let wrote_pid_file = pid_file
            .as_deref()
            .is_some_and(|path| write_pid_file(path, std::process::id()));
        let view = running.view();
        let mut pings = Pings::default();
        let mut manager = notify::enabled().then(|| ServiceManager::new(&view, &mut pings));
        let mut liveness = metrics_endpoint
            .is_some()
            .then(|| Liveness::new(&view, &mut pings));
        let shutdown_delay = server.shutdown_delay;
        // While a stop waits out the shutdown delay: when the drain starts.
        let mut delay_ends: Option<Instant> = None;
        on_serving(Serving {
            addrs,
            metrics: metrics_addr,
            view: view.clone(),
        });
        let mut upgrader = self.upgrade.take().map(|command| {
            Upgrader::new(
                command,
                server.handover,
                server.upgrade_timeout,
                server.drain_timeout,
            )
        });

        let mut events = Events::with_capacity(8);
        // This process no longer accepts (a stop, a handover or a failed worker).
        let mut stopping = false;
        // It was asked to stop (SIGTERM, SIGINT), at least once.
        let mut stop_asked = false;
        // An upgrade's new process serves: the pid file and the service are its own.
        let mut handed_over = false;
        let upgrading = |upgrader: &Option<Upgrader>| {
            upgrader.as_ref().and_then(Upgrader::in_progress).is_some()
        };
        // A new process that does not serve is waited for: this one never exits
        // leaving it behind.
        while !running.all_stopped() || upgrading(&upgrader) {
            let upgrade_due = upgrader
                .as_ref()
                .and_then(Upgrader::next_due)
                .map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = [
                manager.as_ref().map(ServiceManager::next_due),
                liveness.as_ref().map(Liveness::next_due),
                delay_ends.map(|at| at.saturating_duration_since(Instant::now())),
                upgrade_due,
            ]
            .into_iter()
            .flatten()
            .min();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The documented line (it was the signal loop before this was a library).
                error!(target: LOG_TARGET, "signal loop failed: {err}; stopping the workers");
                running.stop_now();
                break;
            }
            let was_upgrading = upgrading(&upgrader);
            for request in self.requests.take() {
                if matches!(
                    request,
                    Request::Drain | Request::StopNow | Request::Withdraw
                ) {
                    if let Some(upgrader) = &mut upgrader {
                        upgrader.release_sockets();
                        // A stop during an upgrade stops the new process too, and this
                        // one exits once it is gone: one that is not yet serving is
                        // asked to stop with SIGTERM (it drains what it accepted) rather
                        // than left to come up on its own.
                        if let Some(pid) = upgrader.stop(self.poll.registry()) {
                            info!(
                                target: LOG_TARGET,
                                "upgrade: stopping the new process (pid {pid}) too, as this one is stopping"
                            );
                        }
                    }
                }
                match request {
                    Request::Drain if !stop_asked => {
                        stop_asked = true;
                        // Already draining (after a handover, or for a failed worker),
                        // the drain goes on: under systemd a stop sends SIGTERM to
                        // every process of the service, the old one of an upgrade too
                        // (which does not wait out the shutdown delay either).
                        if stopping {
                            continue;
                        }
                        if shutdown_delay.is_zero() {
                            stopping = true;
                            notify::stopping();
                            running.shutdown();
                        } else {
                            // Still accepting: a load balancer that has not yet seen
                            // /healthz's 503 may send more.
                            delay_ends = Some(Instant::now() + shutdown_delay);
                            view.announce_stopping();
                            notify::stopping_after(shutdown_delay);
                            info!(
                                target: LOG_TARGET,
                                "shutdown: stop signal; /healthz answers 503, greeting on for {} before the drain (a second stop signal drains now)",
                                humantime::format_duration(shutdown_delay)
                            );
                        }
                    }
                    Request::Drain if delay_ends.is_some() => {
                        delay_ends = None;
                        info!(
                            target: LOG_TARGET,
                            "shutdown: second stop signal, ending the shutdown delay; draining now"
                        );
                        stopping = true;
                        notify::draining();
                        running.shutdown();
                    }
                    Request::Drain => {
                        info!(
                            target: LOG_TARGET,
                            "shutdown: second stop signal, closing in-flight connections now"
                        );
                        running.stop_now();
                    }
                    Request::StopNow => {
                        delay_ends = None;
                        stop_asked = true;
                        stopping = true;
                        running.stop_now();
                    }
                    // Not STOPPING=1: this process may never have been the service's
                    // main process, and the one that withdraws it tells systemd itself.
                    Request::Withdraw if !stopping => {
                        delay_ends = None;
                        stopping = true;
                        running.shutdown();
                    }
                    Request::Withdraw => {}
                    // The file is read on the reload thread: this one stays free.
                    Request::Reload => reloads.request(),
                    Request::LogTotals => {
                        let snapshot = running.snapshot();
                        info!(
                            target: LOG_TARGET,
                            "totals in_flight={} {}",
                            snapshot.held,
                            snapshot.totals
                        );
                    }
                    Request::Upgrade => {
                        self.start_upgrade(upgrader.as_mut(), stopping || delay_ends.is_some())
                    }
                }
            }
            if let Some(upgrader) = &mut upgrader {
                let reported = events.iter().any(|event| event.token() == UPGRADE_REPORT);
                let registry = self.poll.registry();
                let outcome = match reported {
                    true => upgrader.on_report(registry),
                    false => None,
                }
                .or_else(|| upgrader.on_time(Instant::now(), registry));
                match outcome {
                    Some(Outcome::Serving(pid)) => {
                        handed_over = true;
                        // Named from now on, before the new process gets to it.
                        if let Some(path) = pid_file.as_deref().filter(|_| wrote_pid_file) {
                            write_pid_file(path, pid);
                        }
                        if stopping {
                            info!(
                                target: LOG_TARGET,
                                "upgrade: the new process (pid {pid}) serves; this one was stopping already"
                            );
                        } else {
                            info!(
                                target: LOG_TARGET,
                                "upgrade: the new process (pid {pid}) serves; draining this one"
                            );
                            // Not STOPPING=1, and no more STATUS= or WATCHDOG=1 from
                            // here: the service goes on, in the new process.
                            manager = None;
                            stopping = true;
                            upgrader.release_sockets();
                            if let Some((_, stop)) = &metrics_endpoint {
                                stop.stop_accepting();
                            }
                            running.shutdown();
                        }
                    }
                    Some(Outcome::Failed(why)) => {
                        warn!(target: LOG_TARGET, "upgrade: keeping this process: {why}");
                    }
                    Some(Outcome::Stopped(line)) => info!(target: LOG_TARGET, "upgrade: {line}"),
                    Some(Outcome::Killed(line)) => warn!(target: LOG_TARGET, "upgrade: {line}"),
                    None => {}
                }
                // A new process that did not serve may have written the pid file
                // (and removed it) or told systemd it is the main process, if it
                // reported just as it was stopped: both name this one again.
                if was_upgrading && upgrader.in_progress().is_none() && !handed_over {
                    if let Some(path) = pid_file.as_deref().filter(|_| wrote_pid_file) {
                        write_pid_file(path, std::process::id());
                    }
                    if manager.is_some() && !stopping {
                        notify::ready(&view.snapshot());
                    }
                }
            }
            if delay_ends.is_some_and(|at| Instant::now() >= at) {
                delay_ends = None;
                // Already stopping if a worker failed meanwhile.
                if !stopping {
                    info!(target: LOG_TARGET, "shutdown: the shutdown delay is over; draining");
                    stopping = true;
                    notify::draining();
                    running.shutdown();
                }
            }
            if let Some(manager) = &mut manager {
                manager.tick(&view, &mut pings);
            }
            if let Some(liveness) = &mut liveness {
                liveness.tick(&view, &mut pings);
            }
            // A worker that stopped on its own failed: take the others down with it.
            if !stopping && running.stopped() > 0 {
                stopping = true;
                running.shutdown();
            }
        }
        let joined = running.join();
        // After a handover, the scrapes this process took are answered before it
        // exits (each within its 2 s); the new process takes the rest.
        if handed_over {
            if let Some((thread, _)) = metrics_endpoint {
                let _ = thread.join();
            }
        }
        // The file names the process that took over, if one did.
        if let Some(path) = pid_file
            .as_deref()
            .filter(|_| wrote_pid_file && !handed_over)
        {
            pid_file::remove_if_ours(path);
        }
        let totals = joined?;
        info!(target: LOG_TARGET, "totals in_flight=0 {totals}");
        Ok(totals)
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

/// Writes `pid` to the pid file at `path`; whether it did (a failure is a warning: the
/// server serves on).
fn write_pid_file(path: &Path, pid: u32) -> bool {
    match pid_file::write_pid(path, pid) {
        Ok(()) => true,
        Err(err) => {
            warn!(target: LOG_TARGET, "pid file: cannot write {}: {err}", path.display());
            false
        }
    }
}

impl Supervisor {
    /// SIGUSR2: starts the new process, unless one is under way, the server is
    /// stopping, or this process cannot upgrade.
    fn start_upgrade(&self, upgrader: Option<&mut Upgrader>, stopping: bool) {
        let Some(upgrader) = upgrader else {
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
        if let Some(why) = upgrader.refusal() {
            warn!(target: LOG_TARGET, "upgrade: refused: {why}");
            return;
        }
        let exe = upgrader.exe().display().to_string();
        match upgrader.start(self.poll.registry(), UPGRADE_REPORT) {
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
}

/// What the supervisor tells systemd now and then (with `NOTIFY_SOCKET` set): the
/// status line, and the watchdog's pings while every loop still runs rounds.
#[derive(Debug)]
struct ServiceManager {
    next_status: Instant,
    watchdog: Option<Watchdog>,
}

/// `WATCHDOG=1` every `interval`, sent only if every loop answered the last ping.
#[derive(Debug)]
struct Watchdog {
    interval: Duration,
    next: Instant,
    /// The last ping asked of the loops.
    ping: u64,
}

/// The numbers of the pings sent to the loops, from one counter: the watchdog and
/// `/livez` ping on their own schedules, and a loop answers the latest ping, which
/// answers every earlier one too ([`WorkersView::answered`] is `>=`).
#[derive(Debug, Default)]
struct Pings {
    last: u64,
}

impl Pings {
    /// Asks every loop to answer a new ping; returns its number.
    fn send(&mut self, view: &WorkersView) -> u64 {
        self.last += 1;
        view.ping(self.last);
        self.last
    }
}

/// `/livez`'s verdict, renewed every [`LIVENESS_EVERY`]: whether every loop still
/// running answered the ping sent at the last renewal.
#[derive(Debug)]
struct Liveness {
    next: Instant,
    /// The ping the next verdict checks.
    ping: u64,
}

impl Liveness {
    fn new(view: &WorkersView, pings: &mut Pings) -> Self {
        Liveness {
            next: Instant::now() + LIVENESS_EVERY,
            ping: pings.send(view),
        }
    }

    /// How long the supervisor may sleep before the next verdict.
    fn next_due(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Renews the verdict if it is due, and sends the next ping.
    fn tick(&mut self, view: &WorkersView, pings: &mut Pings) {
        let now = Instant::now();
        if now >= self.next {
            view.set_live(view.running_answered(self.ping));
            self.ping = pings.send(view);
            self.next = now + LIVENESS_EVERY;
        }
    }
}

impl ServiceManager {
    /// Says `READY=1`, and asks the loops for their first watchdog answer.
    fn new(view: &WorkersView, pings: &mut Pings) -> Self {
        notify::ready(&view.snapshot());
        let now = Instant::now();
        let watchdog = notify::watchdog_interval().map(|interval| Watchdog {
            interval,
            next: now + interval,
            ping: pings.send(view),
        });
        ServiceManager {
            next_status: now + notify::STATUS_EVERY,
            watchdog,
        }
    }

    /// How long the supervisor may sleep before something is due.
    fn next_due(&self) -> Duration {
        let next = self
            .watchdog
            .as_ref()
            .map_or(self.next_status, |dog| dog.next.min(self.next_status));
        next.saturating_duration_since(Instant::now())
    }

    /// Sends what is due: the status line, and a watchdog ping if every loop has run a
    /// round since the last one (a stuck loop stops the pings, and systemd restarts
    /// the service).
    fn tick(&mut self, view: &WorkersView, pings: &mut Pings) {
        let now = Instant::now();
        if now >= self.next_status {
            notify::status(&view.snapshot());
            self.next_status = now + notify::STATUS_EVERY;
        }
        if let Some(dog) = &mut self.watchdog {
            if now >= dog.next {
                if view.answered(dog.ping) {
                    notify::watchdog();
                }
                dog.ping = pings.send(view);
                dog.next = now + dog.interval;
            }
        }
    }
}
