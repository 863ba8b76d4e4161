//! A FIFO of fixed-duration deadlines: the server's only timer.
//!
//! Every entry of one queue is pushed `now + the same duration`, so the queue is
//! sorted by construction and the head is always the next to expire; no heap, no
//! timer wheel. Entries are not removed when their connection closes: a stale entry is
//! skipped when it reaches the head (its serial no longer matches), and the owner
//! compacts the queue with [`DeadlineQueue::retain`] when stale entries pile up, so
//! that it stays bounded by what is held rather than by rate x timeout.
//!
//! Every held connection pays for one entry, so an entry is 16 bytes: the moment it
//! was pushed is kept as a 32-bit count of 10 ms ticks since the queue was made
//! (wrapping after 497 days, longer than any duration lasts: [`MAX_QUEUE_DURATION`]),
//! and a deadline fires up to one tick late, never early.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `now + duration`, or a century from now where the sum would overflow the clock
/// (a [`crate::Config`] built in code is not bound by the flags' limits).
pub fn saturating_add(now: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(duration.min(CENTURY)).unwrap_or(now)
}

/// The resolution of the push times kept in the entries: 10 ms, a whole fraction of
/// a second.
const TICK_NANOS: u32 = 10_000_000;
const TICK: Duration = Duration::from_nanos(TICK_NANOS as u64);
const TICKS_PER_SECOND: u64 = 1_000_000_000 / TICK_NANOS as u64;

/// The longest a queue's entries last: a longer duration (only a [`crate::Config`]
/// built in code can have one; the flags stop at 365 days) is taken as this. Well
/// within the 497 days after which a tick count wraps, so that an entry's age is
/// always told right.
pub const MAX_QUEUE_DURATION: Duration = Duration::from_secs(400 * 24 * 3600);

/// One pending deadline: which slab key, and which connection held that key then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The tick (since the queue's epoch, wrapping) in which it was pushed.
    pushed: u32,
    /// The slab key of the connection: below the process's open descriptors, which
    /// Linux bounds below 2^31 (`fs.nr_open`).
    key: u32,
    /// The connection's serial number, to tell it from a later holder of `key`.
    pub serial: u64,
}

impl Deadline {
    /// The slab key of the connection.
    pub fn key(&self) -> usize {
        self.key as usize
    }
}

/// What to push for a deadline pushed again each time it fires, so that it fires
/// every `interval` (rounded up to whole ticks): a deadline's age counts from the end
/// of the tick it was pushed in, so pushing `interval` itself would fire a tick late
/// every time (110 ms apart for 100 ms). One tick less fires on the tick boundary
/// `interval` after the start of that tick (a one-tick interval: a nanosecond past
/// the next boundary, so that it is never due again in the tick it fired in).
pub fn recurring(interval: Duration) -> Duration {
    let ticks = interval.as_nanos().div_ceil(u128::from(TICK_NANOS)).max(1);
    let shorter = TICK * u32::try_from(ticks - 1).unwrap_or(u32::MAX);
    shorter.max(Duration::from_nanos(1))
}

/// A moment as the queue counts it: the tick it falls in, and how far into it.
#[derive(Debug, Clone, Copy)]
struct Clock {
    tick: u32,
    into_tick: Duration,
}

impl Clock {
    /// How long ago, at least, `deadline` was pushed: from the end of its tick (it
    /// may have been pushed at any moment of it) to now.
    fn age(self, deadline: &Deadline) -> Duration {
        let whole_ticks = self.tick.wrapping_sub(deadline.pushed);
        (TICK * whole_ticks + self.into_tick).saturating_sub(TICK)
    }

    /// Nanoseconds until `deadline`, of a run lasting `duration`, is due: zero or
    /// less once it is.
    fn due_in(self, deadline: &Deadline, duration: Duration) -> i128 {
        duration.as_nanos() as i128 - self.age(deadline).as_nanos() as i128
    }

    /// How long until `deadline`, of a run lasting `duration`, is due: exact, so
    /// that a loop sleeping that long finds it due (its age stays 0 through the tick
    /// it was pushed in, so `duration` less its age is too short then).
    fn until_due(self, deadline: &Deadline, duration: Duration) -> Duration {
        if duration.is_zero() {
            return Duration::ZERO;
        }
        let since_tick_start = TICK * self.tick.wrapping_sub(deadline.pushed) + self.into_tick;
        (duration + TICK).saturating_sub(since_tick_start)
    }
}

/// Deadlines that each lie a fixed duration after the moment they were pushed.
///
/// Most entries share the queue's own duration ([`DeadlineQueue::push`]); a few may
/// last another fixed duration ([`DeadlineQueue::push_lasting`]: a listener's
/// `--greet-delay`, the write time left after it), and a reload may change the
/// queue's own ([`DeadlineQueue::set_duration`]; entries pushed before keep their
/// time). Each duration has a run of its own, sorted by construction, and the queue's
/// head is the soonest of the runs' heads: there are only ever a few runs.
#[derive(Debug)]
pub struct DeadlineQueue {
    /// The queue's own duration: that of `entries`.
    duration: Duration,
    /// The entries of `duration`, oldest (soonest) first.
    entries: VecDeque<Deadline>,
    /// The entries of other durations, one sorted run per duration (never
    /// `duration`); a run is dropped once it empties.
    others: Vec<Run>,
    /// Tick 0.
    epoch: Instant,
}

/// The entries of one duration, oldest first.
#[derive(Debug)]
struct Run {
    duration: Duration,
    entries: VecDeque<Deadline>,
}

impl DeadlineQueue {
    /// An empty queue whose entries last `duration`, with room for `capacity` entries
    /// before it grows (room that is never used costs address space, not memory).
    pub fn with_capacity(duration: Duration, capacity: usize) -> Self {
        DeadlineQueue {
            duration: duration.min(MAX_QUEUE_DURATION),
            entries: VecDeque::with_capacity(capacity),
            others: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// Entries pushed from now on last `duration`; those pushed before keep theirs.
    pub fn set_duration(&mut self, duration: Duration) {
        let duration = duration.min(MAX_QUEUE_DURATION);
        if duration == self.duration {
            return;
        }
        let old = Run {
            duration: self.duration,
            entries: std::mem::take(&mut self.entries),
        };
        if !old.entries.is_empty() {
            self.others.push(old);
        }
        self.duration = duration;
        // Entries already pushed with the new duration become the queue's own.
        if let Some(index) = self.others.iter().position(|run| run.duration == duration) {
            self.entries = self.others.swap_remove(index).entries;
        }
    }

    /// `now` as the queue counts it (a moment before the epoch counts as the epoch:
    /// late, never early).
    #[inline]
    fn clock(&self, now: Instant) -> Clock {
        let since = now.saturating_duration_since(self.epoch);
        let subsec = since.subsec_nanos();
        let whole = since.as_secs() * TICKS_PER_SECOND + u64::from(subsec / TICK_NANOS);
        Clock {
            // Wrapping: only differences of ticks less than MAX_QUEUE_DURATION apart
            // are ever taken.
            tick: whole as u32,
            into_tick: Duration::from_nanos(u64::from(subsec % TICK_NANOS)),
        }
    }

    /// An entry for `key` and `serial` pushed at `now`.
    #[inline]
    fn entry(&self, now: Instant, key: usize, serial: u64) -> Deadline {
        debug_assert!(u32::try_from(key).is_ok(), "slab key {key} above 32 bits");
        Deadline {
            pushed: self.clock(now).tick,
            key: key as u32,
            serial,
        }
    }

    /// Adds a deadline of the queue's duration after `now` (the clock never goes
    /// back, so the run stays sorted).
    #[inline]
    pub fn push(&mut self, now: Instant, key: usize, serial: u64) {
        let entry = self.entry(now, key, serial);
        self.entries.push_back(entry);
    }

    /// Adds a deadline `duration` after `now` (its own run unless it is the queue's
    /// duration).
    pub fn push_lasting(&mut self, now: Instant, duration: Duration, key: usize, serial: u64) {
        let duration = duration.min(MAX_QUEUE_DURATION);
        if duration == self.duration {
            return self.push(now, key, serial);
        }
        let entry = self.entry(now, key, serial);
        let index = match self.others.iter().position(|run| run.duration == duration) {
            Some(index) => index,
            None => {
                self.others.push(Run {
                    duration,
                    entries: VecDeque::new(),
                });
                self.others.len() - 1
            }
        };
        self.others[index].entries.push_back(entry);
    }

    /// How long after `now` the soonest deadline is due (zero if it is due), if there
    /// is any (it may be stale).
    #[inline]
    pub fn next(&self, now: Instant) -> Option<Duration> {
        if self.is_empty() {
            return None;
        }
        let clock = self.clock(now);
        let left = |head: &Deadline, duration: Duration| clock.until_due(head, duration);
        let own = self.entries.front().map(|head| left(head, self.duration));
        if self.others.is_empty() {
            return own;
        }
        let others = self
            .others
            .iter()
            .filter_map(|run| Some(left(run.entries.front()?, run.duration)));
        others.chain(own).min()
    }

    /// Removes and returns the soonest entry if it is due at `now`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        // Asked on every round of the loop: an empty queue does not read the clock.
        if self.is_empty() {
            return None;
        }
        let clock = self.clock(now);
        if !self.others.is_empty() {
            if let Some(due) = self.pop_expired_other(clock) {
                return Some(due);
            }
        }
        match self.entries.front() {
            Some(head) if clock.due_in(head, self.duration) <= 0 => self.entries.pop_front(),
            _ => None,
        }
    }

    /// The soonest due entry of the other runs, dropping a run that empties.
    fn pop_expired_other(&mut self, clock: Clock) -> Option<Deadline> {
        let (due_in, index) = self
            .others
            .iter()
            .enumerate()
            .filter_map(|(index, run)| {
                Some((clock.due_in(run.entries.front()?, run.duration), index))
            })
            .min()?;
        if due_in > 0 {
            return None;
        }
        self.pop_from_other(index)
    }

    fn pop_from_other(&mut self, index: usize) -> Option<Deadline> {
        let due = self.others[index].entries.pop_front();
        if self.others[index].entries.is_empty() {
            self.others.swap_remove(index);
        }
        due
    }

    /// Removes and returns the oldest entry (the first pushed, as of `now`), due or
    /// not.
    pub fn pop_oldest(&mut self, now: Instant) -> Option<Deadline> {
        let clock = self.clock(now);
        let oldest_other = self
            .others
            .iter()
            .enumerate()
            .filter_map(|(index, run)| Some((clock.age(run.entries.front()?), index)))
            .max_by_key(|&(age, index)| (age, std::cmp::Reverse(index)));
        let own = self.entries.front().map(|head| clock.age(head));
        match (oldest_other, own) {
            (Some((other, index)), own) if own.is_none_or(|own| other > own) => {
                self.pop_from_other(index)
            }
            _ => self.entries.pop_front(),
        }
    }

    /// Calls `each` with every entry (live or stale) and the time left until it is
    /// due at `now` (zero once it is).
    pub fn each_left(&self, now: Instant, mut each: impl FnMut(&Deadline, Duration)) {
        let clock = self.clock(now);
        let runs = self.others.iter().map(|run| (run.duration, &run.entries));
        for (duration, entries) in runs.chain([(self.duration, &self.entries)]) {
            for entry in entries {
                each(entry, duration.saturating_sub(clock.age(entry)));
            }
        }
    }

    /// Keeps only the entries for which `live` says yes, in order (so still sorted).
    pub fn retain(&mut self, mut live: impl FnMut(&Deadline) -> bool) {
        for run in &mut self.others {
            run.entries.retain(&mut live);
        }
        self.others.retain(|run| !run.entries.is_empty());
        self.entries.retain(live);
    }

    /// How many entries (live or stale) are queued.
    pub fn len(&self) -> usize {
        self.entries.len()
            + self
                .others
                .iter()
                .map(|run| run.entries.len())
                .sum::<usize>()
    }

    /// Whether no entry is queued (an emptied run is dropped, so no run is left).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.others.is_empty()
    }
}

#[cfg(test)]
mod tests;
