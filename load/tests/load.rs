//! greeter-load: counts what it should, and catches what it must.

#[path = "../../tests/util/mod.rs"]
mod util;

use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use greeter::greeting::Greeting;
use greeter::CloseReason;
use greeter_load::{self as load, LoadOptions, ProxyVersion};
use util::*;

fn options(addr: std::net::SocketAddr, expected: &[u8]) -> LoadOptions {
    LoadOptions {
        addr,
        connections: 16,
        total: Some(2_000),
        duration: Duration::from_secs(30),
        expected: Greeting::from(expected),
        timeout: Duration::from_secs(5),
        threads: 2,
        send_proxy: None,
        distinct_sources: false,
    }
}

#[test]
fn load_run_completes_every_connection_exactly() {
    let server = start_server(default_config());
    let finished = AtomicU64::new(0);
    let report = load::run(&options(server.addr, DEFAULT_GREETING), &finished).unwrap();
    assert_eq!(report.completed, 2_000);
    assert_eq!(report.errors.total(), 0);
    assert_eq!(report.latency_us.len(), 2_000);
    assert_eq!(finished.into_inner(), 2_000);
    let latency = report.latency().expect("connections completed");
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);

    let totals = server.stop();
    assert_eq!(totals.greeted(), 2_000, "the server agrees on the count");
}

#[test]
fn load_run_catches_wrong_and_short_greetings() {
    let server = start_server(default_config());
    let mut wrong = DEFAULT_GREETING.to_vec();
    wrong[20] ^= 1;
    let mut opts = options(server.addr, &wrong);
    opts.total = Some(100);
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.wrong_bytes), (0, 100));

    let longer = [DEFAULT_GREETING, b"!"].concat();
    let mut opts = options(server.addr, &longer);
    opts.total = Some(100);
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.short), (0, 100));
}

#[test]
fn load_run_counts_refused_and_timed_out_connections() {
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = options(closed_port, DEFAULT_GREETING);
    opts.total = Some(50);
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.refused), (0, 50));

    // A listener that never accepts: handshakes complete, nothing is ever sent.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = options(silent.local_addr().unwrap(), DEFAULT_GREETING);
    opts.total = Some(10);
    opts.timeout = Duration::from_millis(200);
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.timed_out), (0, 10));
}

#[test]
fn load_run_is_bounded_by_duration() {
    let server = start_server(default_config());
    let mut opts = options(server.addr, DEFAULT_GREETING);
    opts.total = None;
    opts.duration = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(report.completed > 0);
    assert_eq!(report.errors.total(), 0);
}

#[test]
fn load_binary_reports_json_and_exits_by_outcome() {
    let server = start_server(default_config());
    let port = server.addr.port().to_string();
    let (status, stdout, stderr) = run_binary(
        "greeter-load",
        &["--port", &port, "-c", "8", "-n", "500", "--json"],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).expect("one JSON object");
    assert_eq!(report["completed"], 500);
    assert_eq!(report["errors_total"], 0);
    for field in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(report["latency_us"][field].is_u64(), "latency_us.{field}");
    }
    assert!(report["connections_per_s"].as_f64().unwrap() > 0.0);

    let (status, stdout, _) = run_binary(
        "greeter-load",
        &["--port", &port, "-n", "20", "--message", "not the greeting"],
    );
    assert_eq!(status.code(), Some(1), "a failed connection fails the run");
    let table = String::from_utf8(stdout).unwrap();
    assert!(table.contains("errors        20 ("), "{table}");
    assert!(table.contains("wrong bytes 20"), "{table}");
}

#[test]
fn a_run_in_which_nothing_completed_reports_no_latency_rather_than_zeros() {
    // Nothing listens on a free port: every connection is refused.
    let port = free_port().to_string();
    let (status, stdout, stderr) = run_binary("greeter-load", &["--port", &port, "-n", "5"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let table = String::from_utf8(stdout).unwrap();
    assert!(table.contains("completed     0\n"), "{table}");
    assert!(
        table.contains("latency (ms)  none (no connection completed)"),
        "{table}"
    );
    assert!(!table.contains("0.000"), "{table}");
    let (status, stdout, stderr) =
        run_binary("greeter-load", &["--port", &port, "-n", "5", "--json"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).expect("one JSON object");
    assert_eq!(report["completed"], 0);
    assert!(report["latency_us"].is_null(), "{report}");
}

#[test]
fn load_run_idles_after_its_duration_while_connections_wait_for_their_timeout() {
    // A listener that never accepts: the kernel completes the handshakes, nobody
    // writes, so all ten connections wait for their 3 s timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let mut load = std::process::Command::new(binary("greeter-load"))
        .args([
            "--port",
            &port,
            "-c",
            "10",
            "-d",
            "100ms",
            "--timeout",
            "3s",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Measure its CPU over a second in the middle of the wait.
    wait_until("the load run to start", || {
        cpu_ticks_of(load.id()).is_some()
    });
    let used = cpu_ticks_over_a_second(load.id());
    let status = load.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "ten timed-out connections are a failure"
    );
    assert!(
        used <= 20,
        "greeter-load used {used} ticks (of 100) while waiting"
    );
}

#[test]
fn a_connection_that_ends_after_its_timeout_counts_as_timed_out() {
    let greeting = large_greeting(256 * 1024);
    let server = start_server(config_with(&greeting));
    let mut opts = options(server.addr, &greeting);
    opts.timeout = Duration::from_micros(100);
    opts.total = Some(200);
    opts.threads = 1;
    let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
    assert_eq!(report.completed + report.errors.total(), 200);
    assert!(report.errors.timed_out > 0, "{report}");
    if report.completed > 0 {
        assert!(
            report.latency().expect("some completed").max <= 100,
            "{report}"
        );
    }
}

#[test]
fn load_rejects_empty_and_impossible_runs() {
    for args in [
        &["-n", "0"][..],
        &["-d", "0s"],
        &["-d", "9223372036854775807s"],
        &["--timeout", "0s"],
        &["--timeout", "9223372036854775807s"],
    ] {
        let (status, _, stderr) = run_binary("greeter-load", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Ranges are worded as the server words them (1..=N, not 1..N).
    for (args, said) in [
        (&["-n", "0"][..], "0 is not in 1..=18446744073709551615"),
        (&["-c", "0"], "0 is not in 1..=4294967295"),
        (&["-c", "-1"], "-1 is not in 1..=4294967295"),
        (&["--port", "0"], "0 is not in 1..=65535"),
        (&["-d", "-1s"], "\"-1s\" is negative"),
    ] {
        let (status, _, stderr) = run_binary("greeter-load", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap().contains(said),
            "{args:?}: {stderr}"
        );
    }
    let (status, _, stderr) = run_binary("greeter-load", &["-c", "4000000000", "-n", "1"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("open-file limit"), "{stderr}");
    // --hold: N beyond the hard limit is refused before any connect, in one line.
    let (status, _, stderr) = run_binary("greeter-load", &["--hold", "4000000000"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the hard open-file limit is"), "{stderr}");
    let (status, _, stderr) = run_binary("greeter-load", &["--hold", "0"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
}

#[test]
fn send_proxy_drives_a_server_that_wants_the_proxy_protocol_with_v1_and_v2() {
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let config = default_config().with_proxy_protocol();
        let server = start_server(config);
        let mut opts = options(server.addr, DEFAULT_GREETING);
        // Without the header such a server answers nothing, within its header timeout.
        opts.total = Some(500);
        opts.send_proxy = Some(version);
        let report = load::run(&opts, &AtomicU64::new(0)).unwrap();
        assert_eq!(
            (report.completed, report.errors.total()),
            (500, 0),
            "{version:?}: {report}"
        );
        let totals = server.stop();
        assert_eq!(
            (totals.greeted(), totals.closes(CloseReason::ProxyHeader)),
            (500, 0),
            "{version:?}: {totals}"
        );
    }
}
