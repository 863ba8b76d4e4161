//! A FIFO of fixed-duration deadlines: the server's only timer.
//!
//! Every entry of one queue is pushed `now + the same duration`, so the queue is
//! sorted by construction and the head is always the next to expire; no heap, no
//! timer wheel. Entries are not removed when their connection closes: a stale entry is
//! skipped when it reaches the head (its serial no longer matches), and the owner
//! compacts the queue with [`DeadlineQueue::retain`] when stale entries pile up, so
//! that it stays bounded by what is held rather than by rate x timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `now + duration`, or a century from now where the sum would overflow the clock
/// (a [`crate::Config`] built in code is not bound by the flags' limits).
pub fn saturating_add(now: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(duration.min(CENTURY)).unwrap_or(now)
}

/// One pending deadline: which slab key, and which connection held that key then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When it expires.
    pub at: Instant,
    /// The slab key of the connection.
    pub key: usize,
    /// The connection's serial number, to tell it from a later holder of `key`.
    pub serial: u64,
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
            duration,
            entries: VecDeque::with_capacity(capacity),
            others: Vec::new(),
        }
    }

    /// Entries pushed from now on last `duration`; those pushed before keep theirs.
    pub fn set_duration(&mut self, duration: Duration) {
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

    /// Adds a deadline of the queue's duration after `now` and returns when it
    /// expires.
    #[inline]
    pub fn push(&mut self, now: Instant, key: usize, serial: u64) -> Instant {
        let at = saturating_add(now, self.duration);
        // Instants from one monotonic clock never go back, so the run stays sorted.
        debug_assert!(self.entries.back().is_none_or(|last| last.at <= at));
        self.entries.push_back(Deadline { at, key, serial });
        at
    }

    /// Adds a deadline `duration` after `now` (its own run unless it is the queue's
    /// duration) and returns when it expires.
    pub fn push_lasting(
        &mut self,
        now: Instant,
        duration: Duration,
        key: usize,
        serial: u64,
    ) -> Instant {
        if duration == self.duration {
            return self.push(now, key, serial);
        }
        let at = saturating_add(now, duration);
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
        self.others[index]
            .entries
            .push_back(Deadline { at, key, serial });
        at
    }

    /// The soonest deadline, if any (it may be stale).
    #[inline]
    pub fn next(&self) -> Option<Instant> {
        let head = self.entries.front().map(|deadline| deadline.at);
        if self.others.is_empty() {
            return head;
        }
        let others = self
            .others
            .iter()
            .filter_map(|run| run.entries.front())
            .map(|deadline| deadline.at);
        others.chain(head).min()
    }

    /// Removes and returns the soonest entry if it has expired by `now`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        if !self.others.is_empty() {
            if let Some(due) = self.pop_expired_other(now) {
                return Some(due);
            }
        }
        match self.entries.front() {
            Some(head) if head.at <= now => self.entries.pop_front(),
            _ => None,
        }
    }

    /// The soonest expired entry of the other runs, dropping a run that empties.
    fn pop_expired_other(&mut self, now: Instant) -> Option<Deadline> {
        let (at, index) = self
            .others
            .iter()
            .enumerate()
            .filter_map(|(index, run)| run.entries.front().map(|deadline| (deadline.at, index)))
            .min()?;
        if at > now {
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

    /// Removes and returns the oldest entry (the first pushed), expired or not.
    pub fn pop_oldest(&mut self) -> Option<Deadline> {
        let pushed = |deadline: &Deadline, duration| deadline.at.checked_sub(duration);
        let oldest_other = self
            .others
            .iter()
            .enumerate()
            .filter_map(|(index, run)| {
                let head = run.entries.front()?;
                Some((pushed(head, run.duration), index))
            })
            .min();
        let own = self.entries.front().map(|head| pushed(head, self.duration));
        match (oldest_other, own) {
            (Some((other, index)), own) if own.is_none_or(|own| other <= own) => {
                self.pop_from_other(index)
            }
            _ => self.entries.pop_front(),
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

    /// Whether no entry is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_push_order_and_only_when_due() {
        let start = Instant::now();
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(1), 2);
        queue.push(start, 7, 1);
        queue.push(start + Duration::from_millis(10), 3, 2);
        assert_eq!(queue.next(), Some(start + Duration::from_secs(1)));

        assert_eq!(queue.pop_expired(start + Duration::from_millis(999)), None);
        let first = queue.pop_expired(start + Duration::from_secs(2)).unwrap();
        assert_eq!((first.key, first.serial), (7, 1));
        let second = queue.pop_expired(start + Duration::from_secs(2)).unwrap();
        assert_eq!((second.key, second.serial), (3, 2));
        assert!(queue.is_empty());
        assert_eq!(queue.next(), None);
    }

    #[test]
    fn retain_drops_stale_entries_and_keeps_the_order() {
        let start = Instant::now();
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(1), 4);
        for serial in 0..4 {
            queue.push(
                start + Duration::from_millis(serial),
                serial as usize,
                serial,
            );
        }
        queue.retain(|deadline| deadline.serial % 2 == 1);
        assert_eq!(queue.len(), 2);
        let later = start + Duration::from_secs(2);
        assert_eq!(queue.pop_expired(later).unwrap().serial, 1);
        assert_eq!(queue.pop_expired(later).unwrap().serial, 3);
    }

    #[test]
    fn a_shorter_duration_after_a_reload_still_expires_in_time_order() {
        let start = Instant::now();
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(10), 4);
        queue.push(start, 1, 1);
        queue.set_duration(Duration::from_secs(1));
        queue.push(start + Duration::from_millis(5), 2, 2);
        // The newer entry is due first; the older one keeps its ten seconds.
        assert_eq!(queue.next(), Some(start + Duration::from_millis(1005)));
        assert_eq!(queue.len(), 2);
        let later = start + Duration::from_secs(2);
        assert_eq!(queue.pop_expired(later).unwrap().serial, 2);
        assert_eq!(queue.pop_expired(later), None);
        assert_eq!(queue.pop_oldest().unwrap().serial, 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn entries_of_other_durations_expire_in_time_order() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(30), 4);
        queue.push(start, 1, 1);
        queue.push_lasting(start, ms(100), 2, 2);
        queue.push_lasting(start + ms(1), ms(500), 3, 3);
        queue.push_lasting(start + ms(2), ms(100), 4, 4);
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.next(), Some(start + ms(100)));
        let later = start + ms(600);
        let order: Vec<u64> = std::iter::from_fn(|| queue.pop_expired(later))
            .map(|due| due.serial)
            .collect();
        assert_eq!(order, [2, 4, 3]);
        assert_eq!(queue.len(), 1, "the queue's own entry is not due");
        // The oldest by push time, whatever its duration.
        queue.push_lasting(later, ms(1), 5, 5);
        assert_eq!(queue.pop_oldest().unwrap().serial, 1);
        assert_eq!(queue.pop_oldest().unwrap().serial, 5);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_reload_back_to_an_earlier_duration_keeps_one_run_per_duration() {
        let start = Instant::now();
        let (long, short) = (Duration::from_secs(10), Duration::from_secs(1));
        let mut queue = DeadlineQueue::with_capacity(long, 4);
        queue.push(start, 1, 1);
        queue.set_duration(short);
        queue.push(start, 2, 2);
        queue.set_duration(long);
        queue.push(start + Duration::from_millis(1), 3, 3);
        assert_eq!(queue.others.len(), 1);
        let due: Vec<u64> = std::iter::from_fn(|| queue.pop_expired(start + long * 2))
            .map(|due| due.serial)
            .collect();
        assert_eq!(due, [2, 1, 3]);
    }
}
