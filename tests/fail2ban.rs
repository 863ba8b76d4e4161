//! The shipped fail2ban filter (docs/deploy/fail2ban) against real greeter output:
//! `fail2ban-regex` must find exactly the turned-away clients, IPv4 and IPv6, and
//! nobody else. Needs fail2ban (Debian's package; scripts/test.sh installs it).

mod util;

use std::collections::BTreeMap;
use std::process::Command;

use util::*;

/// Runs a server with --log-connections and --max-per-ip 1 on `host`: one peer from
/// `crowded` holds its slot mid-greeting, `turned_away` more from it are refused, and
/// one peer from each of `welcome` is greeted. Returns the server's log.
fn log_of_a_crowded_server(
    host: &str,
    crowded: &str,
    turned_away: usize,
    welcome: &[&str],
) -> String {
    let greeting = large_greeting(16 * 1024 * 1024);
    let path = temp_file(&format!("fail2ban-{host}"), &greeting);
    let mut server = spawn_server(&[
        "--host",
        host,
        "--log-connections",
        "--max-per-ip",
        "1",
        "--message-file",
        path.to_str().unwrap(),
    ]);
    let holder = connect_from(crowded, server.addr);
    server.wait_for_in_flight(1);
    for _ in 0..turned_away {
        let mut refused = connect_from(crowded, server.addr);
        assert_eq!(read_to_eof(&mut refused).unwrap(), b"");
    }
    for source in welcome {
        let mut peer = connect_from(source, server.addr);
        assert_same_bytes(&read_to_eof(&mut peer).unwrap(), &greeting);
    }
    drop(holder);
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0", STEP_TIMEOUT);
    server.stderr()
}

/// The addresses `fail2ban-regex` finds in `log` with the shipped filter (and its
/// `options`, such as `[mode=aggressive]`), with how often each matched.
fn matches_of_the_filter(log: &str, options: &str) -> BTreeMap<String, usize> {
    let log_path = temp_file("fail2ban.log", log.as_bytes());
    let filter = format!(
        "{}/docs/deploy/fail2ban/filter.d/greeter.conf{options}",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(log_path.as_os_str())
        .arg(filter)
        .output()
        .expect("fail2ban-regex is installed (scripts/test.sh installs fail2ban)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut banned = BTreeMap::new();
    for ip in stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        *banned.entry(ip.to_owned()).or_default() += 1;
    }
    banned
}

#[test]
fn fail2ban_filter_finds_rate_denied_and_pregreet_closes_and_pregreeters_in_aggressive_mode() {
    use std::io::Write;
    let mut policed = spawn_server(&[
        "--log-connections",
        "--max-rate-per-ip",
        "1/h",
        "--deny",
        "127.0.0.4",
        "--greet-delay",
        "300ms",
        "--pregreet",
        "drop",
    ]);
    for source in ["127.0.0.2", "127.0.0.3"] {
        let mut peer = connect_from(source, policed.addr);
        assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    }
    for source in ["127.0.0.2", "127.0.0.4"] {
        let mut refused = connect_from(source, policed.addr);
        assert_eq!(read_to_eof(&mut refused).unwrap_or_default(), b"");
    }
    let mut talker = connect_from("127.0.0.5", policed.addr);
    talker.write_all(b"EHLO bot\r\n").unwrap();
    assert_eq!(read_to_eof(&mut talker).unwrap_or_default(), b"");
    policed.signal("TERM");
    policed.assert_exits_cleanly_logging("rate=1 pregreet=1 pregreeted=1", STEP_TIMEOUT);

    let mut patient = spawn_server(&["--log-connections", "--greet-delay", "300ms"]);
    let mut talker = connect_from("127.0.0.6", patient.addr);
    talker.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    talker.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut talker).unwrap(), DEFAULT_GREETING);
    patient.signal("TERM");
    patient.assert_exits_cleanly_logging("pregreeted=1", STEP_TIMEOUT);

    let log = policed.stderr() + &patient.stderr();
    let turned_away = |more: &[&str]| -> BTreeMap<String, usize> {
        ["127.0.0.2", "127.0.0.4", "127.0.0.5"]
            .iter()
            .chain(more)
            .map(|ip| (ip.to_string(), 1))
            .collect()
    };
    assert_eq!(matches_of_the_filter(&log, ""), turned_away(&[]), "{log}");
    assert_eq!(
        matches_of_the_filter(&log, "[mode=aggressive]"),
        turned_away(&["127.0.0.6"]),
        "{log}"
    );
}

#[test]
fn fail2ban_filter_finds_exactly_the_turned_away_clients() {
    let mut log = log_of_a_crowded_server("127.0.0.1", "127.0.0.1", 3, &["127.0.0.2", "127.0.0.3"]);
    log.push_str(&log_of_a_crowded_server("::1", "::1", 2, &[]));
    // Every connection has its ACCEPT and CLOSE line at info level.
    let accepts = log
        .matches(" INFO  greeter::connection] ACCEPT peer=")
        .count();
    let closes = log
        .matches(" INFO  greeter::connection] CLOSE peer=")
        .count();
    assert_eq!((accepts, closes), (4 + 2 + 3, 4 + 2 + 3), "{log}");

    let banned = matches_of_the_filter(&log, "");
    assert_eq!(
        banned,
        BTreeMap::from([("127.0.0.1".to_owned(), 3), ("::1".to_owned(), 2)]),
        "matches of the filter in:\n{log}"
    );
}

#[test]
fn connection_lines_are_debug_without_the_flag() {
    let mut server = spawn_server(&[]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0 accepted=1", STEP_TIMEOUT);
    assert!(!server.stderr().contains("ACCEPT"), "{}", server.stderr());
}

#[test]
fn fail2ban_filter_finds_the_ends_of_traps_in_tarpit_mode_only() {
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--trap-timeout",
        "300ms",
        "--max-trapped-per-ip",
        "1",
        "--deny",
        "127.0.0.4",
        "--log-connections",
    ]);
    // Turned away as ever: matched in every mode.
    let mut denied = connect_from("127.0.0.4", server.addr);
    assert_eq!(read_to_eof(&mut denied).unwrap_or_default(), b"");
    // trap-eof: leaves at once.
    let quick = connect_from("127.0.0.7", server.addr);
    server.wait_for_log("TRAP peer=127.0.0.7:");
    drop(quick);
    server.wait_for_log("reason=trap-eof");
    // trap-timeout: waits it out.
    let mut patient = connect_from("127.0.0.8", server.addr);
    let _ = std::io::Read::read_to_end(&mut patient, &mut Vec::new());
    server.wait_for_log("reason=trap-timeout");
    // trap-reset: resets.
    let reset = socket2::Socket::from(connect_from("127.0.0.9", server.addr));
    server.wait_for_log("TRAP peer=127.0.0.9:");
    reset.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(reset);
    server.wait_for_log("reason=trap-reset");
    // Neither trap-full (its source already trapped) nor drain (the stop) is matched.
    let _held = connect_from("127.0.0.10", server.addr);
    server.wait_for_log("TRAP peer=127.0.0.10:");
    let mut full = connect_from("127.0.0.10", server.addr);
    assert_eq!(read_to_eof(&mut full).unwrap_or_default(), b"");
    server.wait_for_log("reason=trap-full");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("trap_full=1", STEP_TIMEOUT);
    let log = server.stderr();
    for reason in [
        "trap-eof",
        "trap-timeout",
        "trap-reset",
        "trap-full",
        "drain",
    ] {
        assert!(
            log.contains(&format!(" reason={reason} ")),
            "{reason}:\n{log}"
        );
    }

    let denied_only = BTreeMap::from([("127.0.0.4".to_owned(), 1)]);
    assert_eq!(matches_of_the_filter(&log, ""), denied_only, "{log}");
    assert_eq!(
        matches_of_the_filter(&log, "[mode=aggressive]"),
        denied_only,
        "{log}"
    );
    let trapped: BTreeMap<String, usize> = ["127.0.0.4", "127.0.0.7", "127.0.0.8", "127.0.0.9"]
        .iter()
        .map(|ip| (ip.to_string(), 1))
        .collect();
    assert_eq!(
        matches_of_the_filter(&log, "[mode=tarpit]"),
        trapped,
        "{log}"
    );
}
