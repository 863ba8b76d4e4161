//! Faults around the server process: descriptor exhaustion, signals and draining,
//! and errors at start-up. These drive the real `greeter-server` binary.

mod util;

use std::net::TcpListener;

use std::time::Duration;

use util::*;

#[test]
fn accept_survives_fd_exhaustion_without_spinning_and_serves_the_queue() {
    let greeting = large_greeting(4 * 1024 * 1024);
    // 16 descriptors: stdio, epoll, listener, waker and the signal pipe leave room for
    // about eight held connections.
    let server = ServerCommand::new(&[])
        .greeting("fd-greeting", &greeting)
        .fd_limit(16)
        .spawn();
    server.wait_for_log("fd limit: soft=16 hard=16");

    // Twenty peers that do not read: the greeting cannot finish, so every accepted one
    // holds a descriptor and the rest meet EMFILE.
    let peers: Vec<_> = (0..20).map(|_| connect(server.addr)).collect();
    let log = server.wait_for_log("accept paused");
    assert!(log.contains("too many open files"), "{log}");

    // Paused, the server must stay near idle instead of retrying in a tight loop.
    server.assert_near_idle_for_a_second();

    // Now everybody reads: held peers finish and free descriptors, and the queued ones
    // are accepted although no new connection arrives.
    assert_each_peer_receives(peers, &greeting);
    let log = server.wait_for_log("accept resumed");
    assert_eq!(
        log.matches("accept paused").count(),
        1,
        "one warning per episode:\n{log}"
    );
}

#[test]
fn sigterm_drains_in_flight_greetings_then_exits_zero() {
    // Far larger than what the socket buffers of a peer that reads nothing can take.
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut server = ServerCommand::new(&[])
        .greeting("drain-greeting", &greeting)
        .spawn();
    let peers: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    server.wait_for_in_flight(3);

    server.signal("TERM");
    server.wait_for_log("shutdown: stopped accepting; waiting up to 10s for 3 in-flight");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "a draining server accepts no new connection"
    );

    assert_each_peer_receives(peers, &greeting);
    server.assert_exits_cleanly_logging(
        "totals in_flight=0 accepted=3 greeted=3 closed_early=0",
        STEP_TIMEOUT,
    );
}

#[test]
fn drain_timeout_cuts_off_a_peer_that_never_reads() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let mut server = ServerCommand::new(&["--drain-timeout", "300ms"])
        .greeting("drain-timeout-greeting", &greeting)
        .spawn();
    let _stalled = connect(server.addr);
    server.wait_for_in_flight(1);
    server.signal("TERM");
    server.assert_exits_cleanly_logging(
        "accepted=1 greeted=0 closed_early=1 reset=0 timeout=0 drain=1",
        Duration::from_secs(5),
    );
}

#[test]
fn sigint_with_nothing_in_flight_exits_zero_at_once() {
    let mut server = spawn_server(&[]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.signal("INT");
    server.assert_exits_cleanly_logging(
        "totals in_flight=0 accepted=1 greeted=1",
        Duration::from_secs(5),
    );
}

#[test]
fn sigusr1_logs_totals_and_keeps_serving() {
    let server = spawn_server(&[]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.signal("USR1");
    server.wait_for_log("totals in_flight=0 accepted=1 greeted=1");
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn port_in_use_is_a_one_line_error_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_startup_error(
        &["--port", &port],
        &format!("greeter-server: cannot listen on 127.0.0.1:{port}: address already in use"),
    );
}

#[test]
fn missing_greeting_file_is_a_one_line_error_and_exit_1() {
    assert_startup_error(
        &["--port", "0", "--message-file", "/nonexistent/greeting.txt"],
        "greeter-server: cannot read greeting file /nonexistent/greeting.txt: \
         no such file or directory",
    );
}

#[test]
fn bad_flags_are_usage_errors_with_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--port", "99999"],
        &["--write-timeout", "soon"],
        &["--max-connections", "0"],
        &["--message", "a", "--message-file", "b"],
    ] {
        let (status, _, stderr) = run_binary("greeter-server", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn mistakes_new_users_make_are_usage_errors_that_say_what_to_write() {
    for (args, says) in [
        (&["--max-connections", "-1"][..], "-1 is not in 1..="),
        (&["--port", "-1"], "-1 is not in 0..=65535"),
        (
            &["--metrics", "127.0.0.1"],
            "127.0.0.1 has no port: write ADDRESS:PORT",
        ),
        (
            &["--metrics", "localhost"],
            "localhost has no port: write HOST:PORT",
        ),
    ] {
        let (status, stdout, stderr) = run_binary("greeter-server", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn an_empty_message_is_refused_in_one_greeter_line() {
    for (args, says) in [
        (
            &["--message", ""][..],
            "greeter-server: cannot use --message: the greeting is empty (give a non-empty greeting)\n",
        ),
        (
            &["--deny-message=", "--check-config"],
            "greeter-server: cannot use --deny-message: the deny message is empty (give a text, or leave it out to send nothing)\n",
        ),
    ] {
        let (status, stdout, stderr) = run_binary("greeter-server", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert_eq!(stderr, says, "{args:?}");
    }
}

#[test]
fn metrics_on_a_host_name_is_served() {
    let server = spawn_server(&["--metrics", "localhost:0"]);
    let metrics = metrics_addr(&server);
    assert!(metrics.ip().is_loopback(), "{metrics}");
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_owned()));
}

#[test]
fn the_serving_line_gives_the_backlog_the_kernel_grants() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let asked = somaxconn + 1;
    let server = spawn_server(&["--backlog", &asked.to_string()]);
    let log = server.wait_for_log("listen backlog");
    assert!(log.contains(&format!(" backlog={somaxconn} ")), "{log}");
    assert!(
        log.contains(&format!("listen backlog {asked} is capped")),
        "{log}"
    );
}

#[test]
fn help_and_version_work() {
    let (status, stdout, _) = run_binary("greeter-server", &["--help"]);
    assert_eq!(status.code(), Some(0));
    let help = String::from_utf8(stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--message-file",
        "--max-connections",
        "--drain-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let (status, stdout, _) = run_binary("greeter-server", &["--version"]);
    assert_eq!(status.code(), Some(0));
    assert!(String::from_utf8(stdout)
        .unwrap()
        .starts_with("greeter-server "));
}

#[test]
fn sigterm_greets_every_connection_already_queued_beyond_the_cap() {
    // Far larger than what the socket buffers of a peer that reads nothing can take.
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut server = ServerCommand::new(&["--max-connections", "3"])
        .greeting("drain-queued", &greeting)
        .spawn();
    let holders: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    server.wait_for_in_flight(3);
    // Ten more complete their handshake and wait in the kernel's backlog.
    let queued: Vec<_> = (0..10).map(|_| connect(server.addr)).collect();

    server.signal("TERM");
    server.wait_for_log("shutdown: stopped accepting");
    assert_each_peer_receives(holders.into_iter().chain(queued).collect(), &greeting);
    server.assert_exits_cleanly_logging(
        "totals in_flight=0 accepted=13 greeted=13 closed_early=0",
        STEP_TIMEOUT,
    );
}

#[test]
fn a_second_server_on_a_used_port_fails_whatever_either_ones_workers() {
    for (first, second) in [("1", "2"), ("2", "1"), ("2", "2")] {
        let running = spawn_server(&["--workers", first]);
        let port = running.addr.port().to_string();
        assert_startup_error(
            &["--port", &port, "--workers", second],
            &format!("greeter-server: cannot listen on 127.0.0.1:{port}: address already in use"),
        );
    }
}

#[test]
fn greeting_file_must_be_a_regular_file() {
    let fifo = std::env::temp_dir().join(format!("greeter-fifo-{}", std::process::id()));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let dir = std::env::temp_dir();
    for path in [
        std::path::Path::new("/dev/zero"),
        std::path::Path::new("/dev/urandom"),
        fifo.as_path(),
        dir.as_path(),
    ] {
        let path = path.to_str().unwrap();
        assert_startup_error(
            &["--port", "0", "--message-file", path],
            &format!("greeter-server: cannot read greeting file {path}: not a regular file"),
        );
    }
    let _ = std::fs::remove_file(fifo);
}

#[test]
fn huge_durations_are_usage_errors() {
    for flag in ["--write-timeout", "--drain-timeout", "--linger-timeout"] {
        let (status, _, stderr) = run_binary(
            "greeter-server",
            &["--port", "0", flag, "9223372036854775807s"],
        );
        assert_eq!(status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("error:"), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}

#[test]
fn a_huge_connection_limit_works() {
    let server = spawn_server(&["--max-connections", "500000000"]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn the_fd_limit_is_raised_before_binding_many_workers() {
    // Forty workers need over a hundred descriptors: more than the soft limit, far
    // less than the hard one.
    let server = ServerCommand::new(&["--workers", "40"])
        .soft_fd_limit(64)
        .spawn();
    server.wait_for_log("workers=40");
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn multicast_and_broadcast_hosts_are_start_up_errors() {
    for host in ["224.0.0.1", "255.255.255.255", "ff02::1"] {
        let stderr = assert_startup_error(
            &["--port", "0", "--host", host],
            "greeter-server: cannot listen on ",
        );
        assert!(stderr.contains(host), "{stderr}");
        assert!(stderr.contains("multicast or broadcast"), "{stderr}");
    }
}
