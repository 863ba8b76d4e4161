//! Several listeners: repeated --host, host names, IPv4 and IPv6, dual-stack, and
//! several sockets from systemd. These drive the real binary; all traffic is on
//! loopback, whatever address the server listens on.

mod util;

use std::net::{SocketAddr, ToSocketAddrs};

use util::*;

/// Loopback addresses to connect to for a listener on `addr` (a wildcard is reached
/// through loopback).
fn reach(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            "127.0.0.1".parse().unwrap()
        } else {
            "::1".parse().unwrap()
        });
    }
    target
}

#[track_caller]
fn assert_greets(addr: SocketAddr) {
    let mut peer = connect(addr);
    assert_eq!(
        read_to_eof(&mut peer).unwrap(),
        DEFAULT_GREETING,
        "from {addr}"
    );
}

#[test]
fn three_listeners_on_ipv4_and_ipv6_each_greet_and_are_announced_in_order() {
    let mut server = spawn_server(&[
        "--host",
        "127.0.0.1",
        "--host",
        "::1",
        "--host",
        "127.0.0.2",
    ]);
    let addrs = server.listening_addrs(2);
    let port = addrs[0].port();
    let expected: Vec<SocketAddr> = ["127.0.0.1", "[::1]", "127.0.0.2"]
        .iter()
        .map(|host| format!("{host}:{port}").parse().unwrap())
        .collect();
    assert_eq!(
        addrs, expected,
        "one line per listener, in order, one port for all"
    );
    for addr in &addrs {
        assert_greets(*addr);
    }
    server.signal("TERM");
    server.assert_exits_cleanly_logging("accepted=3 greeted=3", STEP_TIMEOUT);
    assert_eq!(
        server.other_stdout_lines(),
        Vec::<String>::new(),
        "nothing else on stdout"
    );
}

#[test]
fn localhost_is_listened_on_at_every_address_it_resolves_to() {
    let expected: Vec<SocketAddr> = ("localhost", 0).to_socket_addrs().unwrap().collect();
    let server = spawn_server(&["--host", "localhost"]);
    let addrs = server.listening_addrs(expected.len() - 1);
    for (listened, resolved) in addrs.iter().zip(&expected) {
        assert_eq!(listened.ip(), resolved.ip());
        assert_greets(*listened);
    }
}

#[test]
fn a_name_that_does_not_resolve_is_a_start_up_error() {
    let stderr = assert_startup_error(
        &["--port", "0", "--host", "no-such-host.invalid"],
        "greeter-server: cannot resolve --host no-such-host.invalid: ",
    );
    assert!(
        stderr.contains("(give a name this host can resolve, or an address)"),
        "{stderr}"
    );
}

#[test]
fn ipv6_wildcard_alone_is_dual_stack() {
    let server = spawn_server(&["--host", "::"]);
    let port = server.addr.port();
    assert_greets(format!("[::1]:{port}").parse().unwrap());
    // Reached over IPv4 too, whatever net.ipv6.bindv6only says.
    assert_greets(format!("127.0.0.1:{port}").parse().unwrap());
}

#[test]
fn ipv4_and_ipv6_wildcards_bind_together_without_a_conflict() {
    let server = spawn_server(&["--host", "0.0.0.0", "--host", "::"]);
    let addrs = server.listening_addrs(1);
    assert_eq!(addrs[0].ip().to_string(), "0.0.0.0");
    assert_eq!(addrs[1].ip().to_string(), "::");
    for addr in addrs {
        assert_greets(reach(addr));
    }
}

#[test]
fn several_hosts_on_port_0_get_a_port_that_is_free_on_every_one() {
    // Take about a fifth of the ephemeral ports on ::1. Linux then gives `bind` on
    // 127.0.0.1 port 0 a port already taken on ::1 most of the time (it prefers ports
    // bound elsewhere), so only a port asked for on every address at once serves both.
    greeter::fdlimit::raise_to_hard_limit().expect("raise the fd limit");
    let _taken: Vec<std::net::TcpListener> = (0..6000)
        .map(|_| std::net::TcpListener::bind("[::1]:0").expect("bind a port on ::1"))
        .collect();
    let hosts: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    for _ in 0..100 {
        let listeners =
            greeter::listener::listen_all(&hosts, 16, None).unwrap_or_else(|err| panic!("{err}"));
        let ports: Vec<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports[0], ports[1]);
    }
}

#[test]
fn hosts_that_overlap_each_other_are_named_in_the_error() {
    assert_startup_error(
        &["--port", "0", "--host", "0.0.0.0", "--host", "127.0.0.1"],
        "greeter-server: cannot listen on 127.0.0.1:0: it overlaps 0.0.0.0:0, which this server listens on too",
    );
    assert_startup_error(
        &[
            "--port",
            "0",
            "--host",
            "::",
            "--host",
            "::1",
            "--host",
            "127.0.0.1",
        ],
        "greeter-server: cannot listen on [::1]:0: it overlaps [::]:0",
    );
}

#[test]
fn addresses_that_cannot_be_bound_as_written_get_a_hint() {
    let line = assert_startup_error(
        &["--port", "0", "--host", "fe80::1"],
        "greeter-server: cannot listen on [fe80::1]:0: invalid argument",
    );
    assert!(line.contains("add %IFACE"), "{line}");
    let line = assert_startup_error(
        &["--port", "0", "--host", "::ffff:127.0.0.1"],
        "greeter-server: cannot listen on [::ffff:127.0.0.1]:0: invalid argument",
    );
    assert!(line.contains("give --host its IPv4 form"), "{line}");
}
