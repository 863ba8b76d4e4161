//! Unit tests of the accept set: roles, the first worker's round, and the
//! registration beneath mio.

use super::*;
use mio::net::TcpListener;
use mio::{Events, Poll};
use std::sync::Arc;
use std::time::Duration;

/// Two polls share a listener added here: an arrival reaches a poll under the
/// listener's token, as a mio registration would, and removal stops the events.
#[test]
fn roles_follow_the_cores_and_listen_as_the_set_says() {
    let set = AcceptSet::new(2);
    assert_eq!(
        [set.role(0), set.role(1), set.role(2), set.role(63)],
        [Role::First, Role::Helper, Role::Reserve, Role::Reserve]
    );
    let listening = |set: &AcceptSet| {
        [Role::First, Role::Helper, Role::Reserve].map(|role| set.should_listen(role))
    };
    assert_eq!(listening(&set), [true, false, false]);
    set.accepting_worker_behind(true);
    assert_eq!(listening(&set), [true, true, false]);
    set.accepting_worker_full(true);
    assert_eq!(listening(&set), [true, true, true]);
    set.accepting_worker_behind(false);
    assert_eq!(listening(&set), [true, true, true], "still full");
    set.accepting_worker_full(false);
    assert_eq!(listening(&set), [true, false, false]);
    // One core: one helper still, to cover the first worker.
    assert_eq!(AcceptSet::new(1).role(1), Role::Helper);
    assert_eq!(AcceptSet::new(1).role(2), Role::Reserve);
}

#[test]
fn the_first_workers_round_is_seen_running_until_it_ends() {
    let set = AcceptSet::new(2);
    let start = Instant::now();
    assert_eq!(set.first_round_running(start), None, "waits at first");
    set.first_round_began(start);
    let later = start + Duration::from_millis(30);
    assert_eq!(
        set.first_round_running(later),
        Some(Duration::from_millis(30))
    );
    set.first_round_ended();
    assert_eq!(set.first_round_running(later), None);
}

#[test]
fn a_listener_added_here_reads_back_through_mio_and_is_removed_here() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (first, second) = (Poll::new().unwrap(), Poll::new().unwrap());
    let token = Token(usize::MAX - 1);
    for poll in [&first, &second] {
        register(poll.registry(), listener.as_raw_fd(), token).unwrap();
    }
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let mut events = Events::with_capacity(4);
    let mut first = first;
    first
        .poll(&mut events, Some(Duration::from_secs(10)))
        .unwrap();
    let tokens: Vec<Token> = events.iter().map(|event| event.token()).collect();
    assert_eq!(tokens, [token]);
    assert!(events.iter().all(|event| event.is_readable()));

    deregister(first.registry(), listener.as_raw_fd()).unwrap();
    // Not added any more: a second removal fails.
    assert!(deregister(first.registry(), listener.as_raw_fd()).is_err());
    let _another = std::net::TcpStream::connect(addr).unwrap();
    first.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(events.is_empty());
}

/// What a worker's part says it does with a round: the first listens always, a quiet
/// helper covers it, a reserve waits; a round that finds a deep backlog brings the
/// helpers in, a full worker steps out and brings the reserves in.
#[test]
fn each_part_listens_as_the_rounds_say() {
    let set = Arc::new(AcceptSet::new(2));
    let (mut first, mut helper, mut reserve) = (
        Sharing::new(&set, 0),
        Sharing::new(&set, 1),
        Sharing::new(&set, 2),
    );
    let round = |accepted: usize, has_room: bool, listening: bool| Round {
        began: Instant::now(),
        accepted,
        listener_readable: false,
        has_room,
        listening,
        backlog: 64,
    };
    assert!(first.follow(round(0, true, true)));
    assert!(
        helper.follow(round(0, true, false)),
        "a quiet helper covers"
    );
    assert!(!reserve.follow(round(0, true, false)));

    assert_eq!(behind_at(64), 16);
    assert!(first.follow(round(16, true, true)));
    assert!(
        set.should_listen(Role::Helper),
        "the first worker is behind"
    );
    assert!(!set.should_listen(Role::Reserve));

    assert!(
        !first.follow(round(0, false, true)),
        "a full worker steps out"
    );
    assert!(
        reserve.follow(round(0, true, false)),
        "and the reserves step in"
    );
}

#[test]
fn a_deep_backlog_is_a_quarter_of_it_within_one_rounds_budget() {
    assert_eq!(behind_at(0), 1);
    assert_eq!(behind_at(-1), 1);
    assert_eq!(behind_at(1024), 256);
    assert_eq!(behind_at(1 << 20), ACCEPT_BUDGET);
}
