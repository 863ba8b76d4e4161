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
        let left = |head: &Deadline, duration: Duration| duration.saturating_sub(clock.age(head));
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
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Everything due at `now`, in the order it is popped.
    fn due_at(queue: &mut DeadlineQueue, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| queue.pop_expired(now))
            .map(|due| due.serial)
            .collect()
    }

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Deadline>(), 16);
    }

    #[test]
    fn expires_in_push_order_never_early_and_at_most_a_tick_late() {
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(1), 2);
        let start = queue.epoch;
        queue.push(start, 7, 1);
        queue.push(start + 10 * MS, 3, 2);
        assert_eq!(queue.next(start), Some(Duration::from_secs(1)));

        assert_eq!(queue.pop_expired(start + 999 * MS), None);
        assert!(queue
            .next(start + 999 * MS)
            .is_some_and(|left| left > Duration::ZERO));
        let first = queue.pop_expired(start + 1000 * MS + TICK).unwrap();
        assert_eq!((first.key(), first.serial), (7, 1));
        assert_eq!(queue.pop_expired(start + 1009 * MS), None);
        assert_eq!(queue.next(start + 1010 * MS + TICK), Some(Duration::ZERO));
        let second = queue.pop_expired(start + 1010 * MS + TICK).unwrap();
        assert_eq!((second.key(), second.serial), (3, 2));
        assert!(queue.is_empty());
        assert_eq!(queue.next(start), None);
    }

    #[test]
    fn a_deadline_is_due_within_a_tick_after_its_duration_wherever_it_was_pushed() {
        let duration = 50 * MS;
        let mut queue = DeadlineQueue::with_capacity(duration, 0);
        let epoch = queue.epoch;
        // Pushed at every millisecond of two ticks, and checked a microsecond either
        // side of the bounds.
        for pushed_ms in 0..20u32 {
            let pushed = epoch + pushed_ms * MS;
            queue.push(pushed, 0, pushed_ms.into());
            let early = pushed + duration - Duration::from_micros(1);
            assert_eq!(queue.pop_expired(early), None, "pushed at {pushed_ms} ms");
            let late = pushed + duration + TICK;
            assert_eq!(
                queue.pop_expired(late).map(|due| due.serial),
                Some(pushed_ms.into())
            );
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn ages_are_told_across_the_wrap_of_the_tick_count() {
        let pushed = Deadline {
            pushed: u32::MAX - 1,
            key: 0,
            serial: 0,
        };
        let now = Clock {
            tick: 3,
            into_tick: 4 * MS,
        };
        // Ticks MAX-1, MAX, 0, 1, 2 have passed since the end of the pushing tick's
        // start, less the pushing tick itself: 4 ticks and 4 ms.
        assert_eq!(now.age(&pushed), 4 * TICK + 4 * MS);
        assert!(now.due_in(&pushed, 44 * MS) <= 0);
        assert!(now.due_in(&pushed, 45 * MS) > 0);
        // The longest duration is told right on the far side of the wrap too.
        let ticks = (MAX_QUEUE_DURATION.as_millis() / TICK.as_millis()) as u32;
        let at_longest = Clock {
            tick: pushed.pushed.wrapping_add(ticks + 1),
            into_tick: Duration::ZERO,
        };
        assert_eq!(at_longest.age(&pushed), MAX_QUEUE_DURATION);
    }

    #[test]
    fn durations_past_the_longest_are_cut_to_it() {
        let mut queue = DeadlineQueue::with_capacity(Duration::MAX, 1);
        let start = queue.epoch;
        queue.push(start, 1, 1);
        assert_eq!(queue.next(start), Some(MAX_QUEUE_DURATION));
        queue.push_lasting(start, MAX_QUEUE_DURATION * 2, 2, 2);
        assert_eq!(queue.others.len(), 0, "the same duration once cut");
    }

    #[test]
    fn retain_drops_stale_entries_and_keeps_the_order() {
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(1), 4);
        let start = queue.epoch;
        for serial in 0..4 {
            queue.push(start + serial as u32 * MS, serial as usize, serial);
        }
        queue.retain(|deadline| deadline.serial % 2 == 1);
        assert_eq!(queue.len(), 2);
        assert_eq!(due_at(&mut queue, start + Duration::from_secs(2)), [1, 3]);
    }

    #[test]
    fn a_shorter_duration_after_a_reload_still_expires_in_time_order() {
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(10), 4);
        let start = queue.epoch;
        queue.push(start, 1, 1);
        queue.set_duration(Duration::from_secs(1));
        queue.push(start + 5 * MS, 2, 2);
        // The newer entry is due first; the older one keeps its ten seconds.
        let left = queue.next(start + 5 * MS).unwrap();
        assert!(left <= Duration::from_secs(1) && left + TICK >= Duration::from_secs(1));
        assert_eq!(queue.len(), 2);
        let later = start + Duration::from_secs(2);
        assert_eq!(due_at(&mut queue, later), [2]);
        assert_eq!(queue.pop_oldest(later).unwrap().serial, 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn entries_of_other_durations_expire_in_time_order() {
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(30), 4);
        let start = queue.epoch;
        queue.push(start, 1, 1);
        queue.push_lasting(start, 100 * MS, 2, 2);
        queue.push_lasting(start + MS, 500 * MS, 3, 3);
        queue.push_lasting(start + 20 * MS, 100 * MS, 4, 4);
        assert_eq!(queue.len(), 4);
        let left = queue.next(start).unwrap();
        assert!(left <= 100 * MS && left + TICK >= 100 * MS);
        // In time order across runs, also when all are overdue.
        assert_eq!(due_at(&mut queue, start + 600 * MS), [2, 4, 3]);
        assert_eq!(queue.len(), 1, "the queue's own entry is not due");
        // The oldest by push time, whatever its duration.
        let later = start + 600 * MS;
        queue.push_lasting(later, MS, 5, 5);
        assert_eq!(queue.pop_oldest(later).unwrap().serial, 1);
        assert_eq!(queue.pop_oldest(later).unwrap().serial, 5);
        assert!(queue.is_empty());
    }

    #[test]
    fn overdue_entries_of_other_runs_come_out_soonest_first() {
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(30), 4);
        let start = queue.epoch;
        // The longer run is made first, and its entry falls due first.
        queue.push_lasting(start, 200 * MS, 1, 1);
        queue.push_lasting(start + 150 * MS, 100 * MS, 2, 2);
        assert_eq!(due_at(&mut queue, start + Duration::from_secs(1)), [1, 2]);
    }

    #[test]
    fn a_reload_back_to_an_earlier_duration_keeps_one_run_per_duration() {
        let (long, short) = (Duration::from_secs(10), Duration::from_secs(1));
        let mut queue = DeadlineQueue::with_capacity(long, 4);
        let start = queue.epoch;
        queue.push(start, 1, 1);
        queue.set_duration(short);
        queue.push(start, 2, 2);
        queue.set_duration(long);
        queue.push(start + 20 * MS, 3, 3);
        assert_eq!(queue.others.len(), 1);
        assert_eq!(due_at(&mut queue, start + long * 2), [2, 1, 3]);
    }
}
