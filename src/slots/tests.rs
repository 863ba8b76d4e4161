//! What [`Slots`] counts: per client address, per header-waiting socket peer, and the
//! greet delays, in and out.

use super::*;
use crate::admission::ServerLimits;

fn config(max_per_ip: Option<u32>, max_connections: usize) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.max_per_ip = max_per_ip;
    config.max_connections = max_connections;
    config.max_delayed = 1;
    config
}

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A client at `text`, on some port.
fn client(text: &str) -> SocketAddr {
    SocketAddr::new(ip(text), 4000)
}

const DELAYING: Phase = Phase::Delaying {
    header_len: 0,
    pregreet: crate::admission::Pregreet::Greet,
};

#[test]
fn without_max_per_ip_every_address_is_admitted() {
    let mut slots = Slots::new(&config(None, 100));
    for _ in 0..10 {
        slots.count_in(Phase::Flushing, ip(A));
        slots.count_in(Phase::Header, ip(A));
    }
    assert!(slots.admits_client(client(A)));
    assert!(slots.admits_header_waiter(ip(A)));
}

#[test]
fn clients_and_header_waiters_are_counted_apart() {
    let mut slots = Slots::new(&config(Some(1), 100));
    slots.count_in(Phase::Header, ip(A));
    assert!(!slots.admits_header_waiter(ip(A)), "its one waiter");
    assert!(
        slots.admits_client(client(A)),
        "a waiter is not a client yet"
    );
    slots.count_in(Phase::Lingering, ip(A));
    assert!(!slots.admits_client(client(A)));
    assert!(slots.admits_client(client(B)), "another address");
    slots.count_out(Phase::Lingering, ip(A));
    slots.count_out(Phase::Header, ip(A));
    assert!(slots.admits_client(client(A)) && slots.admits_header_waiter(ip(A)));
}

#[test]
fn a_quarter_of_max_connections_may_wait_for_a_header() {
    let mut slots = Slots::new(&config(None, 8));
    slots.count_in(Phase::Header, ip(A));
    assert!(!slots.header_waiters_full());
    slots.count_in(Phase::Header, ip(B));
    assert!(slots.header_waiters_full(), "8 / 4 = 2 waiters");
    slots.count_out(Phase::Header, ip(B));
    assert!(!slots.header_waiters_full());
    // At least one, however small the limit.
    assert!(!Slots::new(&config(None, 1)).header_waiters_full());
}

#[test]
fn a_delay_slot_is_freed_as_its_connection_moves_on() {
    let mut slots = Slots::new(&config(None, 100));
    slots.count_in(DELAYING, ip(A));
    assert_eq!(slots.delayed(), 1);
    assert!(slots.delay_full(), "--max-delayed 1");
    let writing = Phase::Writing {
        sent: 0,
        header_len: 0,
    };
    slots.moved(DELAYING, writing, ip(A));
    assert_eq!(slots.delayed(), 0);
    assert!(!slots.delay_full());
    slots.moved(Phase::Flushing, Phase::Lingering, ip(A));
    assert_eq!(slots.delayed(), 0, "only a delay's end frees a delay slot");
}

#[test]
fn a_max_per_ip_set_by_a_reload_counts_what_is_held() {
    let mut slots = Slots::new(&config(None, 100));
    let held = [(Phase::Flushing, ip(A)), (Phase::Header, ip(B))];
    slots.reconfigure(&config(Some(1), 100), held.into_iter());
    assert!(!slots.admits_client(client(A)));
    assert!(
        slots.admits_client(client(B)),
        "B only waits for its header"
    );
    assert!(!slots.admits_header_waiter(ip(B)));
    slots.reconfigure(&config(None, 100), std::iter::empty());
    assert!(slots.admits_client(client(A)) && slots.admits_header_waiter(ip(B)));
}

#[test]
fn max_trapped_counts_every_worker_sharing_the_count() {
    let trapped = Phase::Trapped {
        sent: 0,
        country: crate::geoip::Country::NONE,
        bits: crate::connection::TrapBits::new(true, 0, crate::admission::TrapWhy::Listener),
    };
    let mut config = config(None, 100);
    config.max_trapped = 2;
    let (mut first, mut second) = (Slots::new(&config), Slots::new(&config));
    first.count_in(trapped, ip(A));
    let server_trapped = Arc::new(AtomicUsize::new(0));
    first.share_trapped(&server_trapped);
    second.share_trapped(&server_trapped);
    assert!(!second.trap_full() && second.trapped_shared());
    second.count_in(trapped, ip(B));
    // Full for both, though each worker holds one.
    assert!(first.trap_full() && second.trap_full());
    assert_eq!((first.trapped(), second.trapped()), (1, 1));
    first.count_out(trapped, ip(A));
    assert!(!second.trap_full());
    // A worker alone counts only its own.
    assert!(!Slots::new(&config).trapped_shared());
}
