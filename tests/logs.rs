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

/// Where each documented line (docs/operations.md, "Log lines") is logged: the
/// targets operators filter on (`RUST_LOG=greeter::server=debug`) and that JSON logs
/// print. A message matches a pattern when it starts with the pattern's first piece
/// and holds the others, in order (`*` separates them).
const DOCUMENTED_TARGETS: &[(&str, &str)] = &[
    ("serving ", "greeter::startup"),
    ("config: ", "greeter::startup"),
    ("fd limit: soft=", "greeter::startup"),
    (
        "fd limit: * may be held, above the open-file limit ",
        "greeter::startup",
    ),
    ("ignoring GREETER_*: no such setting", "greeter::startup"),
    (
        "shutdown delay * without --metrics: no /healthz",
        "greeter::startup",
    ),
    (
        "listen backlog * is capped by net.core.somaxconn=",
        "greeter::startup",
    ),
    ("metrics: serving http://", "greeter::metrics"),
    ("ACCEPT peer=", "greeter::connection"),
    ("CLOSE peer=", "greeter::connection"),
    ("PREGREET peer=", "greeter::connection"),
    ("PROXY_ERROR peer=", "greeter::connection"),
    ("accept paused: ", "greeter::accept"),
    ("accept resumed: backlog drained after ", "greeter::accept"),
    ("totals in_flight=", "greeter::supervisor"),
    ("reload: configuration reloaded from ", "greeter::reload"),
    (
        "reload: * changed in * it takes effect at the next restart",
        "greeter::reload",
    ),
    ("reload: keeping the old configuration: ", "greeter::reload"),
    ("reload: greeting reloaded from ", "greeter::reload"),
    ("reload: address lists reloaded from ", "greeter::reload"),
    ("reload: nothing to reload ", "greeter::reload"),
    (
        "shutdown: stopped accepting; waiting up to ",
        "greeter::server",
    ),
    (
        "shutdown: stopped accepting; nothing in flight",
        "greeter::server",
    ),
    (
        "shutdown: second stop signal, closing in-flight connections now",
        "greeter::supervisor",
    ),
    (
        "shutdown: stop signal; /healthz answers 503",
        "greeter::supervisor",
    ),
    (
        "shutdown: second stop signal, ending the shutdown delay; draining now",
        "greeter::supervisor",
    ),
    (
        "upgrade: this process is stopping; ignoring SIGUSR2",
        "greeter::supervisor",
    ),
];

/// Lines of the table that a host may not produce (its limits are high enough).
const HOST_DEPENDENT: &[&str] = &["listen backlog * is capped by net.core.somaxconn="];

/// Whether `msg` matches `pattern` (see [`DOCUMENTED_TARGETS`]).
fn matches_pattern(msg: &str, pattern: &str) -> bool {
    let mut pieces = pattern.split('*');
    let Some(rest) = pieces.next().and_then(|first| msg.strip_prefix(first)) else {
        return false;
    };
    let mut rest = rest;
    for piece in pieces {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The (target, message) of every JSON line of `log`.
fn targets_and_messages(log: &str) -> Vec<(String, String)> {
    log.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}"));
            let field = |key: &str| {
                value[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("no {key} in {line}"))
                    .to_owned()
            };
            (field("target"), field("msg"))
        })
        .collect()
}

/// Waits until `needle` occurs `count` times in the server's stderr.
fn wait_for_log_count(server: &ServerProcess, needle: &str, count: usize) {
    wait_until(&format!("{count} x {needle:?} in stderr"), || {
        server.stderr().matches(needle).count() >= count
    });
}

/// Replaces `path` by a file holding `bytes`, by rename (as the docs advise).
fn rewrite_by_rename(path: &std::path::Path, bytes: &[u8]) {
    let new = path.with_extension("new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, path).unwrap();
}

/// With a config file, a descriptor limit and a metrics endpoint: start-up lines,
/// connections, reloads (applied, restart-only, refused), an accept pause and its
/// end, the totals, and a drain ended by a second SIGTERM.
fn log_of_a_config_run() -> String {
    let greeting = large_greeting(4 * 1024 * 1024);
    let (command, config) =
        ServerCommand::new(&["--log-format", "json", "--metrics", "127.0.0.1:0"])
            .env("RUST_LOG", "debug")
            .env("GREETER_MAX_CONECTIONS", "5")
            .greeting("targets-greeting", &greeting)
            .fd_limit(32)
            .config("targets.toml", "port = 0\nbacklog = 64\n");
    let mut server = command.spawn();
    server.wait_for_log("fd limit: soft=32 hard=32");
    assert_same_bytes(&read_to_eof(&mut connect(server.addr)).unwrap(), &greeting);

    server.signal("HUP");
    wait_for_log_count(&server, "reload: configuration reloaded from", 1);
    rewrite_by_rename(&config, b"port = 0\nbacklog = 65\n");
    server.signal("HUP");
    wait_for_log_count(&server, "reload: configuration reloaded from", 2);
    rewrite_by_rename(&config, b"port = 0\nbacklog = 0\n");
    server.signal("HUP");
    server.wait_for_log("reload: keeping the old configuration: ");

    // Peers that do not read hold their descriptor (the greeting cannot finish): the
    // rest meet EMFILE; once they go, the queue drains.
    let peers: Vec<_> = (0..40).map(|_| connect(server.addr)).collect();
    server.wait_for_log("accept paused: ");
    drop(peers);
    server.wait_for_log("accept resumed: ");
    server.wait_for_in_flight(0);

    let _stalled = connect(server.addr);
    server.wait_for_in_flight(1);
    server.signal("TERM");
    server.wait_for_log("shutdown: stopped accepting; waiting up to ");
    server.signal("USR2");
    server.wait_for_log("upgrade: this process is stopping; ignoring SIGUSR2");
    server.signal("TERM");
    assert_eq!(server.wait_exit(STEP_TIMEOUT).code(), Some(0));
    server.stderr()
}

/// With a greet delay, a deny file, a greeting file and a shutdown delay: a
/// pregreeter, a reload of the greeting and the lists, and a shutdown delay ended by
/// a second SIGTERM.
fn log_of_a_delayed_run() -> String {
    let deny = temp_file("targets-deny.txt", b"192.0.2.1\n");
    let mut server = ServerCommand::new(&[
        "--log-format",
        "json",
        "--greet-delay",
        "100ms",
        "--shutdown-delay",
        "30s",
        "--backlog",
        "2147483647",
        "--deny-file",
        deny.arg(),
    ])
    .env("RUST_LOG", "debug")
    .greeting("targets-short", b"hello\n")
    .spawn();
    let mut pregreeter = connect(server.addr);
    pregreeter.write_all(b"EHLO\r\n").unwrap();
    assert_eq!(read_to_eof(&mut pregreeter).unwrap(), b"hello\n");
    // Its FIN ends the lingering close, so that nothing is in flight at the drain.
    drop(pregreeter);
    server.wait_for_log("PREGREET peer=");
    server.wait_for_in_flight(0);

    server.signal("HUP");
    server.wait_for_log("reload: address lists reloaded from ");
    server.signal("TERM");
    server.wait_for_log("shutdown: stop signal; ");
    server.signal("TERM");
    assert_eq!(server.wait_exit(STEP_TIMEOUT).code(), Some(0));
    server.stderr()
}

/// A PROXY listener: each way of failing a header that has a `PROXY_ERROR` line,
/// then a client with a header.
fn log_of_a_proxy_run() -> String {
    let mut server = ServerCommand::new(&[
        "--log-format",
        "json",
        "--proxy-protocol",
        "--proxy-timeout",
        "300ms",
        "--max-per-ip",
        "1",
        // One header waiter at a time (a quarter of it).
        "--max-connections",
        "4",
    ])
    .env("RUST_LOG", "debug")
    .spawn();
    // Part of a header: accepted (its first bytes are there) and held.
    let mut first = connect(server.addr);
    first.write_all(b"PROXY TCP4 ").unwrap();
    server.wait_for_in_flight(1);
    // The same address again: its waiter's share is taken.
    let mut same_address = connect(server.addr);
    same_address.write_all(b"PROXY TCP4 ").unwrap();
    server.wait_for_log("waiting for their header");
    // Another address: the oldest waiter makes room for it, ...
    let mut newer = connect_from("127.0.0.2", server.addr);
    newer.write_all(b"PROXY TCP4 ").unwrap();
    server.wait_for_log("too many wait for their header");
    // ... and it runs out of time.
    server.wait_for_log("no header in time");
    let mut garbage = connect(server.addr);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    wait_for_log_count(&server, "PROXY_ERROR peer=", 4);
    let mut proxied = connect(server.addr);
    proxied
        .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 4000\r\n")
        .unwrap();
    assert_eq!(read_to_eof(&mut proxied).unwrap(), DEFAULT_GREETING);

    server.signal("HUP");
    server.wait_for_log("reload: nothing to reload ");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0 ", STEP_TIMEOUT);
    server.stderr()
}

#[test]
fn every_documented_line_keeps_its_log_target() {
    let mut lines = targets_and_messages(&log_of_a_config_run());
    lines.extend(targets_and_messages(&log_of_a_delayed_run()));
    lines.extend(targets_and_messages(&log_of_a_proxy_run()));
    let mut seen = vec![false; DOCUMENTED_TARGETS.len()];
    let mut wrong = Vec::new();
    for (target, msg) in &lines {
        for (index, (pattern, expected)) in DOCUMENTED_TARGETS.iter().enumerate() {
            if matches_pattern(msg, pattern) {
                seen[index] = true;
                if target != expected {
                    wrong.push(format!("{msg:?}: target {target}, not {expected}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "lines whose target moved:\n{}",
        wrong.join("\n")
    );
    let unseen: Vec<&str> = DOCUMENTED_TARGETS
        .iter()
        .zip(&seen)
        .filter(|((pattern, _), seen)| !**seen && !HOST_DEPENDENT.contains(pattern))
        .map(|((pattern, _), _)| *pattern)
        .collect();
    assert!(
        unseen.is_empty(),
        "documented lines the runs did not log: {unseen:?}\n{lines:#?}"
    );
}
