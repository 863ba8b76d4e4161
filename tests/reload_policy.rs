//! A reload is a security boundary: every port keeps its own access policy across
//! SIGHUP and SIGUSR2, whatever the order of the `[[listener]]` tables, and a reload
//! during a drain still applies each listener's policy to the clients it names late.

mod util;

use std::io::Write;

use greeter::supervisor::Request;
use util::*;

/// A PROXY listener that denies 10.0.0.0/8, with time enough for the steps below.
fn proxy_denying(max_connections: u32) -> String {
    format!(
        "port = 0\nproxy-protocol = true\nproxy-timeout = \"60s\"\ndrain-timeout = \"60s\"\n\
         deny = [\"10.0.0.0/8\"]\nmax-connections = {max_connections}\n"
    )
}

#[test]
fn a_reload_during_a_drain_still_denies_a_client_named_late() {
    let config = temp_file("drain-reload.toml", proxy_denying(100).as_bytes());
    let server = supervise_exactly(&["--config", config.arg()]);
    let mut waiter = connect(server.addr());
    // Half a header: the connection waits for the rest, held.
    waiter.write_all(b"PROXY TCP4 10.1.2.3").unwrap();
    server.wait_for_in_flight(1);

    server.requests.send(Request::Drain);
    wait_until("the drain to start", || server.snapshot().draining);
    // A reload the workers take while draining (seen by its new limit).
    std::fs::write(&config, proxy_denying(101)).unwrap();
    server.requests.send(Request::Reload);
    wait_until("the reload to reach the worker", || {
        server.snapshot().max_connections == 101
    });

    waiter.write_all(b" 127.0.0.1 40000 80\r\n").unwrap();
    let received = read_to_eof(&mut waiter).unwrap_or_default();
    assert!(
        received.is_empty(),
        "a denied client was sent {:?}",
        String::from_utf8_lossy(&received)
    );
    let totals = server.stop();
    assert_eq!(
        (
            totals.closes(greeter::CloseReason::Denied),
            totals.greeted()
        ),
        (1, 0),
        "{totals}"
    );
}

/// Two listeners with `max-rate-per-ip = "1/h"`; `group` puts both in one rate group.
fn rated_pair(group: Option<&str>) -> String {
    let group = group.map_or_else(String::new, |name| format!("rate-group = \"{name}\"\n"));
    format!(
        "max-rate-per-ip = \"1/h\"\n[[listener]]\nport = 0\n{group}\n[[listener]]\nport = 0\n{group}"
    )
}

/// What a new client of `addr` is sent.
fn answer(addr: std::net::SocketAddr) -> Vec<u8> {
    read_to_eof(&mut connect(addr)).unwrap_or_default()
}

#[test]
fn each_listener_counts_its_own_sources_unless_they_share_a_rate_group() {
    let own = temp_file("own-rates.toml", rated_pair(None).as_bytes());
    let server = supervise_exactly(&["--config", own.arg()]);
    let (a, b) = (server.addrs[0], server.addrs[1]);
    assert_eq!(answer(a), DEFAULT_GREETING);
    assert_eq!(
        answer(b),
        DEFAULT_GREETING,
        "A's count refused B's first client"
    );
    assert_eq!(answer(a), b"", "the second within the hour is refused");
    drop(server);

    let shared = temp_file("shared-rates.toml", rated_pair(Some("loopback")).as_bytes());
    let server = supervise_exactly(&["--config", shared.arg()]);
    assert_eq!(answer(server.addrs[0]), DEFAULT_GREETING);
    assert_eq!(
        answer(server.addrs[1]),
        b"",
        "a group counts its sources together"
    );
}
