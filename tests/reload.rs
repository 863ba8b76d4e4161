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
