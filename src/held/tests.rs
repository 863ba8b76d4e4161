//! What `held.rs` decides on its own: the size of a held connection's state, and the
//! one rule that turns a registration failure into a close reason.

use super::*;
use mio::net::TcpStream;

#[test]
fn held_connection_state_stays_small() {
    // Every held connection pays for this (its slab entry is no larger: the
    // vacant/occupied tag fits in a value `Held` never takes, as
    // scripts/held-rss.sh's 88 bytes show) and for one 16-byte deadline entry;
    // the budget for user-space memory per held connection is 95 bytes, and
    // `Held` may take 72 of them. mio's stream is 4 bytes in release builds and
    // 16 with debug assertions: so 72 + 16 bytes there.
    let held = std::mem::size_of::<Held>();
    let budget = if cfg!(debug_assertions) { 72 + 16 } else { 72 };
    assert!(held <= budget, "a held connection's state is {held} bytes");
    assert_eq!(std::mem::size_of::<Deadline>(), 16);
    // A trapped connection's country (`--geoip-db`) rides in the phase's padding: the
    // phase stays 8 bytes in every build.
    assert_eq!(std::mem::size_of::<Phase>(), 8);
    assert_eq!(
        std::mem::size_of::<TcpStream>(),
        if cfg!(debug_assertions) { 16 } else { 4 }
    );
}

#[test]
fn a_registration_failure_counts_as_greeted_only_once_the_greeting_is_handed_over() {
    // What `epoll_ctl` says when the kernel has no memory for one more entry.
    let err = io::Error::from(io::ErrorKind::OutOfMemory);
    let cases = [
        (Phase::Header, CloseReason::Error),
        (
            Phase::Delaying {
                header_len: 0,
                pregreet: crate::admission::Pregreet::Greet,
            },
            CloseReason::Error,
        ),
        (
            Phase::Writing {
                sent: 3,
                header_len: 0,
            },
            CloseReason::Error,
        ),
        (Phase::Flushing, CloseReason::Greeted),
        (Phase::Lingering, CloseReason::Greeted),
    ];
    for (phase, reason) in cases {
        assert_eq!(registration_failure(phase, &err), reason, "{phase:?}");
    }
}
