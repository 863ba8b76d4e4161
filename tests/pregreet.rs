//! Clients that speak first: `--greet-delay` holds the greeting, `--pregreet` decides
//! what a client that sends data meanwhile gets, and every `CLOSE` line says what the
//! peer sent (`input=`, `first=`), as `greeter_peer_input_total` counts it.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use greeter::CloseReason;
use util::*;

#[test]
fn a_silent_client_is_greeted_after_the_delay_and_held_meanwhile() {
    let mut server = spawn_server(&["--greet-delay", "300ms", "--log-connections"]);
    let started = Instant::now();
    let mut peer = connect(server.addr);
    server.wait_for_in_flight(1);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "greeted after {:?}",
        started.elapsed()
    );
    server.wait_for_log("CLOSE peer=");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("pregreeted=0", STEP_TIMEOUT);
    let log = server.stderr();
    let close = log
        .lines()
        .find(|line| line.contains("CLOSE peer="))
        .unwrap();
    assert!(
        close.contains(" bytes=38 ") && close.ends_with(" reason=greeted input=0 first=none"),
        "{log}"
    );
}

#[test]
fn a_pregreeter_is_greeted_anyway_by_default_and_logged() {
    let mut server = spawn_server(&["--greet-delay", "2s", "--log-connections"]);
    let mut peer = connect(server.addr);
    peer.write_all(b"EHLO bot.example\r\n").unwrap();
    // Its greeting waits for the rest of the delay, then comes whole.
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.wait_for_log(" first=other");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("pregreeted=1", STEP_TIMEOUT);
    let log = server.stderr();
    assert!(
        log.contains("PREGREET peer=127.0.0.1:")
            && log.contains(" input=18 first=other action=greet"),
        "{log}"
    );
    let close = log
        .lines()
        .find(|line| line.contains("CLOSE peer="))
        .unwrap();
    assert!(
        close.contains(" bytes=38 ") && close.ends_with(" input=18 first=other"),
        "{log}"
    );
}

#[test]
fn a_pregreeter_is_dropped_at_once_with_drop() {
    // The delay is long: the drop must not wait for it.
    let server = supervise(&["--greet-delay", "20s", "--pregreet", "drop"]);
    let started = Instant::now();
    let mut peer = connect(server.addr());
    peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_to_eof(&mut peer).unwrap_or_default(), b"");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A silent client beside it is held for its delay: not dropped, not greeted yet.
    let _silent = connect(server.addr());
    wait_until("the silent client to be held", || {
        let snapshot = server.snapshot();
        snapshot.totals.accepted == 2 && snapshot.held == 1
    });
    let totals = server.snapshot().totals;
    assert_eq!(totals.closes(CloseReason::Pregreet), 1, "{totals}");
    assert_eq!(totals.pregreeted, 1, "{totals}");
    assert_eq!(totals.greeted(), 0, "{totals}");
}

#[test]
fn what_a_peer_sends_first_is_classified_in_the_log_and_the_metrics() {
    let mut server = spawn_server(&[
        "--greet-delay",
        "20s",
        "--pregreet",
        "drop",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let tls_client_hello: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0];
    let sent: [(&[u8], &str); 6] = [
        (tls_client_hello, "tls"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "ssh"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", "proxy"),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", "proxy"),
        (b"HELO x\r\n", "other"),
    ];
    for (bytes, class) in sent {
        let mut peer = connect(server.addr);
        peer.write_all(bytes).unwrap();
        assert_eq!(read_to_eof(&mut peer).unwrap_or_default(), b"", "{class}");
        let line = format!(" input={} first={class}", bytes.len());
        server.wait_for_log(&line);
    }
    let (status, body) = http_get(metrics_addr(&server), "/metrics");
    assert_eq!(status, 200);
    let samples = samples(&body);
    for (class, count) in [
        ("tls", 1.0),
        ("http", 1.0),
        ("ssh", 1.0),
        ("proxy", 2.0),
        ("other", 1.0),
        ("none", 0.0),
    ] {
        let name = format!("greeter_peer_input_total{{first=\"{class}\"}}");
        assert_eq!(samples.get(&name), Some(&count), "{name}\n{body}");
    }
    assert_eq!(
        samples.get("greeter_pregreeters_total"),
        Some(&6.0),
        "{body}"
    );
    assert_eq!(
        samples.get("greeter_connections_closed_total{reason=\"pregreet\"}"),
        Some(&6.0),
        "{body}"
    );
    server.signal("TERM");
    server.assert_exits_cleanly_logging("pregreet=6 pregreeted=6", STEP_TIMEOUT);
}

#[test]
fn input_after_the_greeting_is_classified_too() {
    let mut server = spawn_server(&["--proxy-protocol", "--log-connections"]);
    let mut peer = connect(server.addr);
    // Behind the header, in the same segment: it is there when the greeting is out,
    // so the connection lingers and reads it (a header is not input).
    peer.write_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 17\r\nSSH-2.0-scanner\r\n")
        .unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    let log = server.wait_for_log("CLOSE peer=");
    assert!(log.contains(" reason=eof input=17 first=ssh"), "{log}");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("pregreeted=0", STEP_TIMEOUT);
}

#[test]
fn a_delay_must_be_shorter_than_the_write_timeout() {
    let (status, _, stderr) = run_binary(
        "greeter-server",
        &["--greet-delay", "30s", "--write-timeout", "30s"],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("greet-delay 30s is not shorter than write-timeout 30s"),
        "{stderr}"
    );
    let (status, _, stderr) = run_binary("greeter-server", &["--pregreet", "ban"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: greet, drop, tarpit]"),
        "{stderr}"
    );
}

#[test]
fn each_listener_has_its_own_delay_and_a_reload_changes_it() {
    let config = temp_file(
        "delays.toml",
        b"[[listener]]\nport = 0\ngreet-delay = \"20s\"\npregreet = \"drop\"\n\
          [[listener]]\nport = 0\n",
    );
    let server = supervise_exactly(&["--config", config.arg()]);
    let (delayed, plain) = (server.addrs[0], server.addrs[1]);
    let talk = |addr| {
        let mut peer = connect(addr);
        peer.write_all(b"QUIT\r\n").unwrap();
        // A dropped client may be gone already.
        let _ = peer.shutdown(std::net::Shutdown::Write);
        read_to_eof(&mut peer).unwrap_or_default()
    };
    assert_eq!(talk(delayed), b"", "dropped by the first listener");
    assert_eq!(talk(plain), DEFAULT_GREETING, "no delay on the second");

    std::fs::write(
        &config,
        "max-connections = 9000\n[[listener]]\nport = 0\n\
         [[listener]]\nport = 0\ngreet-delay = \"300ms\"\n",
    )
    .unwrap();
    server.requests.send(greeter::supervisor::Request::Reload);
    wait_until("the reload", || server.snapshot().max_connections == 9000);
    assert_eq!(talk(delayed), DEFAULT_GREETING, "no delay any more");
    let started = Instant::now();
    let mut silent = connect(plain);
    assert_eq!(read_to_eof(&mut silent).unwrap(), DEFAULT_GREETING);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Pregreet), 1, "{totals}");
}

#[test]
fn with_proxy_protocol_the_delay_follows_the_header() {
    let server = supervise(&[
        "--proxy-protocol",
        "--greet-delay",
        "20s",
        "--pregreet",
        "drop",
    ]);
    // Data behind the header, in the same segment: a pregreeter, named by the header.
    let mut talker = connect(server.addr());
    talker
        .write_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 17\r\nGET / HTTP/1.0\r\n\r\n")
        .unwrap();
    assert_eq!(read_to_eof(&mut talker).unwrap_or_default(), b"");
    // The header alone: the client waits for its greeting.
    let mut silent = connect(server.addr());
    silent
        .write_all(b"PROXY TCP4 192.0.2.8 192.0.2.1 40000 17\r\n")
        .unwrap();
    wait_until("the silent client to be delayed", || {
        let snapshot = server.snapshot();
        snapshot.totals.accepted == 2 && snapshot.held == 1
    });
    let totals = server.snapshot().totals;
    assert_eq!(totals.closes(CloseReason::Pregreet), 1, "{totals}");
    assert_eq!(
        totals.peer_input(greeter::peer_input::FirstInput::Http),
        1,
        "{totals}"
    );
}

#[test]
fn a_pregreeter_that_floods_during_its_delay_is_closed_as_flood_with_nothing_sent() {
    // As docs/operations.md defines it: past 256 KiB during the delay, reset at once,
    // reason=flood bytes=0 (a `flood` with bytes=0 is one that never got its greeting).
    let mut server = spawn_server(&["--greet-delay", "20s", "--log-connections"]);
    let mut peer = connect(server.addr);
    let chunk = vec![b'x'; 64 * 1024];
    let started = Instant::now();
    // The writes fail once the server has reset the connection.
    for _ in 0..16 {
        if peer.write_all(&chunk).is_err() {
            break;
        }
    }
    assert_eq!(read_to_eof(&mut peer).unwrap_or_default(), b"");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the delay"
    );
    let log = server.wait_for_log(" reason=flood ");
    let close = log
        .lines()
        .find(|line| line.contains("CLOSE peer="))
        .unwrap();
    assert!(
        close.contains(" bytes=0 ")
            && close.contains(" reason=flood input=")
            && close.ends_with(" first=other"),
        "{log}"
    );
    assert!(log.contains(" first=other action=greet"), "{log}");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("flood=1", STEP_TIMEOUT);
}

#[test]
fn silent_clients_are_delayed_under_their_own_cap_and_take_no_greeting_slot() {
    // Two greeting slots and three delay slots: a silent flood on the delayed
    // listener fills the delay slots, not the greeting slots, so the plain listener's
    // client is greeted at once; the flood's fourth client is closed at once.
    let (command, _) = ServerCommand::new(&[
        "--max-connections",
        "2",
        "--max-delayed",
        "3",
        "--drain-timeout",
        "100ms",
        "--log-connections",
    ])
    .config(
        "delay-cap.toml",
        "[[listener]]\nport = 0\ngreet-delay = \"20s\"\n[[listener]]\nport = 0\n",
    );
    let mut server = command.spawn();
    let addrs = server.listening_addrs(1);
    let (delayed, plain) = (addrs[0], addrs[1]);
    let _silent: Vec<_> = (0..3).map(|_| connect(delayed)).collect();
    server.wait_for_in_flight(3);
    let mut turned_away = connect(delayed);
    assert_eq!(read_to_eof(&mut turned_away).unwrap_or_default(), b"");
    let log = server.wait_for_log("reason=delay-full");
    let close = log
        .lines()
        .find(|line| line.contains("reason=delay-full"))
        .unwrap();
    assert!(
        close.contains(" bytes=0 ") && close.ends_with(" reason=delay-full input=0 first=none"),
        "{log}"
    );
    for _ in 0..3 {
        let mut greeted = connect(plain);
        assert_eq!(read_to_eof(&mut greeted).unwrap(), DEFAULT_GREETING);
    }
    server.wait_for_in_flight(3);
    server.signal("TERM");
    server.assert_exits_cleanly_logging(" delay_full=1", STEP_TIMEOUT);
}

#[test]
fn a_client_that_waited_out_its_delay_silently_is_greeted_at_once_next_time() {
    let server = supervise(&["--greet-delay", "300ms"]);
    // A pregreeter waits out its delay too (--pregreet greet), but is not passed.
    let mut talker = connect(server.addr());
    talker.write_all(b"EHLO bot.example\r\n").unwrap();
    talker.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut talker).unwrap(), DEFAULT_GREETING);
    // So its address is delayed again; silent this time, it is passed.
    let mut silent = connect(server.addr());
    assert_eq!(read_to_eof(&mut silent).unwrap(), DEFAULT_GREETING);
    // Passed: greeted at once, on the fast path, so never held.
    let mut again = connect(server.addr());
    assert_eq!(read_to_eof(&mut again).unwrap(), DEFAULT_GREETING);
    wait_until("three closes", || server.snapshot().totals.greeted() == 3);
    let totals = server.stop();
    let (lifetimes, _) = totals.held_lifetimes();
    assert_eq!(
        lifetimes.iter().sum::<u64>(),
        2,
        "only the first two were held: {totals}"
    );
    assert_eq!(totals.passed, 1, "{totals}");
    assert_eq!(totals.pregreeted, 1, "{totals}");
}

#[test]
fn a_start_up_warning_says_when_the_delayed_and_the_greeted_outnumber_the_fd_limit() {
    let mut server = ServerCommand::new(&[
        "--greet-delay",
        "1s",
        "--max-connections",
        "40",
        "--max-delayed",
        "30",
    ])
    .fd_limit(64)
    .spawn();
    server.wait_for_log(
        "fd limit: 70 connections (workers 1 x (max-connections 40 + max-delayed 30)) \
         may be held, above the open-file limit 64: accepting pauses",
    );
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0", STEP_TIMEOUT);
}
