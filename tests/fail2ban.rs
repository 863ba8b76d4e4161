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

    let log_path = temp_file("fail2ban.log", log.as_bytes());
    let output = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(log_path.as_os_str())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/deploy/fail2ban/filter.d/greeter.conf"
        ))
        .output()
        .expect("fail2ban-regex is installed (scripts/test.sh installs fail2ban)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut banned: BTreeMap<&str, usize> = BTreeMap::new();
    for ip in stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        *banned.entry(ip).or_default() += 1;
    }
    assert_eq!(
        banned,
        BTreeMap::from([("127.0.0.1", 3), ("::1", 2)]),
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
