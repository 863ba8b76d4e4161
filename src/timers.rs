//! The fixed-duration deadlines that bound the held connections' phases: one
//! [`DeadlineQueue`] per [`Timer`], four in all. Entries are never removed when their
//! connection closes or moves on: the holder says which are still live, and a stale
//! one is skipped when it comes due, or compacted away once the stale ones outnumber
//! what is held.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deadlines::{recurring, saturating_add, Deadline, DeadlineQueue};

#[cfg(test)]
mod tests;

/// Stale deadline entries tolerated beyond twice the held connections before a queue
/// is compacted (so that a server holding nothing does not compact on every close).
const DEADLINE_SLACK: usize = 64;

/// The fixed-duration deadlines that bound the phases; each has its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// `--proxy-timeout`, from accept: the PROXY header.
    Header = 0,
    /// `--write-timeout`, from accept (or from the header): writing and flushing.
    Write = 1,
    /// `--linger-timeout`, from when all was sent: lingering.
    Linger = 2,
    /// `--greet-delay`, from when the client is known: delaying.
    Delay = 3,
    /// `--drip-interval`, from the last drip: a trapped client's next one (each
    /// listener's interval is a run of its own).
    Drip = 4,
}

impl Timer {
    /// Every timer, in queue order.
    pub(crate) const ALL: [Timer; 5] = [
        Timer::Header,
        Timer::Write,
        Timer::Linger,
        Timer::Delay,
        Timer::Drip,
    ];

    /// The queue duration of this timer under `config` (a delay's is its listener's,
    /// given with each entry).
    fn duration(self, config: &Config) -> Duration {
        match self {
            Timer::Header => config.proxy_timeout,
            Timer::Write => config.write_timeout,
            Timer::Linger => config.linger_timeout,
            Timer::Delay | Timer::Drip => Duration::ZERO,
        }
    }
}

/// The five deadline queues of one server, indexed by [`Timer`].
#[derive(Debug)]
pub(crate) struct Timers {
    queues: [DeadlineQueue; 5],
}

impl Timers {
    /// Empty queues with `config`'s durations; the header queue has room for
    /// `capacity` entries if a listener takes PROXY headers, the write and linger
    /// queues always, the delay queue grows when delays come.
    pub(crate) fn new(config: &Config, capacity: usize) -> Self {
        let queue = |timer| {
            let capacity = match timer {
                Timer::Header if !config.any_proxy_protocol() => 0,
                // Delays are few until a listener has one; the queue grows then.
                Timer::Delay | Timer::Drip => 0,
                _ => capacity,
            };
            DeadlineQueue::with_capacity(timer.duration(config), capacity)
        };
        Timers {
            queues: Timer::ALL.map(queue),
        }
    }

    /// A reload's durations, for the deadlines pushed from now on: those already
    /// running keep their time.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        for timer in Timer::ALL {
            self.queues[timer as usize].set_duration(timer.duration(config));
        }
    }

    /// Whether no deadline (live or stale) is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.iter().all(DeadlineQueue::is_empty)
    }

    /// The soonest deadline, if any (it may be stale: the loop then wakes for nothing).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // The clock is read only when something is queued: never on the fast path.
        if self.is_empty() {
            return None;
        }
        let now = Instant::now();
        let soonest = self
            .queues
            .iter()
            .filter_map(|queue| queue.next(now))
            .min()?;
        Some(saturating_add(now, soonest))
    }

    /// Starts a `timer` deadline for `key` and `serial` at `now`, lasting the timer's
    /// duration.
    #[inline]
    pub(crate) fn push(&mut self, timer: Timer, now: Instant, key: usize, serial: u64) {
        self.queues[timer as usize].push(now, key, serial);
    }

    /// Starts a `timer` deadline for `key` and `serial` at `now`, lasting `lasting`.
    pub(crate) fn push_lasting(
        &mut self,
        timer: Timer,
        now: Instant,
        lasting: Duration,
        key: usize,
        serial: u64,
    ) {
        self.queues[timer as usize].push_lasting(now, lasting, key, serial);
    }

    /// Schedules trapped connection `key`'s next drip as its drip is sent (at
    /// `now`): due `interval` after the tick of this one ([`recurring`]), so that
    /// the drips come every interval, not every interval and a tick.
    pub(crate) fn push_next_drip(
        &mut self,
        now: Instant,
        interval: Duration,
        key: usize,
        serial: u64,
    ) {
        self.push_lasting(Timer::Drip, now, recurring(interval), key, serial);
    }

    /// The next `timer` deadline due by `now` that is still `live`; stale ones on the
    /// way are dropped.
    #[inline]
    pub(crate) fn pop_expired(
        &mut self,
        timer: Timer,
        now: Instant,
        live: impl Fn(&Deadline, Timer) -> bool,
    ) -> Option<Deadline> {
        self.pop_live(timer, live, |queue| queue.pop_expired(now))
    }

    /// The oldest `timer` deadline that is still `live`, due or not; stale ones on the
    /// way are dropped.
    pub(crate) fn pop_oldest(
        &mut self,
        timer: Timer,
        now: Instant,
        live: impl Fn(&Deadline, Timer) -> bool,
    ) -> Option<Deadline> {
        self.pop_live(timer, live, |queue| queue.pop_oldest(now))
    }

    /// The first deadline `pop` takes from `timer`'s queue that is still `live`;
    /// the stale ones before it are dropped.
    #[inline]
    fn pop_live(
        &mut self,
        timer: Timer,
        live: impl Fn(&Deadline, Timer) -> bool,
        mut pop: impl FnMut(&mut DeadlineQueue) -> Option<Deadline>,
    ) -> Option<Deadline> {
        let queue = &mut self.queues[timer as usize];
        while let Some(deadline) = pop(queue) {
            if live(&deadline, timer) {
                return Some(deadline);
            }
        }
        None
    }

    /// Drops the entries that are no longer `live` once they outnumber the `held`
    /// connections: amortised O(1) per close, and each queue stays below
    /// `2 x held + DEADLINE_SLACK` entries.
    pub(crate) fn compact(&mut self, held: usize, live: impl Fn(&Deadline, Timer) -> bool) {
        let bound = 2 * held + DEADLINE_SLACK;
        for timer in Timer::ALL {
            let queue = &mut self.queues[timer as usize];
            if queue.len() > bound {
                queue.retain(|deadline| live(deadline, timer));
            }
        }
    }

    /// How many entries (live or stale) are queued.
    /// Calls `each` with every entry of `timer`'s queue (live or stale) and the time
    /// left until it is due at `now`.
    pub(crate) fn each_left(
        &self,
        timer: Timer,
        now: Instant,
        each: impl FnMut(&Deadline, Duration),
    ) {
        self.queues[timer as usize].each_left(now, each);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queues.iter().map(DeadlineQueue::len).sum()
    }
}
