//! Running the server on one or more threads: each worker is a complete [`Server`]
//! (its own mio loop, slab and limits). [`Workers::spawn`] starts them and gives a
//! [`RunningWorkers`] handle to stop them, read their summed totals and join them;
//! `greeter-server` wires its signals to that handle.
//!
//! The workers share one listening socket (bound here, or passed by systemd): every
//! worker registers a duplicate of it, and whichever accepts first gets the
//! connection. There is one accept queue, so a busy worker never has connections
//! waiting for it while another idles. Workers register it with `EPOLLEXCLUSIVE`, so
//! an arrival wakes one waiting worker rather than all of them, and the first worker
//! takes wake-ups alone while it keeps up, up to one per core while it is behind, the
//! rest only while one is full (`accept_set.rs`): more workers than cores do not
//! multiply the wake-ups or the context switches. `SO_REUSEPORT`
//! is not used: it would let a second server on the same address start and silently
//! take half the connections, and each worker's queue would wait for that worker.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mio::Waker;

use crate::accept_set::AcceptSet;
use crate::config::Config;
use crate::error::Failure;
use crate::geoip::{CountryFigures, COUNTRIES};
use crate::handle::{ServerHandle, Snapshot};
use crate::listener::{listen_config, ListeningSocket};
use crate::server::Server;
use crate::totals::Totals;
use crate::upgrade::handover::Handed;

/// One or more bound servers, ready to run.
#[derive(Debug)]
pub struct Workers {
    /// One per worker thread.
    servers: Vec<Server>,
    /// The addresses they all listen on, in order.
    local_addrs: Vec<SocketAddr>,
}

impl Workers {
    /// Binds every listener of `config` once and shares the sockets among `count`
    /// workers (at least one).
    ///
    /// # Errors
    /// As [`crate::listener::listen_config`], or if an event loop cannot be created.
    pub fn bind(config: &Config, count: usize) -> Result<Workers, Failure> {
        let sockets = listen_config(config)?;
        Workers::from_sockets(sockets, config, count)
    }

    /// Shares listening sockets (such as those systemd passed) among `count` workers:
    /// every worker serves every one of them.
    ///
    /// # Errors
    /// If a socket cannot be duplicated or an event loop cannot be created.
    pub fn from_sockets(
        sockets: Vec<ListeningSocket>,
        config: &Config,
        count: usize,
    ) -> Result<Workers, Failure> {
        let mut servers = Vec::with_capacity(count.max(1));
        for _ in 1..count.max(1) {
            let duplicates = sockets
                .iter()
                .map(|socket| {
                    Ok(ListeningSocket {
                        socket: socket.socket.try_clone()?,
                        listener: socket.listener,
                    })
                })
                .collect::<io::Result<Vec<_>>>()
                .map_err(|err| {
                    Failure::new(
                        "cannot share the listening sockets among workers",
                        err,
                        None,
                    )
                })?;
            servers.push(Server::from_sockets(duplicates, config.clone())?);
        }
        servers.push(Server::from_sockets(sockets, config.clone())?);
        if servers.len() > 1 {
            // The first worker accepts; helpers (up to one per core) step in while an
            // accepting one is behind, the rest while one is full (accept_set.rs).
            let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
            let set = Arc::new(AcceptSet::new(cores));
            for (index, server) in servers.iter_mut().enumerate() {
                server.share_listeners(&set, index);
            }
            set.set_others(servers.iter().skip(1).map(Server::handle).collect());
            // --max-trapped is the whole server's.
            let server_trapped = Arc::new(AtomicUsize::new(0));
            for server in &mut servers {
                server.share_trapped(&server_trapped);
            }
        }
        let local_addrs = servers[0].local_addrs().to_vec();
        Ok(Workers {
            servers,
            local_addrs,
        })
    }

    /// Every address the workers listen on, in order, with the real ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The send buffer every accepted socket inherits, as the kernel reports it (twice
    /// what was asked, for its bookkeeping), when `--send-buffer` set one.
    pub fn send_buffer(&self) -> Option<usize> {
        self.servers.first().and_then(Server::send_buffer)
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there is no worker (never, once built).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
    /// Starts every worker on its own thread. `on_exit` is woken whenever a worker
    /// thread ends, however it ends (a panic included), so that the caller's loop can
    /// notice a worker that failed.
    ///
    /// # Errors
    /// If a thread cannot be started; the workers already started are stopped.
    pub fn spawn(self, on_exit: Arc<Waker>) -> Result<RunningWorkers, Failure> {
        let handles: Vec<ServerHandle> = self.servers.iter().map(Server::handle).collect();
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut threads: Vec<JoinHandle<io::Result<Totals>>> = Vec::new();
        for (index, server) in self.servers.into_iter().enumerate() {
            let exit_report = ExitReport {
                handle: server.handle(),
                stopped: Arc::clone(&stopped),
                waker: Arc::clone(&on_exit),
            };
            let spawned = thread::Builder::new()
                // Short enough for the kernel's 15-byte thread names (`top -H`, /proc): whole.
                .name(format!("greeter-w{index}"))
                .spawn(move || {
                    // Reports the exit when dropped: after `run` returns, and also
                    // while a panic unwinds, so a failed worker is never waited for.
                    let _exit_report = exit_report;
                    server.run()
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    stop_all(&handles, ServerHandle::stop_now);
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(Failure::new("cannot start a worker thread", err, None));
                }
            }
        }
        Ok(RunningWorkers {
            handles,
            published: Arc::default(),
            threads,
            stopped,
            _on_exit: on_exit,
        })
    }
}

/// Workers running on their threads: stop them, read their summed totals, wait for
/// them. The caller (greeter-server's signal loop) decides when.
#[derive(Debug)]
pub struct RunningWorkers {
    /// One per worker, to stop it or read its snapshot.
    handles: Vec<ServerHandle>,
    /// What the supervisor publishes beside the workers' snapshots.
    published: Arc<Published>,
    /// The worker threads, joined at the end.
    threads: Vec<JoinHandle<io::Result<Totals>>>,
    /// How many worker threads have ended.
    stopped: Arc<AtomicUsize>,
    /// Kept so that the waker outlives the worker threads: if the last thread held
    /// the last reference, dropping it would close the eventfd and lose its final
    /// wake-up, and the caller would wait forever.
    _on_exit: Arc<Waker>,
}

impl RunningWorkers {
    /// Asks every worker to stop accepting and drain (see [`ServerHandle::shutdown`]).
    pub fn shutdown(&self) {
        stop_all(&self.handles, ServerHandle::shutdown);
    }

    /// Asks every worker to hand its trapped connections to an upgrade's new process
    /// over `channel` (shared: one message at a time), then to drain as
    /// [`RunningWorkers::shutdown`] does.
    pub fn hand_over_then_drain(&self, channel: UnixStream) {
        let channel = Arc::new(std::sync::Mutex::new(channel));
        for handle in &self.handles {
            let _ = handle.hand_over_then_drain(Arc::clone(&channel));
        }
    }

    /// Gives trapped connections handed over by the process that upgraded to this
    /// one to the workers, in turn from worker `first` on; returns the worker after
    /// the last one given some.
    pub fn adopt(&self, handed: Vec<Handed>, first: usize) -> usize {
        let count = self.handles.len();
        let mut shares: Vec<Vec<Handed>> = (0..count).map(|_| Vec::new()).collect();
        let mut next = first % count.max(1);
        for one in handed {
            shares[next].push(one);
            next = (next + 1) % count;
        }
        for (handle, share) in self.handles.iter().zip(shares) {
            if !share.is_empty() {
                let _ = handle.adopt(share);
            }
        }
        next
    }

    /// Asks every worker to close what is in flight at once.
    pub fn stop_now(&self) {
        stop_all(&self.handles, ServerHandle::stop_now);
    }

    /// A view of the workers' published state, for another thread (the metrics).
    pub fn view(&self) -> WorkersView {
        WorkersView {
            handles: self.handles.clone(),
            published: Arc::clone(&self.published),
        }
    }

    /// The workers' totals and held connections so far, summed.
    pub fn snapshot(&self) -> Snapshot {
        self.view().snapshot()
    }

    /// How many worker threads have ended (stopped, failed or panicked).
    pub fn stopped(&self) -> usize {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether every worker thread has ended.
    pub fn all_stopped(&self) -> bool {
        self.stopped() >= self.threads.len()
    }

    /// Waits for every worker and returns their summed totals.
    ///
    /// # Errors
    /// If a worker's loop failed or its thread panicked (the totals of the others are
    /// then lost with it: the process is ending on an error).
    pub fn join(self) -> Result<Totals, Failure> {
        let mut totals = Totals::default();
        let mut failure = None;
        for (index, thread) in self.threads.into_iter().enumerate() {
            let failed = |err| Failure::new(format!("worker {index} failed"), err, None);
            match thread.join() {
                Ok(Ok(worker_totals)) => totals.add(&worker_totals),
                Ok(Err(err)) => failure = Some(failed(err)),
                Err(_) => failure = Some(failed(io::Error::other("the worker thread panicked"))),
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(totals),
        }
    }
}

/// The workers' published state, readable from any thread (the metrics thread keeps
/// one, the reload thread another): each worker publishes a snapshot once per loop
/// round.
#[derive(Debug, Clone)]
pub struct WorkersView {
    /// One per worker.
    handles: Vec<ServerHandle>,
    /// What the supervisor publishes beside them.
    published: Arc<Published>,
}

/// What the supervisor publishes about the workers as a whole, for the metrics
/// thread's `/healthz` and `/livez`.
#[derive(Debug)]
struct Published {
    /// A stop was asked and the shutdown delay runs.
    stopping: AtomicBool,
    /// Every loop still running answered the last liveness ping in time.
    live: AtomicBool,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            stopping: AtomicBool::new(false),
            live: AtomicBool::new(true),
        }
    }
}

impl WorkersView {
    /// Gives every worker `config` for its new connections (see
    /// [`ServerHandle::reconfigure`]); a worker that cannot be woken has stopped.
    pub fn reconfigure(&self, config: Arc<Config>) {
        for handle in &self.handles {
            let _ = handle.reconfigure(Arc::clone(&config));
        }
    }

    /// Asks every worker to show that its loop still runs (see
    /// [`ServerHandle::ping`]).
    pub fn ping(&self, seq: u64) {
        for handle in &self.handles {
            let _ = handle.ping(seq);
        }
    }

    /// Whether every worker's loop has run a round since ping `seq`.
    pub fn answered(&self, seq: u64) -> bool {
        self.handles.iter().all(|handle| handle.answered(seq))
    }

    /// Whether every worker's loop whose thread still runs has run a round since
    /// ping `seq` (one that ended, its drain done, is not stuck).
    pub fn running_answered(&self, seq: u64) -> bool {
        self.handles
            .iter()
            .all(|handle| handle.answered(seq) || handle.ended())
    }

    /// Says that a stop was asked: `/healthz` answers 503 `stopping` from now on,
    /// while the loops still accept (the shutdown delay).
    pub fn announce_stopping(&self) {
        self.published.stopping.store(true, Ordering::Release);
    }

    /// Records the supervisor's liveness verdict (see [`WorkersView::live`]).
    pub fn set_live(&self, live: bool) {
        self.published.live.store(live, Ordering::Release);
    }

    /// Whether every running loop answered the supervisor's last liveness ping in
    /// time: what `/livez` says.
    pub fn live(&self) -> bool {
        self.published.live.load(Ordering::Acquire)
    }

    /// Each worker's snapshot, in order (the first worker's first).
    pub fn each(&self) -> Vec<Snapshot> {
        self.handles.iter().map(ServerHandle::snapshot).collect()
    }

    /// The workers' trap counters by country, summed: one entry per country index
    /// ([`crate::geoip::country_label`] names it).
    pub fn traps_by_country(&self) -> Vec<CountryFigures> {
        let mut sum = vec![CountryFigures::default(); COUNTRIES];
        for handle in &self.handles {
            handle.traps_by_country().add_to(&mut sum);
        }
        sum
    }

    /// The workers' snapshots, summed (accepting counts as paused if any worker is).
    pub fn snapshot(&self) -> Snapshot {
        let mut sum = Snapshot::default();
        for handle in &self.handles {
            let snapshot = handle.snapshot();
            sum.totals.add(&snapshot.totals);
            sum.held += snapshot.held;
            sum.delayed += snapshot.delayed;
            sum.trapped += snapshot.trapped;
            sum.accept_paused |= snapshot.accept_paused;
            sum.draining |= snapshot.draining;
            sum.stopping |= snapshot.stopping;
            sum.greeting_bytes = snapshot.greeting_bytes;
            sum.max_connections = sum.max_connections.saturating_add(snapshot.max_connections);
        }
        sum.stopping |= self.published.stopping.load(Ordering::Acquire);
        sum
    }
}

/// Tells the supervisor that a worker thread has ended, however it ended.
struct ExitReport {
    /// The worker's handle, marked ended first.
    handle: ServerHandle,
    /// Worker threads that have ended. Counted before the wake: a thread is not
    /// `is_finished()` yet when it wakes the supervisor, and waiting on that would
    /// miss the last wake.
    stopped: Arc<AtomicUsize>,
    /// Wakes the supervisor's poll.
    waker: Arc<Waker>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        self.handle.mark_ended();
        self.stopped.fetch_add(1, Ordering::SeqCst);
        // Best effort: if the wake fails, so will the supervisor's poll.
        let _ = self.waker.wake();
    }
}

/// Asks every worker to stop; a worker that cannot be woken has already stopped.
fn stop_all(handles: &[ServerHandle], stop: fn(&ServerHandle) -> io::Result<()>) {
    for handle in handles {
        let _ = stop(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};

    const WORKER_EXITED: Token = Token(1);

    #[test]
    fn a_worker_that_panics_still_reports_its_exit() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WORKER_EXITED).unwrap());
        let stopped = Arc::new(AtomicUsize::new(0));
        // As the supervisor does, keep the waker alive: closing its eventfd would
        // drop a wake that was not polled yet.
        let worker_poll = Poll::new().unwrap();
        let handle = ServerHandle::new(Waker::new(worker_poll.registry(), Token(0)).unwrap());
        let report = ExitReport {
            handle: handle.clone(),
            stopped: Arc::clone(&stopped),
            waker: Arc::clone(&waker),
        };
        let worker = thread::spawn(move || {
            let _report = report;
            panic!("a worker fails");
        });
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(20)))
            .unwrap();
        assert!(events.iter().any(|event| event.token() == WORKER_EXITED));
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
        // Not waited for by /livez: it will never answer a ping.
        assert!(handle.ended());
        assert!(worker.join().is_err());
    }
}
