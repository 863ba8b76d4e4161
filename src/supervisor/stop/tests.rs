//! A stop's stages as a table: request (or time) in each stage -> the step taken.

use std::time::{Duration, Instant};

use super::{Stop, StopStep};
use crate::supervisor::request::Request;

const DELAY: Duration = Duration::from_secs(5);

#[test]
fn without_a_delay_the_first_stop_signal_drains_and_the_second_closes_in_flight() {
    let now = Instant::now();
    let mut stop = Stop::new(Duration::ZERO);
    assert!(!stop.begun());
    assert_eq!(stop.on_request(Request::Drain, now), StopStep::Drain);
    assert!(stop.stopping() && stop.begun());
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
    assert_eq!(stop.on_time(now + DELAY), StopStep::Stay);
}

#[test]
fn with_a_delay_the_first_greets_on_the_second_drains_the_third_closes_in_flight() {
    let now = Instant::now();
    let mut stop = Stop::new(DELAY);
    assert_eq!(stop.on_request(Request::Drain, now), StopStep::Delay(DELAY));
    assert!(!stop.stopping() && stop.begun(), "still accepting");
    assert_eq!(stop.delay_ends(), Some(now + DELAY));
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::DrainAfterDelay { early: true }
    );
    assert_eq!(stop.delay_ends(), None);
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
}

#[test]
fn the_delay_ends_in_its_time_unless_the_process_stopped_meanwhile() {
    let now = Instant::now();
    let mut stop = Stop::new(DELAY);
    stop.on_request(Request::Drain, now);
    assert_eq!(stop.on_time(now), StopStep::Stay, "not yet");
    assert_eq!(
        stop.on_time(now + DELAY),
        StopStep::DrainAfterDelay { early: false }
    );
    assert!(stop.stopping());

    let mut failed = Stop::new(DELAY);
    failed.on_request(Request::Drain, now);
    // A worker failed during the delay: the drain is under way already.
    failed.set_stopping();
    assert_eq!(failed.on_time(now + DELAY), StopStep::Stay);
    assert_eq!(failed.delay_ends(), None);
}

#[test]
fn a_process_already_draining_lets_its_first_stop_signal_go_by() {
    let now = Instant::now();
    let mut stop = Stop::new(DELAY);
    // A handover, or a failed worker.
    stop.set_stopping();
    assert_eq!(stop.on_request(Request::Drain, now), StopStep::Stay);
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
}

#[test]
fn a_withdrawal_drains_once_and_is_not_a_stop_signal() {
    let now = Instant::now();
    let mut stop = Stop::new(DELAY);
    assert_eq!(stop.on_request(Request::Withdraw, now), StopStep::Withdraw);
    assert_eq!(stop.on_request(Request::Withdraw, now), StopStep::Stay);
    // The stop signal that comes with it is the first, not a second.
    assert_eq!(stop.on_request(Request::Drain, now), StopStep::Stay);
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
}

#[test]
fn stop_now_ends_a_delay_and_counts_as_asked() {
    let now = Instant::now();
    let mut stop = Stop::new(DELAY);
    stop.on_request(Request::Drain, now);
    assert_eq!(stop.on_request(Request::StopNow, now), StopStep::StopNow);
    assert_eq!(stop.delay_ends(), None);
    assert_eq!(
        stop.on_request(Request::Drain, now),
        StopStep::CloseInFlight
    );
}
