//! A stop that a load balancer can follow (`--shutdown-delay`), and `/livez`, the
//! liveness probe that only a stuck loop fails. These drive the real binary with
//! signals and speak raw HTTP to its metrics endpoint.

mod util;

use std::time::Duration;

use util::*;

/// Reads one greeting from `addr` (a fresh connection) to EOF.
fn greeting_from(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut peer = connect(addr);
    read_to_eof(&mut peer).unwrap()
}

/// On SIGTERM `/healthz` says `stopping` at once while greetings go on; the second
/// SIGTERM starts the drain, the third closes what is in flight; `/livez` stays ok.
#[test]
fn a_stop_signal_fails_healthz_at_once_and_greets_on_until_a_second_one() {
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut server = ServerCommand::new(&[
        "--metrics",
        "127.0.0.1:0",
        "--shutdown-delay",
        "1h",
        "--drain-timeout",
        "1h",
    ])
    .greeting("shutdown-delay", &greeting)
    .spawn();
    let metrics = metrics_addr(&server);
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(metrics, "/livez"), (200, "ok\n".to_owned()));

    server.signal("TERM");
    // The 503 is published before this line is logged.
    server.wait_for_log("shutdown: stop signal; /healthz answers 503, greeting on for 1h");
    assert_eq!(
        http_get(metrics, "/healthz"),
        (503, "stopping\n".to_owned())
    );
    assert_eq!(http_get(metrics, "/livez"), (200, "ok\n".to_owned()));
    // New connections are still greeted, whole.
    for _ in 0..3 {
        assert_same_bytes(&greeting_from(server.addr), &greeting);
    }

    // One left unread is in flight when the drain starts.
    let held = connect(server.addr);
    server.wait_for_in_flight(1);
    server.signal("TERM");
    server.wait_for_log("shutdown: second stop signal, ending the shutdown delay; draining now");
    server.wait_for_log("shutdown: stopped accepting; waiting up to 1h for 1 in-flight");
    assert_eq!(
        http_get(metrics, "/healthz"),
        (503, "draining\n".to_owned())
    );
    assert_eq!(http_get(metrics, "/livez"), (200, "ok\n".to_owned()));

    server.signal("TERM");
    server.assert_exits_cleanly_logging(
        "shutdown: second stop signal, closing in-flight connections now",
        STEP_TIMEOUT,
    );
    assert!(
        server.stderr().contains("accepted=4"),
        "{}",
        server.stderr()
    );
    drop(held);
}

/// Left alone, the delay runs out and the drain starts as it does without one.
#[test]
fn the_drain_starts_when_the_shutdown_delay_is_over() {
    let mut server = spawn_server(&["--metrics", "127.0.0.1:0", "--shutdown-delay", "300ms"]);
    let metrics = metrics_addr(&server);
    server.signal("TERM");
    server.wait_for_log("greeting on for 300ms before the drain");
    assert_same_bytes(&greeting_from(server.addr), DEFAULT_GREETING);
    server.assert_exits_cleanly_logging(
        "shutdown: the shutdown delay is over; draining",
        STEP_TIMEOUT,
    );
    let log = server.stderr();
    assert!(log.contains("totals in_flight=0 accepted=1"), "{log}");
    let _ = metrics;
}

/// Without `--metrics` nothing could see the 503: one warning at start-up (and from
/// `--check-config`), none with it or without a delay.
#[test]
fn a_shutdown_delay_without_metrics_is_warned_about() {
    let warning =
        "shutdown delay 5s without --metrics: no /healthz can say that the server is stopping";
    let mut server = spawn_server(&["--shutdown-delay", "5s"]);
    server.wait_for_log(warning);
    let log = server.stderr();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    server.kill();

    let mut quiet = spawn_server(&["--shutdown-delay", "5s", "--metrics", "127.0.0.1:0"]);
    metrics_addr(&quiet);
    quiet.signal("USR1");
    quiet.wait_for_log("totals in_flight=");
    assert!(!quiet.stderr().contains("without --metrics"));
    quiet.kill();

    let checked = std::process::Command::new(binary("greeter-server"))
        .args(["--check-config", "--shutdown-delay", "5s"])
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains(warning), "{stderr}");
    assert!(String::from_utf8_lossy(&checked.stdout).contains("shutdown-delay = \"5s\""));
}

/// `/livez` fails only when a loop stops answering the supervisor's pings (here: one
/// worker's thread is stopped), and is ok again once it answers; `/healthz` is not
/// what tells that.
#[test]
fn livez_fails_while_a_worker_loop_does_not_answer() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0", "--workers", "2"]);
    let metrics = metrics_addr(&server);
    assert_eq!(http_get(metrics, "/livez"), (200, "ok\n".to_owned()));
    let stopped = StoppedThread::stop(thread_named(server.pid(), "greeter-w1"));
    wait_for(
        Duration::from_secs(10),
        || "/livez to answer 503".to_owned(),
        || {
            let answer = http_get(metrics, "/livez");
            (answer.0 == 503).then_some(answer)
        },
    );
    assert_eq!(http_get(metrics, "/livez"), (503, "stuck\n".to_owned()));
    drop(stopped);
    wait_until("/livez to be ok again", || {
        http_get(metrics, "/livez").0 == 200
    });
}
