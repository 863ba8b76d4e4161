//! Logging never stalls the server: lines go through a bounded queue to a writer
//! thread, so a stderr that nobody reads costs lines (dropped and counted), never a
//! greeting or a signal. These drive the real binary with a stderr pipe that the
//! test does not read.

mod util;

use std::io::Write;
use std::sync::atomic::AtomicU64;

use greeter_load as load;
use util::*;

/// A drain timeout short enough that "exits within it" is quick to check.
const DRAIN: &str = "2s";

#[test]
fn a_log_pipe_nobody_reads_never_stops_greetings_or_shutdown() {
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = ServerCommand::new(&[
        "--log-connections",
        "--drain-timeout",
        DRAIN,
        "--metrics",
        &metrics.to_string(),
    ])
    .stderr_unread()
    .spawn();
    // Two lines per connection: far more than the pipe (64 KiB) and the queue hold.
    let total = 6_000;
    let report = load::run(&load_options(server.addr, total), &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.total()), (total, 0));

    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let dropped = samples(&body)["greeter_log_lines_dropped_total"];
    assert!(dropped > 0.0, "no dropped lines counted:\n{body}");

    // Nobody reads stderr still: the signal is handled, and the exit waits only
    // briefly for the log writer.
    server.signal("TERM");
    let status = server.wait_exit(STEP_TIMEOUT);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_log_reader_that_comes_back_learns_how_many_lines_were_dropped() {
    let mut server = ServerCommand::new(&["--log-connections"])
        .stderr_unread()
        .spawn();
    let total = 6_000;
    let report = load::run(&load_options(server.addr, total), &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.total()), (total, 0));

    server.read_stderr();
    server.wait_for_log("(stderr was not being read)");
    server.signal("TERM");
    server.assert_exits_cleanly_logging(&format!("accepted={total} greeted={total}"), STEP_TIMEOUT);
    let log = server.stderr();
    // Reported once the writer has caught up; the reports' sum is every line lost.
    let dropped: u64 = log
        .lines()
        .filter_map(|line| {
            let count = &line[line.find("log: dropped ")? + 13..];
            count.split(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert!(dropped > 0);
    // What was not dropped was written.
    let per_connection = log
        .lines()
        .filter(|line| line.contains(" ACCEPT peer=") || line.contains(" CLOSE peer="))
        .count() as u64;
    assert_eq!(
        per_connection + dropped,
        2 * total,
        "{}",
        log.lines()
            .filter(|l| l.contains("log: dropped"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn reloads_and_their_log_lines_never_block_signal_handling() {
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = ServerCommand::new(&["--metrics", &metrics.to_string()])
        .greeting("logs-reload", b"the greeting\n")
        .stderr_unread()
        .spawn();
    let reloads_done = || {
        let (_, body) = http_get(metrics, "/metrics");
        samples(&body)["greeter_greeting_reloads_total{result=\"ok\"}"] as u64
    };
    // One info line each, about 100 bytes: more than a pipe holds. Each SIGHUP is
    // sent once the one before it has been handled (signals do not queue).
    for done in 1..=1_000 {
        signal_pid(server.pid(), libc::SIGHUP);
        wait_until(&format!("reload {done} to be handled"), || {
            reloads_done() >= done
        });
    }
    server.signal("TERM");
    let status = server.wait_exit(STEP_TIMEOUT);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_thousand_workers_stop_on_sigterm_with_nobody_reading_their_lines() {
    // Each worker logs its own shutdown line: 1024 of them fill a pipe by themselves.
    let mut server = ServerCommand::new(&["--workers", "1024", "--max-connections", "4"])
        .stderr_unread()
        .spawn();
    let mut peer = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.signal("TERM");
    let status = server.wait_exit(STEP_TIMEOUT);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn with_a_reader_every_connection_line_arrives_in_order() {
    let mut server = spawn_server(&["--log-connections"]);
    let mut peers = Vec::new();
    for _ in 0..300 {
        let mut peer = connect(server.addr);
        peers.push(peer.local_addr().unwrap());
        assert_same_bytes(&read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    }
    server.signal("TERM");
    server.assert_exits_cleanly_logging("accepted=300 greeted=300", STEP_TIMEOUT);
    let log = server.stderr();
    let lines: Vec<String> = log
        .lines()
        .filter_map(|line| {
            let at = line
                .find("ACCEPT peer=")
                .or_else(|| line.find("CLOSE peer="))?;
            let fields: Vec<&str> = line[at..].split(' ').take(2).collect();
            Some(fields.join(" "))
        })
        .collect();
    let expected: Vec<String> = peers
        .iter()
        .flat_map(|peer| [format!("ACCEPT peer={peer}"), format!("CLOSE peer={peer}")])
        .collect();
    assert_eq!(lines, expected);
    assert!(!log.contains("log: dropped"), "{log}");
}

/// Sends `signal` to process `pid` directly (thousands of `kill` processes would be
/// the slow part of a test).
fn signal_pid(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) takes any pid and signal number and touches no memory of ours;
    // the pid is a child this test started and has not reaped.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}

#[test]
fn connections_closed_while_their_proxy_header_is_awaited_log_accept_then_close() {
    let mut server = spawn_server(&[
        "--proxy-protocol",
        "--log-connections",
        "--proxy-timeout",
        "300ms",
    ]);
    // Held first (a PROXY listener defers the accept of a silent connection for
    // about a second, then accepts it), then: garbage, half a header and EOF, nothing.
    let mut garbage = connect(server.addr);
    server.wait_for_in_flight(1);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut half = connect(server.addr);
    server.wait_for_in_flight(1);
    half.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    let silent = connect(server.addr);
    let peers = [&garbage, &half, &silent].map(|peer| peer.local_addr().unwrap());
    // The silent one: accepted once its accept is no longer deferred, closed at its
    // --proxy-timeout.
    server.wait_for_log(&format!("CLOSE peer={} ", peers[2]));
    server.wait_for_in_flight(0);
    server.signal("TERM");
    server.assert_exits_cleanly_logging("accepted=3 greeted=0 closed_early=3", STEP_TIMEOUT);
    let log = server.stderr();
    for peer in peers {
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(&format!(" peer={peer} ")))
            .map(|line| {
                if line.contains(" ACCEPT ") {
                    "ACCEPT"
                } else {
                    "CLOSE"
                }
            })
            .collect();
        assert_eq!(lines, ["ACCEPT", "CLOSE"], "{peer}:\n{log}");
    }
}

/// Every stderr line of a short run with `args`: start, one greeting, one talker
/// turned away by a rate, the totals.
fn log_of_a_run(args: &[&str]) -> String {
    let mut all = vec!["--log-connections", "--max-rate-per-ip", "1/h"];
    all.extend_from_slice(args);
    let mut server = spawn_server(&all);
    assert_eq!(
        read_to_eof(&mut connect(server.addr)).unwrap(),
        DEFAULT_GREETING
    );
    assert_eq!(
        read_to_eof(&mut connect(server.addr)).unwrap_or_default(),
        b""
    );
    server.wait_for_log("reason=rate");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0 accepted=2", STEP_TIMEOUT);
    server.stderr()
}

#[test]
fn every_line_of_a_run_parses_in_each_log_format() {
    let text = log_of_a_run(&[]);
    for line in text.lines() {
        let (head, _) = line.split_once("] ").unwrap_or_else(|| panic!("{line:?}"));
        let mut parts = head.trim_start_matches('[').split_whitespace();
        let (ts, level, target) = (parts.next(), parts.next(), parts.next());
        assert!(
            ts.is_some_and(|ts| ts.ends_with('Z') && ts.len() == 20),
            "{line:?}"
        );
        assert!(
            matches!(level, Some("INFO" | "WARN" | "ERROR" | "DEBUG")),
            "{line:?}"
        );
        assert!(
            target.is_some_and(|target| target.starts_with("greeter")),
            "{line:?}"
        );
    }
    assert!(text.contains(" reason=rate input=0 first=none\n"), "{text}");

    let json = log_of_a_run(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}")))
        .collect();
    assert_eq!(
        lines.len(),
        text.lines().count(),
        "the same lines in both:\n{json}"
    );
    for line in &lines {
        for key in ["ts", "level", "target", "msg"] {
            assert!(line[key].is_string(), "{key} in {line}");
        }
    }
    let closes: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["event"] == "CLOSE")
        .collect();
    assert_eq!(closes.len(), 2, "{json}");
    assert_eq!(closes[0]["bytes"], 38);
    assert_eq!(closes[0]["reason"], "greeted");
    assert_eq!(closes[1]["reason"], "rate");
    assert_eq!(closes[1]["input"], 0);
    assert_eq!(closes[1]["first"], "none");
    assert!(closes[1]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(closes[1]["ms"].is_u64());
    let accept = lines.iter().find(|line| line["event"] == "ACCEPT").unwrap();
    assert_eq!(accept["max"], 10000);
}
