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
    assert!(totals.to_string().ends_with("denied=1"), "{totals}");
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
