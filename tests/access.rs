//! `--allow` and `--deny`: who is greeted. Clients come from other loopback addresses
//! (127.0.0.2, 127.0.0.3) or are named by PROXY headers; denied ones get nothing (or
//! the `--deny-message`) and count as `denied`.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use greeter::supervisor::Request;
use greeter::CloseReason;
use util::*;

/// What a client from `source` receives from `addr` (nothing, if refused or reset).
fn received_from(source: &str, addr: std::net::SocketAddr) -> Vec<u8> {
    let mut peer = connect_from(source, addr);
    read_to_eof(&mut peer).unwrap_or_default()
}

#[test]
fn a_denied_client_gets_nothing_and_the_others_their_greeting() {
    let server = supervise(&["--deny", "127.0.0.2"]);
    assert_eq!(received_from("127.0.0.2", server.addr()), b"");
    assert_same_bytes(&received_from("127.0.0.3", server.addr()), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Denied), 1, "{totals}");
    assert_eq!(totals.greeted(), 1, "{totals}");
    assert!(totals.to_string().contains(" denied=1 "), "{totals}");
}

#[test]
fn an_allow_list_greets_only_what_it_names_and_the_most_specific_entry_decides() {
    let server = supervise(&[
        "--allow",
        "127.0.0.0/8",
        "--deny",
        "127.0.0.0/24",
        "--allow",
        "127.0.0.3",
    ]);
    assert_eq!(
        received_from("127.0.0.2", server.addr()),
        b"",
        "the /24 deny"
    );
    assert_same_bytes(&received_from("127.0.0.3", server.addr()), DEFAULT_GREETING);
    assert_same_bytes(&received_from("127.0.1.2", server.addr()), DEFAULT_GREETING);
    server.stop();
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_matches_ipv4_entries() {
    // On [::] an IPv4 client's address is ::ffff:127.0.0.2.
    let server = supervise(&["--host", "::", "--deny", "127.0.0.2"]);
    let addr = format!("127.0.0.1:{}", server.addr().port())
        .parse()
        .unwrap();
    assert_eq!(received_from("127.0.0.2", addr), b"");
    assert_same_bytes(&received_from("127.0.0.3", addr), DEFAULT_GREETING);
    server.stop();
}

#[test]
fn the_client_a_proxy_header_names_is_checked_not_the_proxy() {
    let server = supervise(&["--proxy-protocol", "--deny", "192.0.2.7"]);
    let through_proxy = |client: &str| {
        let mut peer = connect(server.addr());
        let header = format!("PROXY TCP4 {client} 192.0.2.1 4000 80\r\n");
        peer.write_all(header.as_bytes()).unwrap();
        read_to_eof(&mut peer).unwrap_or_default()
    };
    assert_eq!(through_proxy("192.0.2.7"), b"");
    assert_same_bytes(&through_proxy("192.0.2.8"), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Denied), 1, "{totals}");
}

#[test]
fn a_deny_message_is_sent_whole_and_logged_as_denied() {
    let mut server = spawn_server(&[
        "--deny",
        "127.0.0.2",
        "--deny-message",
        "421 not for you\r\n",
        "--log-connections",
    ]);
    assert_same_bytes(
        &received_from("127.0.0.2", server.addr),
        b"421 not for you\r\n",
    );
    server.wait_for_log("reason=denied");
    assert_same_bytes(&received_from("127.0.0.3", server.addr), DEFAULT_GREETING);
    server.signal("TERM");
    server.assert_exits_cleanly_logging("denied=1", STEP_TIMEOUT);
    let log = server.stderr();
    assert!(log.contains("CLOSE peer=127.0.0.2:"), "{log}");
    assert!(log.contains("bytes=17 ms="), "{log}");
}

#[test]
fn list_files_take_comments_and_blank_lines_and_a_bad_line_is_named() {
    let list = temp_file(
        "deny.list",
        b"# blocked\n\n127.0.0.2   # one host\n  198.51.100.0/24\n2001:db8::/32\n",
    );
    let server = supervise(&["--deny-file", list.arg()]);
    assert_eq!(received_from("127.0.0.2", server.addr()), b"");
    assert_same_bytes(&received_from("127.0.0.3", server.addr()), DEFAULT_GREETING);
    server.stop();

    let bad = temp_file("bad.list", b"127.0.0.2\n# fine\n10.0.0.300\n");
    assert_startup_error(
        &["--port", "0", "--deny-file", bad.arg()],
        &format!(
            "greeter-server: cannot use deny file {}: line 3: \"10.0.0.300\" is not an address or a CIDR block",
            bad.arg()
        ),
    );
    let (status, _, stderr) = run_binary("greeter-server", &["--deny", "10.0.0.0/33"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"10.0.0.0/33\" is not an address or a CIDR block"),
        "{stderr}"
    );
}

#[test]
fn list_files_take_a_byte_order_mark_and_a_bad_or_long_line_is_named_briefly() {
    let bom = temp_file("bom.list", b"\xEF\xBB\xBF127.0.0.2\n");
    let server = supervise(&["--deny-file", bom.arg()]);
    assert_eq!(received_from("127.0.0.2", server.addr()), b"");
    server.stop();

    // A binary file named by mistake: its line, and no word of permissions.
    let binary = temp_file(
        "binary.list",
        b"127.0.0.2\n\x7fELF\x02\x01\x01\x00\xff\xfe\n",
    );
    let line = assert_startup_error(
        &["--port", "0", "--deny-file", binary.arg()],
        &format!(
            "greeter-server: cannot use deny file {}: line 2: not UTF-8 (at byte 9 of the line): \"\\u{{7f}}ELF",
            binary.arg()
        ),
    );
    assert!(!line.contains("permission"), "{line}");

    // A one-line JSON blocklist: its first 100 bytes, escaped.
    let mut json = b"{\"deny\": [\"192.0.2.1\", ".to_vec();
    json.resize(8 << 20, b'x');
    let long = temp_file("blocklist.json", &json);
    let line = assert_startup_error(
        &["--port", "0", "--deny-file", long.arg()],
        &format!(
            "greeter-server: cannot use deny file {}: line 1: longer than 4096 bytes, starting \"{{\\\"deny\\\": [\\\"192.0.2.1\\\", xxx",
            long.arg()
        ),
    );
    assert!(line.len() < 400 + long.arg().len(), "{line}");
}

#[test]
fn a_reload_of_the_list_under_load_loses_no_greeting_and_applies_to_new_connections() {
    let config = temp_file("access-reload.toml", b"deny = [\"127.0.0.9\"]\n");
    let server = supervise(&["--config", config.arg(), "--workers", "2"]);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let greeted = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, greeted) = (Arc::clone(&stop), Arc::clone(&greeted));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                assert_same_bytes(&received_from("127.0.0.3", addr), DEFAULT_GREETING);
                greeted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("the load to run", || greeted.load(Ordering::Relaxed) > 100);
    assert_same_bytes(&received_from("127.0.0.2", addr), DEFAULT_GREETING);

    std::fs::write(&config, "deny = [\"127.0.0.2\"]\nmax-connections = 9000\n").unwrap();
    server.requests.send(Request::Reload);
    wait_until("both workers to take the new list", || {
        server.snapshot().max_connections == 2 * 9000
    });
    let before = greeted.load(Ordering::Relaxed);
    wait_until("the load to go on", || {
        greeted.load(Ordering::Relaxed) > before + 100
    });
    stop.store(true, Ordering::Relaxed);
    load.join()
        .expect("every greeting of the load arrived whole");
    assert_eq!(
        received_from("127.0.0.2", addr),
        b"",
        "the new list applies"
    );
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Denied), 1, "{totals}");
    assert_eq!(totals.closed_early(), 1, "{totals}");
}

/// What a client named `client` by a PROXY v1 header receives from `addr`.
fn received_as(client: &str, addr: std::net::SocketAddr) -> Vec<u8> {
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let server = if client.contains(':') {
        "2001:db8::1"
    } else {
        "192.0.2.254"
    };
    let mut peer = connect(addr);
    peer.write_all(format!("PROXY {family} {client} {server} 40000 17\r\n").as_bytes())
        .unwrap();
    read_to_eof(&mut peer).unwrap_or_default()
}

#[test]
fn a_source_over_its_rate_is_refused_while_another_at_the_same_time_is_not() {
    // One an hour: a burst of one, and the next allowed an hour later.
    let mut server = spawn_server(&["--max-rate-per-ip", "1/h", "--log-connections"]);
    assert_same_bytes(&received_from("127.0.0.2", server.addr), DEFAULT_GREETING);
    assert_eq!(
        received_from("127.0.0.2", server.addr),
        b"",
        "over its rate"
    );
    assert_same_bytes(&received_from("127.0.0.3", server.addr), DEFAULT_GREETING);
    assert_eq!(received_from("127.0.0.3", server.addr), b"");
    server.wait_for_log("reason=rate");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("rate=2", STEP_TIMEOUT);
    let log = server.stderr();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" reason=rate "))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused[0].contains("CLOSE peer=127.0.0.2:"), "{log}");
    assert!(
        refused[0].contains(" bytes=0 ") && refused[0].ends_with(" reason=rate input=0 first=none"),
        "{log}"
    );
}

#[test]
fn ipv6_sources_are_grouped_by_their_prefix() {
    let server = supervise(&["--proxy-protocol", "--max-rate-per-ip", "1/h"]);
    let addr = server.addr();
    assert_same_bytes(&received_as("2001:db8:1:2::1", addr), DEFAULT_GREETING);
    assert_eq!(received_as("2001:db8:1:2::2", addr), b"", "the same /64");
    assert_same_bytes(&received_as("2001:db8:1:3::1", addr), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Rate), 1, "{totals}");

    // A /48 makes both /64s one source; a /128 tells every address apart.
    let server = supervise(&[
        "--proxy-protocol",
        "--max-rate-per-ip",
        "1/h",
        "--rate-prefix-v6",
        "48",
        "--rate-prefix-v4",
        "24",
    ]);
    let addr = server.addr();
    assert_same_bytes(&received_as("2001:db8:1:2::1", addr), DEFAULT_GREETING);
    assert_eq!(received_as("2001:db8:1:3::1", addr), b"");
    assert_same_bytes(&received_as("192.0.2.1", addr), DEFAULT_GREETING);
    assert_eq!(received_as("192.0.2.200", addr), b"", "the same /24");
    assert_same_bytes(&received_as("192.0.3.1", addr), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Rate), 2, "{totals}");
}

#[test]
fn a_reload_keeps_the_rate_table_unless_its_settings_change() {
    let config = temp_file("rate-reload.toml", b"max-rate-per-ip = \"1/h\"\n");
    let server = supervise(&["--config", config.arg()]);
    let addr = server.addr();
    assert_same_bytes(&received_from("127.0.0.2", addr), DEFAULT_GREETING);

    std::fs::write(
        &config,
        "max-rate-per-ip = \"1/h\"\nmax-connections = 9000\n",
    )
    .unwrap();
    server.requests.send(Request::Reload);
    wait_until("the reload", || server.snapshot().max_connections == 9000);
    assert_eq!(received_from("127.0.0.2", addr), b"", "still counted");

    std::fs::write(
        &config,
        "max-rate-per-ip = \"2/h\"\nmax-connections = 8000\n",
    )
    .unwrap();
    server.requests.send(Request::Reload);
    wait_until("the reload", || server.snapshot().max_connections == 8000);
    assert_same_bytes(&received_from("127.0.0.2", addr), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.closes(CloseReason::Rate), 1, "{totals}");
    assert_eq!(totals.greeted(), 2, "{totals}");
}

#[test]
fn bad_rates_and_prefixes_are_usage_errors() {
    for (args, says) in [
        (
            &["--max-rate-per-ip", "20"][..],
            "is not a rate (write it as 20/s",
        ),
        (&["--max-rate-per-ip", "0/s"][..], "at least one connection"),
        (&["--rate-prefix-v4", "33"][..], "33 is not in 0..=32"),
        (&["--rate-prefix-v6", "129"][..], "129 is not in 0..=128"),
        (&["--rate-table-size", "0"][..], "0 is not in 1..=100000000"),
    ] {
        let (status, _, stderr) = run_binary("greeter-server", args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
