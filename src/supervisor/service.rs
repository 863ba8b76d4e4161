//! What the supervisor says now and then while the workers run: systemd's status line
//! and watchdog pings (with `NOTIFY_SOCKET` set), and `/livez`'s verdict (with
//! `--metrics`), both from pings the loops answer once per round.

use std::time::{Duration, Instant};

use crate::notify;
use crate::workers::WorkersView;

/// How often the loops are pinged for `/livez`: a loop that has not run a round for
/// this long (when the next ping is due) turns it 503.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// What the supervisor tells systemd now and then (with `NOTIFY_SOCKET` set): the
/// status line, and the watchdog's pings while every loop still runs rounds.
#[derive(Debug)]
pub(super) struct ServiceManager {
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
pub(super) struct Pings {
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
pub(super) struct Liveness {
    next: Instant,
    /// The ping the next verdict checks.
    ping: u64,
}

impl Liveness {
    pub(super) fn new(view: &WorkersView, pings: &mut Pings) -> Self {
        Liveness {
            next: Instant::now() + LIVENESS_EVERY,
            ping: pings.send(view),
        }
    }

    /// How long the supervisor may sleep before the next verdict.
    pub(super) fn next_due(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Renews the verdict if it is due, and sends the next ping.
    pub(super) fn tick(&mut self, view: &WorkersView, pings: &mut Pings) {
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
    pub(super) fn new(view: &WorkersView, pings: &mut Pings) -> Self {
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
    pub(super) fn next_due(&self) -> Duration {
        let next = self
            .watchdog
            .as_ref()
            .map_or(self.next_status, |dog| dog.next.min(self.next_status));
        next.saturating_duration_since(Instant::now())
    }

    /// Sends what is due: the status line, and a watchdog ping if every loop has run a
    /// round since the last one (a stuck loop stops the pings, and systemd restarts
    /// the service).
    pub(super) fn tick(&mut self, view: &WorkersView, pings: &mut Pings) {
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
