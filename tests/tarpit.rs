//! `--tarpit`: a listener that traps its clients instead of greeting them, each
//! dripped a line (or a few bytes of the greeting) every `--drip-interval`, held
//! outside `--max-connections` under `--max-trapped` until it closes, resets or
//! reaches `--trap-timeout`, and closed at once by a drain. Every test drives the
//! real server through sockets, with a short interval, and waits on state.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::*;

/// The `CLOSE` line of the one connection a log shows, once it is there.
#[track_caller]
fn close_line(server: &ServerProcess) -> String {
    nth_line(server, "CLOSE peer=", 1)
}

/// Reads exactly `len` bytes (within the step timeout).
#[track_caller]
fn read_exactly(peer: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    peer.read_exact(&mut bytes).expect("the drips");
    bytes
}

/// Asserts that `bytes` are whole lines of `length` bytes: printable, ending in CRLF,
/// none an SSH identification line.
#[track_caller]
fn assert_lines(bytes: &[u8], length: usize) {
    assert_eq!(bytes.len() % length, 0, "{bytes:?}");
    for line in bytes.chunks(length) {
        assert!(line.ends_with(b"\r\n"), "{line:?}");
        let text = &line[..length - 2];
        assert!(
            text.iter().all(|byte| (0x20..=0x7e).contains(byte)),
            "{line:?}"
        );
        assert!(!line.starts_with(b"SSH-"), "{line:?}");
    }
}

/// Asserts that `peer`, waiting in the backlog while the tarpit is full, is sent
/// nothing (neither trapped nor closed) for `wait`: several intervals, in which a
/// trapped client would get a drip each.
fn assert_sent_nothing_within(peer: &mut TcpStream, wait: Duration) {
    peer.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let waited = peer
        .read(&mut byte)
        .expect_err("nothing while the tarpit is full");
    assert!(
        matches!(
            waited.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{waited}"
    );
}

#[test]
fn an_ssh_client_stays_trapped_dripped_a_line_each_interval_until_it_closes() {
    let server = spawn_server(&["--tarpit", "--drip-interval", "100ms", "--log-connections"]);
    let started = Instant::now();
    let mut peer = connect(server.addr);
    // A real SSH client speaks at once: that does not end its trap.
    peer.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap();
    let trap = server.wait_for_log("TRAP peer=");
    // Named by its name, else by its address as configured.
    assert!(
        trap.contains(" listener=127.0.0.1:0 why=listener"),
        "{trap}"
    );
    // No greeting first (no --message): three lines, one an interval.
    let lines = read_exactly(&mut peer, 3 * 32);
    assert_lines(&lines, 32);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "three drips after {:?}",
        started.elapsed()
    );
    server.wait_for_in_flight(1);
    drop(peer);
    let close = close_line(&server);
    assert_eq!(field(&close, "reason"), "trap-eof", "{close}");
    assert_eq!(field(&close, "input"), "21", "{close}");
    assert!(close.ends_with(" first=ssh"), "{close}");
    assert!(
        field(&close, "bytes").parse::<u64>().unwrap() >= 96,
        "{close}"
    );
    assert!(
        field(&close, "ms").parse::<u64>().unwrap() >= 300,
        "{close}"
    );
    server.wait_for_in_flight(0);
}

#[test]
fn a_set_message_comes_first_then_the_lines() {
    let server = spawn_server(&[
        "--tarpit",
        "--message",
        "220 slow.example ESMTP\r\n",
        "--drip-interval",
        "100ms",
        "--drip-line-length",
        "10",
    ]);
    let mut peer = connect(server.addr);
    let lead = read_exactly(&mut peer, 24);
    assert_eq!(lead, b"220 slow.example ESMTP\r\n");
    assert_lines(&read_exactly(&mut peer, 2 * 10), 10);
}

#[test]
fn a_lines_tarpit_whose_greeting_starts_an_identification_is_refused() {
    let (status, stdout, stderr) = run_binary(
        "greeter-server",
        &["--port", "0", "--tarpit", "--message", "SSH-2.0-trap\r\n"],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("starts with SSH-"), "{stderr}");
    // A later line of it would end the trap as well, and a greeting without its line
    // break would be continued by the first line dripped (`SSH` + `-...`): both
    // refused, whether given as --message or read from a file.
    for (message, says) in [
        (
            "hi\r\nSSH-2.0-OpenSSH_9.6\r\n",
            "a line that starts with SSH-",
        ),
        ("SSH", "does not end with a line break"),
        ("220 banner", "does not end with a line break"),
    ] {
        let (status, _, stderr) = run_binary(
            "greeter-server",
            &["--port", "0", "--tarpit", "--message", message],
        );
        assert_eq!(status.code(), Some(2), "{message:?}: {stderr}");
        assert!(stderr.contains(says), "{message:?}: {stderr}");
        let file = temp_file("lead.txt", message.as_bytes());
        let (status, _, stderr) = run_binary(
            "greeter-server",
            &[
                "--port",
                "0",
                "--tarpit",
                "--message-file",
                file.arg(),
                "--check-config",
            ],
        );
        assert_ne!(status.code(), Some(0), "{message:?} in a file: {stderr}");
        assert!(stderr.contains(says), "{message:?} in a file: {stderr}");
    }
    // Dripped as a greeting, it is just a slow banner.
    let (status, _, stderr) = run_binary(
        "greeter-server",
        &[
            "--port",
            "0",
            "--tarpit",
            "--drip",
            "greeting",
            "--message",
            "SSH-2.0-trap\r\n",
            "--check-config",
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn a_greet_delay_on_a_tarpit_listener_is_warned_about_as_unused() {
    let (status, _, stderr) = run_binary(
        "greeter-server",
        &[
            "--port",
            "0",
            "--tarpit",
            "--greet-delay",
            "2s",
            "--check-config",
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: greet-delay 2s on a --tarpit listener is not used: its clients are \
             trapped at once"
        ),
        "{stderr}"
    );
    let (_, _, stderr) = run_binary(
        "greeter-server",
        &["--port", "0", "--greet-delay", "2s", "--check-config"],
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_dripped_greeting_comes_a_few_bytes_an_interval_then_closes_as_ever() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip",
        "greeting",
        "--drip-bytes",
        "5",
        "--drip-interval",
        "100ms",
        "--message",
        "220 hello there\r\n",
        "--log-connections",
    ]);
    let started = Instant::now();
    let mut peer = connect(server.addr);
    let mut first = [0u8; 5];
    peer.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"220 h");
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"ello there\r\n");
    // 17 bytes, 5 at a time: 4 drips, 3 intervals apart.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "all of it after {:?}",
        started.elapsed()
    );
    let close = close_line(&server);
    assert_eq!(field(&close, "reason"), "greeted", "{close}");
    assert_eq!(field(&close, "bytes"), "17", "{close}");

    // One that spoke lingers after its greeting as any other; its time still
    // counts from its accept.
    let mut speaker = connect(server.addr);
    speaker.write_all(b"EHLO early.example\r\n").unwrap();
    let mut all = Vec::new();
    speaker.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"220 hello there\r\n");
    drop(speaker);
    let log = server.wait_for_log("reason=eof");
    let close = log
        .lines()
        .find(|line| line.contains("reason=eof"))
        .unwrap();
    let ms: u64 = field(close, "ms").parse().unwrap();
    assert!((300..60_000).contains(&ms), "{close}");
    assert!(close.ends_with(" input=20 first=other"), "{close}");
}

#[test]
fn a_trap_ends_at_its_timeout_and_on_a_reset() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--trap-timeout",
        "300ms",
        "--log-connections",
    ]);
    let mut peer = connect(server.addr);
    let started = Instant::now();
    let mut received = Vec::new();
    // The server resets a trap that timed out (its unsent drips are not wanted).
    let _ = peer.read_to_end(&mut received);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_lines(&received, 32);
    let close = close_line(&server);
    assert_eq!(field(&close, "reason"), "trap-timeout", "{close}");

    let reset = socket2::Socket::from(connect(server.addr));
    server.wait_for_in_flight(1);
    reset.set_linger(Some(Duration::ZERO)).unwrap();
    drop(reset);
    server.wait_for_log("reason=trap-reset");
    server.wait_for_in_flight(0);
}

#[test]
fn trapped_clients_are_bounded_apart_from_the_connection_limit() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--max-connections",
        "1",
        "--max-trapped",
        "2",
        "--log-connections",
    ]);
    // Two trapped: past --max-connections 1, since traps do not count there.
    let mut trapped = vec![connect(server.addr), connect(server.addr)];
    for peer in &mut trapped {
        assert_lines(&read_exactly(peer, 32), 32);
    }
    server.wait_for_in_flight(2);
    // The third waits in the backlog, neither trapped nor closed, while the
    // tarpit is full (five intervals without a drip: a trapped one gets one each).
    let mut third = connect(server.addr);
    assert_sent_nothing_within(&mut third, Duration::from_millis(500));
    // One leaves: the third is accepted and trapped.
    trapped.pop();
    third.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    assert_lines(&read_exactly(&mut third, 32), 32);
    server.wait_for_in_flight(2);
    assert!(
        !server.stderr().contains("trap-full"),
        "{}",
        server.stderr()
    );
}

#[test]
fn max_trapped_bounds_the_whole_server_not_each_worker() {
    let server = spawn_server(&[
        "--tarpit",
        "--workers",
        "2",
        "--drip-interval",
        "100ms",
        "--max-trapped",
        "2",
        "--log-connections",
    ]);
    let mut trapped = vec![connect(server.addr), connect(server.addr)];
    for peer in &mut trapped {
        assert_lines(&read_exactly(peer, 32), 32);
    }
    // More clients than either worker would take for itself: none is trapped while
    // the server holds --max-trapped (ten intervals without a drip; a trapped one
    // gets one each), whichever worker the arrivals wake.
    let mut waiting: Vec<TcpStream> = (0..4).map(|_| connect(server.addr)).collect();
    for peer in &mut waiting {
        assert_sent_nothing_within(peer, Duration::from_millis(250));
    }
    assert_eq!(
        server.stderr().matches("TRAP ").count(),
        2,
        "{}",
        server.stderr()
    );
    // One leaves: one waiting client is trapped in its place, by either worker.
    trapped.pop();
    let mut byte = [0u8; 1];
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    let mut dripped = 0;
    while dripped == 0 && std::time::Instant::now() < deadline {
        for peer in &mut waiting {
            if matches!(peer.read(&mut byte), Ok(1)) {
                dripped += 1;
            }
        }
    }
    assert_eq!(dripped, 1, "{}", server.stderr());
}

#[test]
fn one_address_cannot_fill_the_tarpit() {
    let server = spawn_server(&[
        "--tarpit",
        "--host",
        "0.0.0.0",
        "--drip-interval",
        "100ms",
        "--max-trapped-per-ip",
        "1",
        "--log-connections",
    ]);
    let port = server.addr.port();
    let addr = |ip: &str| format!("{ip}:{port}").parse().unwrap();
    let mut first = connect_from("127.0.0.1", addr("127.0.0.1"));
    assert_lines(&read_exactly(&mut first, 32), 32);
    let mut second = connect_from("127.0.0.1", addr("127.0.0.1"));
    assert_eq!(read_to_eof(&mut second).unwrap(), b"");
    assert!(close_line(&server).contains("reason=trap-full"));
    let mut other = connect_from("127.0.0.2", addr("127.0.0.1"));
    assert_lines(&read_exactly(&mut other, 32), 32);
}

#[test]
fn a_stop_closes_trapped_clients_at_once_with_reason_drain() {
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--drain-timeout",
        "60s",
        "--log-connections",
    ]);
    let mut peers = vec![connect(server.addr), connect(server.addr)];
    for peer in &mut peers {
        assert_lines(&read_exactly(peer, 32), 32);
    }
    let started = Instant::now();
    server.signal("TERM");
    server.assert_exits_cleanly_logging(" trapped=2 ", STEP_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain waited for traps: {:?}",
        started.elapsed()
    );
    let log = server.stderr();
    let drained = log
        .lines()
        .filter(|line| line.contains("CLOSE peer=") && line.contains(" reason=drain "))
        .count();
    assert_eq!(drained, 2, "{log}");
}

#[test]
fn a_client_that_does_not_read_stops_the_drips_until_it_does() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "10ms",
        "--drip-line-length",
        "255",
        "--send-buffer",
        "4096",
        "--metrics",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let metrics = metrics_addr(&server);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut peer: TcpStream = socket.into();
    peer.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let dripped = || {
        let (_, body) = http_get(metrics, "/metrics");
        samples(&body)[r#"greeter_bytes_dripped_total{country="unknown"}"#]
    };
    // A second client that reads is the clock: a line to it each interval.
    let mut clock = connect(server.addr);
    let mut clock_read = 0;
    let mut lines_to_the_clock = |lines: usize| {
        clock_read += read_exactly(&mut clock, lines * 255).len();
        clock_read as f64
    };
    // The buffers fill; then the count grows by the clock's lines alone (the other
    // client's drips are skipped, not sent): over five of its lines, at most what it
    // read and a line sent between two looks, where the other's would add five more.
    let mut last = 0.0;
    wait_for(
        STEP_TIMEOUT,
        || "the drips to stop".to_owned(),
        || {
            let (before, clock_before) = (dripped(), lines_to_the_clock(0));
            let clock_after = lines_to_the_clock(5);
            last = dripped();
            let others = last - before - (clock_after - clock_before);
            (before > 0.0 && others <= 2.0 * 255.0).then_some(())
        },
    );
    let (_, body) = http_get(metrics, "/metrics");
    assert_eq!(
        samples(&body)[r#"greeter_trapped_connections{country="unknown"}"#],
        2.0,
        "{body}"
    );
    // Read what waits: writable again, the drips go on.
    let mut buffer = vec![0u8; 1 << 20];
    // More than both buffers (4 KiB each, which the kernel doubles) held at the
    // stall: its own drips came again.
    let mut read = 0;
    while read < 32 * 1024 {
        read += peer.read(&mut buffer).expect("its drips go on");
    }
    assert!(dripped() > last);
}

#[test]
fn a_reload_turns_the_tarpit_on_and_off_for_new_clients_only() {
    let (command, path) = ServerCommand::new(&[]).config(
        "tarpit-reload.toml",
        "port = 0\nmessage = \"hello\\r\\n\"\ndrip-interval = \"100ms\"\nlog-connections = true\n",
    );
    let server = command.spawn();
    let mut greeted = connect(server.addr);
    assert_eq!(read_to_eof(&mut greeted).unwrap(), b"hello\r\n");

    let rewrite = |toml: &str| {
        let new = path.with_extension("new");
        std::fs::write(&new, toml).unwrap();
        std::fs::rename(&new, &path).unwrap();
    };
    rewrite(
        "port = 0\nmessage = \"hello\\r\\n\"\ndrip-interval = \"100ms\"\nlog-connections = true\n\
         tarpit = true\ndrip = \"greeting\"\ndrip-bytes = 2\n",
    );
    server.signal("HUP");
    server.wait_for_log("reload: configuration reloaded");
    // Trapped now: the greeting two bytes an interval.
    let mut trapped = connect(server.addr);
    assert_eq!(read_exactly(&mut trapped, 2), b"he");
    server.wait_for_log("TRAP peer=");

    // Off again: a new client is greeted at once; the trapped one keeps its drip.
    let reloads = server
        .stderr()
        .matches("reload: configuration reloaded")
        .count();
    rewrite(
        "port = 0\nmessage = \"hello\\r\\n\"\ndrip-interval = \"100ms\"\nlog-connections = true\n",
    );
    server.signal("HUP");
    wait_until("the second reload", || {
        server
            .stderr()
            .matches("reload: configuration reloaded")
            .count()
            > reloads
    });
    let mut greeted = connect(server.addr);
    assert_eq!(read_to_eof(&mut greeted).unwrap(), b"hello\r\n");
    let mut rest = Vec::new();
    trapped.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"llo\r\n");
}

#[test]
fn a_start_up_warning_counts_the_trapped_against_the_fd_limit() {
    let mut server = ServerCommand::new(&[
        "--tarpit",
        "--workers",
        "2",
        "--max-connections",
        "40",
        "--max-trapped",
        "30",
    ])
    .fd_limit(100)
    .spawn();
    // --max-trapped once: it is the whole server's, not each worker's.
    server.wait_for_log(
        "fd limit: 110 connections (workers 2 x (max-connections 40) + max-trapped 30) \
         may be held, above the open-file limit 100: accepting pauses",
    );
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0", STEP_TIMEOUT);
}

#[test]
fn a_drip_interval_below_the_timers_resolution_is_refused() {
    for interval in ["1ns", "1ms", "9ms"] {
        let (status, _, stderr) = run_binary(
            "greeter-server",
            &["--port", "0", "--tarpit", "--drip-interval", interval],
        );
        assert_eq!(status.code(), Some(2), "{interval}: {stderr}");
        assert!(stderr.contains("shorter than 10ms"), "{interval}: {stderr}");
    }
    let (status, _, stderr) = run_binary(
        "greeter-server",
        &[
            "--port",
            "0",
            "--tarpit",
            "--drip-interval",
            "10ms",
            "--check-config",
        ],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn each_trap_s_duration_is_observed_at_its_close_in_a_histogram_up_to_a_day() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--trap-timeout",
        "1500ms",
        "--log-connections",
        "--metrics",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let metrics = metrics_addr(&server);
    // One leaves at once (trap-eof, under a second), one waits out its timeout.
    let quick = connect(server.addr);
    server.wait_for_log("TRAP peer=");
    drop(quick);
    server.wait_for_log("reason=trap-eof");
    let mut patient = connect(server.addr);
    let _ = patient.read_to_end(&mut Vec::new());
    let log = server.wait_for_log("reason=trap-timeout");
    let ms: Vec<f64> = log
        .lines()
        .filter(|line| line.contains("CLOSE peer="))
        .map(|line| field(line, "ms").parse().unwrap())
        .collect();
    assert_eq!(ms.len(), 2, "{log}");
    assert!(ms[0] < 1000.0 && ms[1] >= 1500.0, "{log}");
    let scraped = std::cell::RefCell::new(Default::default());
    wait_for(
        STEP_TIMEOUT,
        || format!("both traps observed: {:?}", scraped.borrow()),
        || {
            *scraped.borrow_mut() = samples(&http_get(metrics, "/metrics").1);
            (scraped.borrow().get("greeter_trap_duration_seconds_count") == Some(&2.0))
                .then_some(())
        },
    );
    let scraped: std::collections::BTreeMap<String, f64> = scraped.into_inner();
    let bucket =
        |le: &str| scraped[&format!("greeter_trap_duration_seconds_bucket{{le=\"{le}\"}}")];
    assert_eq!(bucket("1.0"), 1.0, "{scraped:?}");
    assert_eq!(bucket("10.0"), 2.0, "{scraped:?}");
    assert_eq!(bucket("86400.0"), 2.0, "{scraped:?}");
    assert_eq!(bucket("+Inf"), 2.0, "{scraped:?}");
    // The sum is the CLOSE lines' ms=, by the wall clock.
    let sum = scraped["greeter_trap_duration_seconds_sum"];
    assert!(
        (sum - (ms[0] + ms[1]) / 1000.0).abs() < 1e-6,
        "{sum} against {ms:?}"
    );
    // A trap is not a held greeting: the held-lifetime histogram leaves it out.
    assert_eq!(scraped["greeter_held_connection_seconds_count"], 0.0);
    // The counter stays as it was beside it.
    assert!(
        scraped[r#"greeter_trapped_seconds_total{country="unknown"}"#] > 0.0,
        "{scraped:?}"
    );
}

#[test]
fn a_stop_closes_traps_once_the_greetings_in_flight_are_done() {
    let mut server = spawn_server(&[
        "--tarpit",
        "--proxy-protocol",
        "--proxy-timeout",
        "60s",
        "--drip-interval",
        "100ms",
        "--drain-timeout",
        "60s",
        "--log-connections",
    ]);
    // One client trapped (its header came), one still in flight (no header yet).
    let mut trapped = connect(server.addr);
    trapped
        .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1111 2222\r\n")
        .unwrap();
    assert_lines(&read_exactly(&mut trapped, 32), 32);
    server.wait_for_log("TRAP peer=192.0.2.1");
    // Half a header: accepted (a PROXY listener defers accepting until data comes),
    // then held waiting for the rest.
    let mut in_flight = connect(server.addr);
    in_flight.write_all(b"PROXY TCP4 ").unwrap();
    wait_until("the half header's connection is held", || {
        server.signal("USR1");
        server.stderr().contains("totals in_flight=2 ")
    });
    server.signal("TERM");
    server.wait_for_log("waiting up to 1m for 1 in-flight greetings");
    // The trap goes on while a connection is still in flight: more lines come.
    assert_lines(&read_exactly(&mut trapped, 2 * 32), 32);
    assert!(
        !server.stderr().contains("reason=drain"),
        "{}",
        server.stderr()
    );
    // Once its header comes and it is done (trapped too, then the last), every trap
    // ends at once, reason drain.
    in_flight
        .write_all(b"192.0.2.2 127.0.0.1 1111 2222\r\n")
        .unwrap();
    server.assert_exits_cleanly_logging(" trapped=2 ", STEP_TIMEOUT);
    let log = server.stderr();
    let drained = log
        .lines()
        .filter(|line| line.contains("CLOSE peer=") && line.contains(" reason=drain "))
        .count();
    assert_eq!(drained, 2, "{log}");
}

/// The `TRAP` line of a log, once it is there.
#[track_caller]
fn trap_line(server: &ServerProcess) -> String {
    nth_line(server, "TRAP peer=", 1)
}

#[test]
fn a_denied_client_is_trapped_with_deny_action_tarpit_and_closed_when_full() {
    let server = spawn_server(&[
        "--message",
        "hello\r\n",
        "--deny",
        "127.0.0.1",
        "--deny-action",
        "tarpit",
        "--drip-interval",
        "100ms",
        "--max-trapped-per-ip",
        "1",
        "--log-connections",
    ]);
    // An ordinary listener: the lines alone, never its greeting.
    let mut denied = connect(server.addr);
    assert_lines(&read_exactly(&mut denied, 64), 32);
    assert_eq!(field(&trap_line(&server), "why"), "deny");
    // The tarpit full for it: the policy's close, never the greeting.
    let mut second = connect(server.addr);
    assert_eq!(read_to_eof(&mut second).unwrap(), b"");
    assert!(close_line(&server).contains("reason=trap-full"));
}

#[test]
fn a_client_over_its_rate_is_trapped_with_rate_action_tarpit() {
    let server = spawn_server(&[
        "--message",
        "hello\r\n",
        "--max-rate-per-ip",
        "1/m",
        "--rate-action",
        "tarpit",
        "--drip",
        "greeting",
        "--drip-interval",
        "100ms",
        "--log-connections",
    ]);
    let mut first = connect(server.addr);
    assert_eq!(read_to_eof(&mut first).unwrap(), b"hello\r\n");
    // Over its rate: with --drip greeting, the greeting a byte an interval.
    let mut second = connect(server.addr);
    assert_eq!(read_exactly(&mut second, 2), b"he");
    assert_eq!(field(&trap_line(&server), "why"), "rate");
    let mut rest = Vec::new();
    second.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"llo\r\n");
}

#[test]
fn a_pregreeter_is_trapped_with_pregreet_tarpit() {
    let server = spawn_server(&[
        "--message",
        "hello\r\n",
        "--greet-delay",
        "5s",
        "--pregreet",
        "tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
    ]);
    let mut speaker = connect(server.addr);
    speaker.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap();
    // Trapped at once, long before its delay is over: the lines alone.
    let started = Instant::now();
    assert_lines(&read_exactly(&mut speaker, 64), 32);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(field(&trap_line(&server), "why"), "pregreet");
    drop(speaker);
    let close = close_line(&server);
    assert_eq!(field(&close, "reason"), "trap-eof", "{close}");
    assert!(server
        .wait_for_log("PREGREET peer=")
        .contains("action=tarpit"));
}

#[test]
fn an_allowed_address_is_greeted_on_a_tarpit_listener() {
    let server = spawn_server(&[
        "--tarpit",
        "--host",
        "0.0.0.0",
        "--message",
        "hello\r\n",
        "--allow",
        "127.0.0.1",
        "--deny",
        "127.0.0.0/8",
        "--deny-action",
        "tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
    ]);
    let port = server.addr.port();
    let addr = |ip: &str| format!("{ip}:{port}").parse().unwrap();
    let mut allowed = connect_from("127.0.0.1", addr("127.0.0.1"));
    assert_eq!(read_exactly(&mut allowed, 7), b"hello\r\n");
    // Greeted and closed (a trap would drip on, and never log this).
    let close = close_line(&server);
    assert_eq!(field(&close, "reason"), "greeted", "{close}");
    assert_eq!(read_to_eof(&mut allowed).unwrap(), b"");
    // Denied, on the tarpit listener: its greeting first, then the lines.
    let mut denied = connect_from("127.0.0.2", addr("127.0.0.1"));
    assert_eq!(read_exactly(&mut denied, 7), b"hello\r\n");
    assert_lines(&read_exactly(&mut denied, 32), 32);
    assert_eq!(field(&trap_line(&server), "why"), "deny");
}
