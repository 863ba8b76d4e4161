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

/// Deadlines that all lie the same `duration` after the moment they were pushed.
///
/// A reload may change the duration ([`DeadlineQueue::set_duration`]); entries pushed
/// before keep their time, in a run of their own, so that each run stays sorted.
#[derive(Debug)]
pub struct DeadlineQueue {
    /// The fixed duration of every entry.
    duration: Duration,
    /// The entries, oldest (soonest) first.
    entries: VecDeque<Deadline>,
    /// Entries pushed under earlier durations, one sorted run per duration, oldest
    /// run first; empty but for the timeout of a reload's time.
    retired: Vec<VecDeque<Deadline>>,
}

impl DeadlineQueue {
    /// An empty queue whose entries last `duration`, with room for `capacity` entries
    /// before it grows (room that is never used costs address space, not memory).
    pub fn with_capacity(duration: Duration, capacity: usize) -> Self {
        DeadlineQueue {
            duration,
            entries: VecDeque::with_capacity(capacity),
            retired: Vec::new(),
        }
    }

    /// Entries pushed from now on last `duration`; those pushed before keep theirs.
    pub fn set_duration(&mut self, duration: Duration) {
        if duration == self.duration {
            return;
        }
        self.duration = duration;
        if !self.entries.is_empty() {
            let run = std::mem::take(&mut self.entries);
            self.retired.push(run);
        }
    }

    /// Adds a deadline `duration` after `now` and returns when it expires.
    pub fn push(&mut self, now: Instant, key: usize, serial: u64) -> Instant {
        let at = saturating_add(now, self.duration);
        // Instants from one monotonic clock never go back, so the queue stays sorted.
        debug_assert!(self.entries.back().is_none_or(|last| last.at <= at));
        self.entries.push_back(Deadline { at, key, serial });
        at
    }

    /// The soonest deadline, if any (it may be stale).
    #[inline]
    pub fn next(&self) -> Option<Instant> {
        let head = self.entries.front().map(|deadline| deadline.at);
        if self.retired.is_empty() {
            return head;
        }
        let retired = self
            .retired
            .iter()
            .filter_map(|run| run.front())
            .map(|deadline| deadline.at);
        retired.chain(head).min()
    }

    /// Removes and returns the soonest entry if it has expired by `now`.
    #[inline]
    pub fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        if !self.retired.is_empty() {
            if let Some(due) = pop_expired_retired(&mut self.retired, now) {
                return Some(due);
            }
        }
        match self.entries.front() {
            Some(head) if head.at <= now => self.entries.pop_front(),
            _ => None,
        }
    }

    /// Removes and returns the oldest entry (the first pushed), expired or not.
    pub fn pop_oldest(&mut self) -> Option<Deadline> {
        while let Some(run) = self.retired.first_mut() {
            match run.pop_front() {
                Some(oldest) => return Some(oldest),
                None => {
                    self.retired.remove(0);
                }
            }
        }
        self.entries.pop_front()
    }

    /// Keeps only the entries for which `live` says yes, in order (so still sorted).
    pub fn retain(&mut self, mut live: impl FnMut(&Deadline) -> bool) {
        for run in &mut self.retired {
            run.retain(&mut live);
        }
        self.retired.retain(|run| !run.is_empty());
        self.entries.retain(live);
    }

    /// How many entries (live or stale) are queued.
    pub fn len(&self) -> usize {
        self.entries.len() + self.retired.iter().map(VecDeque::len).sum::<usize>()
    }

    /// Whether no entry is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The soonest expired entry of the retired runs, dropping runs that empty.
fn pop_expired_retired(retired: &mut Vec<VecDeque<Deadline>>, now: Instant) -> Option<Deadline> {
    let soonest = retired
        .iter()
        .enumerate()
        .filter_map(|(index, run)| run.front().map(|deadline| (deadline.at, index)))
        .min()?;
    let (at, index) = soonest;
    if at > now {
        return None;
    }
    let due = retired[index].pop_front();
    if retired[index].is_empty() {
        retired.remove(index);
    }
    due
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
}
