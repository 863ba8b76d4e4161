//! The supervisor: runs the worker loops, the reload thread and the metrics endpoint
//! until every worker has stopped, answering a stream of [`Request`]s (drain, stop
//! now, reload, log the totals, upgrade) that any thread can send through
//! [`Requests`]. The binary maps signals to requests; tests send them directly.
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
//! `READY=1`, then the caller's `on_serving` (the binary prints its listening lines
//! with [`announce`]).
//!
//! One job a file, from the ground up: `request` is what can be asked and the channel
//! it comes through; `adopting` the trapped connections an upgrading process hands
//! this one; `stop` the stages of a stop, as a table without effects;
//! `service` the pings of the loops for systemd and `/livez`; `serving` what the
//! caller is told once this process serves; `supervised` what a running supervisor
//! looks after, and its end; `requests` its answer to each request; `upgrading` how
//! it starts an upgrade and follows it to its outcome; `start` how it starts
//! everything and says that it serves. This file holds the loop that waits for
//! requests.

mod adopting;
mod request;
mod requests;
mod service;
mod serving;
mod start;
mod stop;
mod supervised;
mod upgrading;

use std::io;
use std::sync::Arc;

use log::error;
use mio::{Events, Poll, Token, Waker};

use crate::error::Failure;
use crate::startup::Prepared;
use crate::totals::Totals;
use crate::upgrade::{Report, UpgradeCommand};

pub use request::{Request, Requests};
pub use service::LIVENESS_EVERY;
pub use serving::{announce, Serving};
use supervised::LOG_TARGET;

/// The one waker of the supervisor's poll (mio allows one per poll): woken by a
/// request and by a worker thread that ends; each wake-up looks at both.
const WAKE: Token = Token(0);

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
            requests: Requests::new(waker),
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
            supervised.follow_upgrade(&events, was_upgrading, registry);
            supervised.adopt_handed(&events, registry);
            supervised.tick();
        }
        supervised.finish()
    }
}
