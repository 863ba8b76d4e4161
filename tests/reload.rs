//! SIGHUP reloads `--message-file` for new connections: a greeting in flight finishes
//! with the bytes it started with, a failed reload keeps the old greeting, and the
//! server never stops for it. These drive the real binary.

mod util;

use std::time::Duration;

use util::*;

#[test]
fn a_greeting_in_flight_across_a_reload_arrives_whole_and_unchanged() {
    // Far larger than the socket buffers: the first peer is mid-greeting at the reload.
    let old = large_greeting(16 * 1024 * 1024);
    let path = temp_file("reload-in-flight", &old);
    let server = supervise(&["--message-file", path.arg()]);
    let in_flight = connect(server.addr());
    server.wait_for_in_flight(1);

    let new = b"the new greeting\n";
    std::fs::write(&path, new).unwrap();
    server.requests.send(greeter::supervisor::Request::Reload);
    wait_until("the new greeting to be taken", || {
        server.snapshot().greeting_bytes == new.len()
    });
    // The next connection gets the new bytes...
    let mut next = connect(server.addr());
    assert_same_bytes(&read_to_eof(&mut next).unwrap(), new);
    // ...and the one in flight all of the old ones.
    assert_each_peer_receives(vec![in_flight], &old);

    let totals = server.stop();
    assert_eq!(
        (totals.accepted, totals.greeted(), totals.closed_early()),
        (2, 2, 0),
        "{totals}"
    );
}

#[test]
fn a_failed_reload_keeps_the_old_greeting_and_the_server() {
    let path = temp_file("reload-failing", b"the greeting\n");
    let mut server = spawn_server(&["--message-file", path.to_str().unwrap()]);
    let shown = path.display().to_string();

    std::fs::remove_file(&path).unwrap();
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: keeping the old greeting: cannot read greeting file {shown}: no such file"
    ));
    std::fs::write(&path, b"").unwrap();
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: keeping the old greeting: cannot use greeting file {shown}: the greeting is empty"
    ));
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    server.signal("HUP");
    server.wait_for_log("not a regular file");

    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), b"the greeting\n");
    assert_eq!(
        server.stderr().matches("WARN").count(),
        3,
        "{}",
        server.stderr()
    );
    server.signal("TERM");
    server.assert_exits_cleanly_logging("accepted=1 greeted=1", STEP_TIMEOUT);
    let _ = std::fs::remove_dir(path);
}

#[test]
fn sighup_with_a_message_flag_has_nothing_to_reload() {
    let mut server = spawn_server(&["--message", "hi"]);
    server.signal("HUP");
    server.wait_for_log("reload: nothing to reload");
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), b"hi");
    server.signal("TERM");
    server.assert_exits_cleanly_logging("accepted=1 greeted=1", Duration::from_secs(10));
}

/// The server's peak resident memory so far (`VmHWM`), in KiB.
fn peak_rss_kib(server: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_reload_is_read_once_off_the_signal_thread() {
    let path = temp_file("reload-large", b"the greeting\n");
    let server = spawn_server(&["--message-file", path.to_str().unwrap()]);
    let before = peak_rss_kib(&server);
    // 512 MiB (sparse: nothing on disk), which takes a while to read.
    let size: u64 = 512 << 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size)
        .unwrap();
    server.signal("HUP");
    // Handled while the file is still being read: the signal thread does not read it.
    server.signal("USR1");
    let log = server.wait_for_log(&format!(": {size} bytes"));
    let totals_at = log
        .find("totals in_flight=")
        .expect("the SIGUSR1 totals line");
    let reloaded_at = log.find("reload: greeting reloaded").unwrap();
    assert!(
        totals_at < reloaded_at,
        "SIGUSR1 waited for the reload:\n{log}"
    );
    // Read into its final allocation: the peak grows by the file's size, not twice it.
    let grown_kib = peak_rss_kib(&server) - before;
    let size_kib = size / 1024;
    assert!(
        grown_kib < size_kib * 3 / 2,
        "peak memory grew {grown_kib} KiB for a {size_kib} KiB greeting"
    );
}

/// What a client from `source` receives from `addr` (nothing, if refused).
fn received_from(source: &str, addr: std::net::SocketAddr) -> Vec<u8> {
    let mut peer = connect_from(source, addr);
    read_to_eof(&mut peer).unwrap_or_default()
}

/// Replaces the file at `path` as the documentation says to: a new file in the same
/// directory, renamed over it.
fn replace_by_rename(path: &std::path::Path, bytes: &[u8]) {
    let new = path.with_extension("new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, path).unwrap();
}

/// The reload counter's value for `result`.
fn reloads(metrics: std::net::SocketAddr, result: &str) -> u64 {
    let (_, body) = http_get(metrics, "/metrics");
    samples(&body)[&format!("greeter_greeting_reloads_total{{result=\"{result}\"}}")] as u64
}

#[test]
fn a_config_file_caught_without_keys_changes_nothing_and_counts_as_failed() {
    let (command, path) = ServerCommand::new(&["--metrics", "127.0.0.1:0"]).config(
        "reload-emptied.toml",
        "port = 0\ndeny = [\"127.0.0.2\"]\nmessage = \"keyed\"\n",
    );
    let server = command.spawn();
    let metrics = metrics_addr(&server);
    assert_eq!(received_from("127.0.0.2", server.addr), b"");
    assert_eq!(received_from("127.0.0.3", server.addr), b"keyed");

    // Truncated by `cat >` or `cp`, caught before the new text is in.
    std::fs::write(&path, b"").unwrap();
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: keeping the old configuration: {} has no keys (it is empty or only comments), \
         but the running configuration came from it with keys",
        path.display()
    ));
    std::fs::write(&path, b"# written by a config tool\n\n   \n").unwrap();
    server.signal("HUP");
    wait_until("the second refusal", || {
        server.stderr().matches(" has no keys ").count() == 2
    });
    assert_eq!(
        received_from("127.0.0.2", server.addr),
        b"",
        "the list stays"
    );
    assert_eq!(received_from("127.0.0.3", server.addr), b"keyed");
    assert_eq!((reloads(metrics, "failed"), reloads(metrics, "ok")), (2, 0));

    // A file that says something is taken, however little it says.
    replace_by_rename(&path, b"port = 0\nmessage = \"new\"\n");
    server.signal("HUP");
    server.wait_for_log("reload: configuration reloaded from");
    assert_eq!(received_from("127.0.0.2", server.addr), b"new");
    assert_eq!((reloads(metrics, "failed"), reloads(metrics, "ok")), (2, 1));
}

#[test]
fn sighup_rereads_list_files_named_by_flags_and_variables() {
    let deny = temp_file("reload-deny.list", b"127.0.0.2\n");
    let allow = temp_file("reload-allow.list", b"127.0.0.0/8\n");
    let server = ServerCommand::new(&["--deny-file", deny.arg(), "--message", "hi"])
        .env("GREETER_ALLOW_FILE", allow.arg())
        .spawn();
    assert_eq!(received_from("127.0.0.2", server.addr), b"");
    assert_eq!(received_from("127.0.0.3", server.addr), b"hi");
    assert_eq!(received_from("127.0.0.4", server.addr), b"hi");

    replace_by_rename(&deny, b"127.0.0.3\n");
    replace_by_rename(&allow, b"127.0.0.2\n127.0.0.3\n");
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: address lists reloaded from {}, {}: entries=2",
        allow.display(),
        deny.display()
    ));
    assert_eq!(received_from("127.0.0.2", server.addr), b"hi");
    assert_eq!(
        received_from("127.0.0.3", server.addr),
        b"",
        "the new deny file"
    );
    assert_eq!(
        received_from("127.0.0.4", server.addr),
        b"",
        "the new allow file"
    );
    assert!(!server.stderr().contains("nothing to reload"));
}

#[test]
fn a_list_with_a_huge_line_is_refused_in_one_short_line_without_reading_it_whole() {
    let list = temp_file("reload-huge-line.list", b"127.0.0.2\n");
    let server = spawn_server(&["--deny-file", list.arg()]);
    let before = peak_rss_kib(&server);
    // A 16 MiB one-line JSON blocklist, named by mistake.
    let mut json = b"{\"deny\": [\"127.0.0.3\", ".to_vec();
    json.resize(16 << 20, b'x');
    json.push(b'\n');
    replace_by_rename(&list, &json);
    server.signal("HUP");
    let log = server.wait_for_log(&format!(
        "reload: keeping the old configuration: cannot use deny file {}: line 1: longer than 4096 bytes, \
         starting \"{{\\\"deny\\\": [\\\"127.0.0.3\\\", xxx",
        list.display()
    ));
    let warning = log
        .lines()
        .find(|line| line.contains("longer than"))
        .unwrap();
    assert!(warning.len() < 500, "{} bytes: {warning}", warning.len());
    assert!(!log.contains("log: dropped"), "{log}");
    // One line of at most 4 KiB is held, not the file.
    let grown_kib = peak_rss_kib(&server) - before;
    assert!(grown_kib < 4096, "peak memory grew {grown_kib} KiB");
    assert_eq!(
        received_from("127.0.0.2", server.addr),
        b"",
        "the old list stays"
    );
}

/// `cp`, `cat >` and editors empty a file before they write it: a reload in that
/// moment finds a list file empty that gave entries, and keeps the old list rather
/// than drop every entry. A list emptied on purpose (a comment line left) applies.
#[test]
fn a_list_file_caught_empty_while_rewritten_keeps_the_old_list() {
    let deny = temp_file("reload-emptied.list", b"127.0.0.2\n");
    let server = spawn_server(&["--deny-file", deny.arg(), "--message", "hi"]);
    assert_eq!(received_from("127.0.0.2", server.addr), b"");

    std::fs::write(&deny, b"").unwrap();
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: keeping the old configuration: cannot use deny file {}: it is empty, while \
         the running list has entries from it",
        deny.display()
    ));
    assert_eq!(received_from("127.0.0.2", server.addr), b"", "still denied");

    replace_by_rename(&deny, b"# nobody denied for now\n");
    server.signal("HUP");
    server.wait_for_log("reload: address lists reloaded from");
    assert_eq!(received_from("127.0.0.2", server.addr), b"hi");
}
