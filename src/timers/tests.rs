//! What [`Timers`] decides: which deadline comes next, and that entries no longer live
//! are skipped and compacted away.

use super::*;

fn config() -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.write_timeout = Duration::from_secs(10);
    config.linger_timeout = Duration::from_secs(2);
    config
}

#[test]
fn nothing_queued_means_no_deadline() {
    assert_eq!(Timers::new(&config(), 16).next_deadline(), None);
}

#[test]
fn the_soonest_queue_gives_the_next_deadline() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    timers.push(Timer::Write, now, 1, 1);
    timers.push(Timer::Linger, now, 2, 2);
    let next = timers.next_deadline().unwrap();
    assert!(
        next <= now + Duration::from_secs(3),
        "the 2 s linger, not the 10 s write"
    );
}

#[test]
fn a_stale_entry_is_skipped_and_a_live_one_returned() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    for key in 0..3 {
        timers.push(Timer::Linger, now, key, key as u64);
    }
    let later = now + Duration::from_secs(3);
    // Key 1 alone is still held.
    let live = |due: &Deadline, timer| timer == Timer::Linger && due.key() == 1;
    let due = timers.pop_expired(Timer::Linger, later, live).unwrap();
    assert_eq!(due.key(), 1);
    assert!(timers.pop_expired(Timer::Linger, later, live).is_none());
    assert_eq!(timers.len(), 0, "the stale ones went on the way");
}

#[test]
fn nothing_is_due_before_its_time() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    timers.push(Timer::Write, now, 0, 0);
    assert!(timers.pop_expired(Timer::Write, now, |_, _| true).is_none());
    assert_eq!(timers.len(), 1);
}

#[test]
fn the_oldest_live_entry_is_popped_due_or_not() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    for key in 0..3 {
        timers.push(
            Timer::Header,
            now + Duration::from_millis(20 * key as u64),
            key,
            0,
        );
    }
    let live = |due: &Deadline, _| due.key() != 0;
    assert_eq!(
        timers.pop_oldest(Timer::Header, now, live).unwrap().key(),
        1
    );
}

#[test]
fn a_delay_lasts_what_its_entry_says() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    timers.push_lasting(Timer::Delay, now, Duration::from_secs(1), 0, 0);
    let live = |_: &Deadline, _| true;
    assert!(timers.pop_expired(Timer::Delay, now, live).is_none());
    let after = now + Duration::from_millis(1100);
    assert!(timers.pop_expired(Timer::Delay, after, live).is_some());
}

#[test]
fn stale_entries_are_compacted_once_they_outnumber_what_is_held() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    for key in 0..DEADLINE_SLACK + 2 {
        timers.push(Timer::Write, now, key, 0);
    }
    let live = |due: &Deadline, _| due.key() == 0;
    timers.compact(1, live);
    assert_eq!(
        timers.len(),
        DEADLINE_SLACK + 2,
        "under 2 x 1 + slack: kept"
    );
    timers.compact(0, live);
    assert_eq!(timers.len(), 1, "over the bound: only the live one stays");
}

#[test]
fn a_reload_changes_what_later_entries_last() {
    let mut timers = Timers::new(&config(), 16);
    let now = Instant::now();
    timers.push(Timer::Linger, now, 0, 0);
    let mut shorter = config();
    shorter.linger_timeout = Duration::from_millis(100);
    timers.reconfigure(&shorter);
    timers.push(Timer::Linger, now, 1, 1);
    let soon = now + Duration::from_millis(200);
    let due = timers
        .pop_expired(Timer::Linger, soon, |_, _| true)
        .unwrap();
    assert_eq!(due.key(), 1, "the new duration");
    assert!(
        timers
            .pop_expired(Timer::Linger, soon, |_, _| true)
            .is_none(),
        "the old keeps its 2 s"
    );
}
