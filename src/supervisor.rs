//! The supervisor: runs the worker loops, the reload thread and the metrics endpoint
//! until every worker has stopped, answering a stream of [`Request`]s (drain, stop
//! now, reload, log the totals) that any thread can send through [`Requests`]. The
//! binary maps signals to requests; tests send them directly.
//!
//! A second drain request closes what is still in flight at once; a worker that stops
//! on its own has failed, and the others are shut down with it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Events, Poll, Token, Waker};

use crate::error::Failure;
use crate::metrics::{self, MetricsSource};
use crate::notify;
use crate::startup::Prepared;
use crate::totals::Totals;
use crate::upgrade::{Outcome, UpgradeCommand, Upgrader};
use crate::workers::WorkersView;

/// What the supervisor can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop accepting and drain within `--drain-timeout` (SIGINT, SIGTERM); asked a
    /// second time, close what is in flight at once.
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
}

/// The one waker of the supervisor's poll (mio allows one per poll): woken by a
/// request and by a worker thread that ends; each wake-up looks at both.
const WAKE: Token = Token(0);

/// The report channel of an upgrade under way.
const UPGRADE_REPORT: Token = Token(1);

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
    /// Set once an upgrade's new process serves: this one drains and hands over.
    handed_over: Arc<AtomicBool>,
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
            handed_over: Arc::default(),
        })
    }

    /// Lets [`Request::Upgrade`] start `command`.
    pub fn enable_upgrades(&mut self, command: UpgradeCommand) {
        self.upgrade = Some(command);
    }

    /// Whether an upgrade's new process took over (set before the drain that follows).
    pub fn handed_over(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.handed_over)
    }

    /// Where to send requests.
    pub fn requests(&self) -> Requests {
        self.requests.clone()
    }

    /// Starts everything `server` holds, calls `on_serving` once it all runs, then
    /// answers requests until every worker has stopped; returns their summed totals.
    ///
    /// # Errors
    /// If a thread cannot be started, or a worker failed.
    pub fn run(
        mut self,
        server: Prepared,
        on_serving: impl FnOnce(Serving),
    ) -> Result<Totals, Failure> {
        let addrs = server.workers.local_addrs().to_vec();
        let running = server.workers.spawn(Arc::clone(&self.requests.waker))?;
        let reload_counts = server.reloader.counts();
        let reloads = server.reloader.spawn(running.view())?;
        let mut metrics_addr = None;
        let mut metrics_endpoint = None;
        if let Some(endpoint) = server.metrics {
            let addr = endpoint
                .local_addr()
                .map_err(|err| Failure::new("cannot start the metrics endpoint", err, None))?;
            metrics_endpoint = Some(endpoint.spawn(MetricsSource {
                workers: running.view(),
                reloads: reload_counts,
                lifetime_buckets: MetricsSource::lifetime_buckets_for(server.longest_held),
            })?);
            metrics::announce(addr);
            metrics_addr = Some(addr);
        }
        let view = running.view();
        let mut manager = notify::enabled().then(|| ServiceManager::new(&view));
        on_serving(Serving {
            addrs,
            metrics: metrics_addr,
            view: view.clone(),
        });
        let mut upgrader = self
            .upgrade
            .take()
            .map(|command| Upgrader::new(command, server.handover, server.upgrade_timeout));

        let mut events = Events::with_capacity(8);
        let mut stopping = false;
        while !running.all_stopped() {
            let upgrade_due = upgrader
                .as_ref()
                .and_then(Upgrader::deadline)
                .map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = [manager.as_ref().map(ServiceManager::next_due), upgrade_due]
                .into_iter()
                .flatten()
                .min();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The documented line (it was the signal loop before this was a library).
                error!("signal loop failed: {err}; stopping the workers");
                running.stop_now();
                break;
            }
            for request in self.requests.take() {
                if matches!(request, Request::Drain | Request::StopNow) {
                    if let Some(upgrader) = &mut upgrader {
                        upgrader.release_sockets();
                    }
                }
                match request {
                    Request::Drain if !stopping => {
                        stopping = true;
                        notify::stopping();
                        running.shutdown();
                    }
                    Request::Drain => {
                        info!("shutdown: second stop signal, closing in-flight connections now");
                        running.stop_now();
                    }
                    Request::StopNow => {
                        stopping = true;
                        running.stop_now();
                    }
                    // The file is read on the reload thread: this one stays free.
                    Request::Reload => reloads.request(),
                    Request::LogTotals => {
                        let snapshot = running.snapshot();
                        info!("totals in_flight={} {}", snapshot.held, snapshot.totals);
                    }
                    Request::Upgrade => self.start_upgrade(upgrader.as_mut(), stopping),
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
                    Some(Outcome::Serving(pid)) if !stopping => {
                        info!("upgrade: the new process (pid {pid}) serves; draining this one");
                        // Not STOPPING=1, and no more STATUS= or WATCHDOG=1 from here:
                        // the service goes on, in the new process.
                        manager = None;
                        self.handed_over.store(true, Ordering::SeqCst);
                        stopping = true;
                        upgrader.release_sockets();
                        if let Some((_, stop)) = &metrics_endpoint {
                            stop.stop_accepting();
                        }
                        running.shutdown();
                    }
                    Some(Outcome::Serving(pid)) => {
                        info!("upgrade: the new process (pid {pid}) serves; this one was stopping already");
                        self.handed_over.store(true, Ordering::SeqCst);
                    }
                    Some(Outcome::Failed(why)) => {
                        warn!("upgrade: keeping this process: {why}");
                    }
                    None => {}
                }
            }
            if let Some(manager) = &mut manager {
                manager.tick(&view);
            }
            // A worker that stopped on its own failed: take the others down with it.
            if !stopping && running.stopped() > 0 {
                stopping = true;
                running.shutdown();
            }
        }
        let totals = running.join()?;
        // After a handover, the scrapes this process took are answered before it
        // exits (each within its 2 s); the new process takes the rest.
        if self.handed_over.load(Ordering::SeqCst) {
            if let Some((thread, _)) = metrics_endpoint {
                let _ = thread.join();
            }
        }
        info!("totals in_flight=0 {totals}");
        Ok(totals)
    }
}

impl Supervisor {
    /// SIGUSR2: starts the new process, unless one is under way, the server is
    /// stopping, or this process cannot upgrade.
    fn start_upgrade(&self, upgrader: Option<&mut Upgrader>, stopping: bool) {
        let Some(upgrader) = upgrader else {
            warn!("upgrade: not available in this process (only greeter-server upgrades); ignoring it");
            return;
        };
        if stopping {
            info!("upgrade: this process is stopping; ignoring SIGUSR2");
            return;
        }
        if let Some(pid) = upgrader.in_progress() {
            info!("upgrade: one is under way (pid {pid}); ignoring SIGUSR2");
            return;
        }
        let exe = upgrader.exe().display().to_string();
        match upgrader.start(self.poll.registry(), UPGRADE_REPORT) {
            Ok(pid) => {
                info!("upgrade: started {exe} (pid {pid}); handing it the listening sockets")
            }
            Err(err) => warn!("upgrade: keeping this process: cannot start {exe}: {err}"),
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

impl ServiceManager {
    /// Says `READY=1`, and asks the loops for their first watchdog answer.
    fn new(view: &WorkersView) -> Self {
        notify::ready(&view.snapshot());
        let now = Instant::now();
        let watchdog = notify::watchdog_interval().map(|interval| {
            view.ping(1);
            Watchdog {
                interval,
                next: now + interval,
                ping: 1,
            }
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
    fn tick(&mut self, view: &WorkersView) {
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
                dog.ping += 1;
                view.ping(dog.ping);
                dog.next = now + dog.interval;
            }
        }
    }
}
