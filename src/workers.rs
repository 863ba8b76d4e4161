//! Running the server on one or more threads: each worker is a complete [`Server`]
//! (its own mio loop, slab, limits and listener), and nothing is shared between them
//! but the greeting (read-only) and the shutdown request. The calling thread handles
//! the signals and sums the totals.
//!
//! The workers share one listening socket (bound here, or passed by systemd): every
//! worker registers a duplicate of it, and whichever accepts first gets the
//! connection. There is one accept queue, so a busy worker never has connections
//! waiting for it while another idles. `SO_REUSEPORT` is not used: it would let a
//! second server on the same address start and silently take half the connections.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use log::{error, info};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::error::StartupError;
use crate::handle::ServerHandle;
use crate::server::{listen, Server};
use crate::totals::Totals;

const SIGNALS: Token = Token(0);
const WORKER_EXITED: Token = Token(1);

/// One or more bound servers, ready to run.
pub struct Workers {
    /// One per worker thread.
    servers: Vec<Server>,
    /// The address they all listen on.
    local_addr: SocketAddr,
}

impl Workers {
    /// Binds `config.listen` once and shares it among `count` workers (at least one).
    ///
    /// # Errors
    /// As [`listen`], or if an event loop cannot be created.
    pub fn bind(config: &Config, count: usize) -> Result<Workers, StartupError> {
        let listener = listen(config.listen, config.backlog, config.send_buffer)?;
        Workers::from_listener(listener, config, count)
    }

    /// Shares one listening socket (such as one passed by systemd) among `count`
    /// workers.
    ///
    /// # Errors
    /// If the socket cannot be duplicated or an event loop cannot be created.
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: &Config,
        count: usize,
    ) -> Result<Workers, StartupError> {
        let mut servers = Vec::with_capacity(count.max(1));
        for _ in 1..count.max(1) {
            let duplicate = listener.try_clone().map_err(|err| {
                StartupError::new("cannot share the listening socket among workers", err, None)
            })?;
            servers.push(Server::from_listener(duplicate, config.clone())?);
        }
        servers.push(Server::from_listener(listener, config.clone())?);
        let local_addr = servers[0].local_addr();
        Ok(Workers {
            servers,
            local_addr,
        })
    }

    /// The address the workers listen on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

    /// Runs every worker on its own thread and handles signals on the calling thread
    /// until all workers have stopped; returns their summed totals (also logged).
    ///
    /// `on_ready` is called once the signal handlers are installed and the workers
    /// run, so that whatever it announces (the `listening on` line) is only seen when
    /// a SIGTERM would already be handled gracefully.
    ///
    /// SIGINT or SIGTERM shut every worker down gracefully; a second one closes what
    /// is still in flight at once. SIGUSR1 logs the summed totals so far. If a worker's
    /// loop fails, the others are shut down too and the failure is returned.
    ///
    /// # Errors
    /// If the signal handlers cannot be installed, a thread cannot be started, or a
    /// worker's loop failed.
    pub fn run_with_signals(
        self,
        on_ready: impl FnOnce(SocketAddr),
    ) -> Result<Totals, StartupError> {
        let local_addr = self.local_addr;
        let fail = |err| StartupError::new("cannot install signal handlers", err, None);
        let mut poll = Poll::new().map_err(fail)?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).map_err(fail)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(fail)?;
        let exited = Arc::new(Waker::new(poll.registry(), WORKER_EXITED).map_err(fail)?);

        let handles: Vec<ServerHandle> = self.servers.iter().map(Server::handle).collect();
        let stopped = Arc::new(AtomicUsize::new(0));
        let mut threads: Vec<JoinHandle<io::Result<Totals>>> = Vec::new();
        for (index, server) in self.servers.into_iter().enumerate() {
            let exit_report = ExitReport {
                stopped: Arc::clone(&stopped),
                waker: Arc::clone(&exited),
            };
            let spawned = thread::Builder::new()
                .name(format!("greeter-worker-{index}"))
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
                    return Err(StartupError::new("cannot start a worker thread", err, None));
                }
            }
        }

        on_ready(local_addr);

        let mut events = Events::with_capacity(8);
        let mut stopping = false;
        let workers = threads.len();
        while stopped.load(Ordering::SeqCst) < workers {
            if let Err(err) = poll.poll(&mut events, None) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("signal loop failed: {err}; stopping the workers");
                stop_all(&handles, ServerHandle::stop_now);
                break;
            }
            for signal in signals.pending() {
                match signal {
                    SIGINT | SIGTERM if !stopping => {
                        stopping = true;
                        stop_all(&handles, ServerHandle::shutdown);
                    }
                    SIGINT | SIGTERM => {
                        info!("shutdown: second stop signal, closing in-flight connections now");
                        stop_all(&handles, ServerHandle::stop_now);
                    }
                    SIGUSR1 => {
                        let mut totals = Totals::default();
                        let mut in_flight = 0;
                        for handle in &handles {
                            let snapshot = handle.snapshot();
                            totals.add(&snapshot.totals);
                            in_flight += snapshot.in_flight;
                        }
                        info!("totals in_flight={in_flight} {totals}");
                    }
                    _ => {}
                }
            }
            // A worker that stopped on its own failed: take the others down with it.
            if !stopping && stopped.load(Ordering::SeqCst) > 0 {
                stopping = true;
                stop_all(&handles, ServerHandle::shutdown);
            }
        }

        let mut totals = Totals::default();
        let mut failure = None;
        for (index, thread) in threads.into_iter().enumerate() {
            match thread.join() {
                Ok(Ok(worker_totals)) => totals.add(&worker_totals),
                Ok(Err(err)) => {
                    failure = Some(StartupError::new(
                        format!("worker {index} failed"),
                        err,
                        None,
                    ))
                }
                Err(_) => {
                    failure = Some(StartupError::new(
                        format!("worker {index} failed"),
                        io::Error::other("the worker thread panicked"),
                        None,
                    ))
                }
            }
        }
        info!("totals in_flight=0 {totals}");
        match failure {
            Some(err) => Err(err),
            None => Ok(totals),
        }
    }
}

/// Tells the supervisor that a worker thread has ended, however it ended.
struct ExitReport {
    /// Worker threads that have ended. Counted before the wake: a thread is not
    /// `is_finished()` yet when it wakes the supervisor, and waiting on that would
    /// miss the last wake.
    stopped: Arc<AtomicUsize>,
    /// Wakes the supervisor's poll.
    waker: Arc<Waker>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
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

    #[test]
    fn a_worker_that_panics_still_reports_its_exit() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WORKER_EXITED).unwrap());
        let stopped = Arc::new(AtomicUsize::new(0));
        // As the supervisor does, keep the waker alive: closing its eventfd would
        // drop a wake that was not polled yet.
        let report = ExitReport {
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
        assert!(worker.join().is_err());
    }
}
