//! The deadline queue: push order, never early, at most a tick late, runs of other
//! durations, wrapping ticks, and deadlines that recur.

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
    // Exact: due a second after the end of the tick it was pushed in.
    assert_eq!(queue.next(start), Some(Duration::from_secs(1) + TICK));

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
    assert_eq!(queue.next(start), Some(MAX_QUEUE_DURATION + TICK));
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
    assert!(left >= Duration::from_secs(1) && left <= Duration::from_secs(1) + TICK);
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
    assert!(left >= 100 * MS && left <= 100 * MS + TICK);
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

/// The moments (from `start_offset` after the epoch) at which a deadline pushed
/// for `first`, then pushed again for `again` each time it fires, fires, `rounds`
/// times, the loop waking when `next` says (which must then find it due).
fn recurrences(
    rounds: usize,
    start_offset: Duration,
    first: Duration,
    again: Duration,
) -> Vec<Duration> {
    let mut queue = DeadlineQueue::with_capacity(Duration::from_secs(1), 1);
    let start = queue.epoch + start_offset;
    let mut now = start;
    queue.push_lasting(now, first, 0, 0);
    let mut fired = Vec::new();
    for _ in 0..rounds {
        now += queue.next(now).expect("one entry");
        assert!(
            queue.pop_expired(now).is_some(),
            "not due when next said: {fired:?}"
        );
        fired.push(now - start);
        queue.push_lasting(now, again, 0, 0);
    }
    fired
}

#[test]
fn a_recurring_deadline_recurs_every_interval_rounded_up_to_ticks() {
    for (interval, period) in [
        (100 * MS, 100 * MS),
        (Duration::from_secs(10), Duration::from_secs(10)),
        (10 * MS, 10 * MS),
        (15 * MS, 20 * MS),
    ] {
        // First pushed anywhere in a tick for the interval itself (never early),
        // then once a period, never drifting.
        for offset in [Duration::ZERO, 3 * MS, 9 * MS] {
            let fired = recurrences(20, offset, interval, recurring(interval));
            assert!(
                fired[0] >= interval && fired[0] <= interval + TICK,
                "{interval:?}: {fired:?}"
            );
            // The first on a tick boundary, then every one a period after the last
            // (a one-tick interval: a nanosecond past its boundary).
            let nanosecond = Duration::from_nanos(1);
            assert!(
                fired[1] - fired[0] <= period + nanosecond,
                "{interval:?}: {fired:?}"
            );
            for pair in fired[1..].windows(2) {
                let apart = pair[1] - pair[0];
                let off = apart.abs_diff(period);
                assert!(off <= nanosecond, "{interval:?}: {fired:?}");
            }
        }
    }
    // The interval itself, pushed again as it fires, recurs a tick late each time.
    let fired = recurrences(3, Duration::ZERO, 100 * MS, 100 * MS);
    assert_eq!(fired[2] - fired[1], 110 * MS);
}
