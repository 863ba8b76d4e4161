//! `--geoip-db`: a trapped client's country, looked up once when it is trapped in a
//! MaxMind DB file, on its `TRAP` and `CLOSE` lines (`country=`) and in the trap
//! metrics' `country` label; a database without countries refused; the file read
//! again on SIGHUP, a bad one leaving the running one. The databases are tiny ones
//! the tests build (tests/mmdb), placing loopback where a test wants it.

mod mmdb;
mod util;

use std::io::{Read, Write};

use util::*;

/// The `/metrics` samples once `name` reads `value`.
#[track_caller]
fn metric_reaches(server: &ServerProcess, name: &str, value: f64) {
    let metrics = metrics_addr(server);
    wait_for(
        STEP_TIMEOUT,
        || format!("{name} at {value} in:\n{}", http_get(metrics, "/metrics").1),
        || (samples(&http_get(metrics, "/metrics").1).get(name) == Some(&value)).then_some(()),
    );
}

/// Asserts that `promtool check metrics` finds nothing to say of `exposition`.
#[track_caller]
fn assert_promtool_passes(exposition: &str) {
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus)");
    let mut stdin = promtool.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).unwrap();
    drop(stdin);
    let output = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "{said}\n{exposition}"
    );
}

/// A tarpit with `--geoip-db db` (and `more` flags), dripping every 100 ms.
fn tarpit_with(db: &TempFile, more: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
        "--geoip-db",
        db.arg(),
    ];
    args.extend_from_slice(more);
    spawn_server(&args)
}

/// Loopback placed in country `code`, for IPv4 and IPv6 clients.
fn loopback_in(code: &str) -> Vec<u8> {
    mmdb::country_db(
        "GeoLite2-Country",
        &[("127.0.0.0/8", code), ("::1/128", code)],
    )
}

#[test]
fn a_trapped_client_has_its_country_on_trap_and_close_and_in_the_metrics() {
    let db = temp_file("country.mmdb", &loopback_in("NZ"));
    let server = tarpit_with(&db, &[]);
    let mut peer = connect(server.addr);
    let trap = nth_line(&server, "TRAP peer=", 1);
    assert!(trap.ends_with(" why=listener country=NZ"), "{trap}");
    // ACCEPT stays as it was: the lookup belongs to the trap.
    let accept = nth_line(&server, "ACCEPT peer=", 1);
    assert!(!accept.contains("country"), "{accept}");
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 1.0);
    let (_, body) = http_get(metrics_addr(&server), "/metrics");
    let scraped = samples(&body);
    assert_eq!(
        scraped[r#"greeter_trapped_clients_total{country="NZ"}"#],
        1.0
    );
    assert_eq!(
        scraped[r#"greeter_trapped_connections{country="unknown"}"#],
        0.0
    );
    // The histogram has no country.
    assert!(
        !body.contains(r#"greeter_trap_duration_seconds_count{"#),
        "{body}"
    );
    assert_promtool_passes(&body);
    // Dripped to: its bytes and seconds counted under its country.
    let mut line = [0u8; 32];
    peer.read_exact(&mut line).unwrap();
    wait_until("its drips counted under NZ", || {
        let scraped = samples(&http_get(metrics_addr(&server), "/metrics").1);
        scraped[r#"greeter_bytes_dripped_total{country="NZ"}"#] >= 32.0
            && scraped[r#"greeter_trapped_seconds_total{country="NZ"}"#] > 0.0
    });
    drop(peer);
    let close = nth_line(&server, "CLOSE peer=", 1);
    assert!(close.contains(" reason=trap-eof "), "{close}");
    assert!(close.ends_with(" first=none country=NZ"), "{close}");
    // Gone: the gauge back at 0, its series kept.
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 0.0);
}

#[test]
fn the_json_lines_carry_the_country_as_a_field() {
    let db = temp_file("country.mmdb", &loopback_in("NZ"));
    let server = tarpit_with(&db, &["--log-format", "json"]);
    let peer = connect(server.addr);
    let trap = nth_line(&server, "\"event\":\"TRAP\"", 1);
    let trap: serde_json::Value = serde_json::from_str(&trap).unwrap();
    assert_eq!(trap["country"], "NZ", "{trap}");
    drop(peer);
    let close = nth_line(&server, "\"event\":\"CLOSE\"", 1);
    let close: serde_json::Value = serde_json::from_str(&close).unwrap();
    assert_eq!(close["country"], "NZ", "{close}");
    assert_eq!(close["reason"], "trap-eof", "{close}");
}

#[test]
fn a_client_the_database_does_not_place_is_unknown() {
    // Only documentation space placed: loopback has no record.
    let db = temp_file(
        "elsewhere.mmdb",
        &mmdb::country_db("DBIP-Country-Lite", &[("192.0.2.0/24", "NZ")]),
    );
    let server = tarpit_with(&db, &[]);
    let peer = connect(server.addr);
    let trap = nth_line(&server, "TRAP peer=", 1);
    assert!(trap.ends_with(" country=unknown"), "{trap}");
    metric_reaches(
        &server,
        r#"greeter_trapped_connections{country="unknown"}"#,
        1.0,
    );
    drop(peer);
    let close = nth_line(&server, "CLOSE peer=", 1);
    assert!(close.ends_with(" country=unknown"), "{close}");
}

#[test]
fn without_a_database_the_lines_have_no_country_and_the_label_says_unknown() {
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let peer = connect(server.addr);
    let trap = nth_line(&server, "TRAP peer=", 1);
    assert!(trap.ends_with(" why=listener"), "{trap}");
    metric_reaches(
        &server,
        r#"greeter_trapped_connections{country="unknown"}"#,
        1.0,
    );
    drop(peer);
    let close = nth_line(&server, "CLOSE peer=", 1);
    assert!(close.ends_with(" first=none"), "{close}");
}

#[test]
fn a_dripped_greeting_all_out_leaves_its_countrys_gauge() {
    let db = temp_file("country.mmdb", &loopback_in("NZ"));
    let server = tarpit_with(
        &db,
        &[
            "--drip",
            "greeting",
            "--drip-bytes",
            "4",
            "--message",
            "hello\r\n",
        ],
    );
    let mut peer = connect(server.addr);
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 1.0);
    // Its greeting a few bytes an interval, then the ordinary close: trapped no more.
    assert_eq!(read_to_eof(&mut peer).unwrap(), b"hello\r\n");
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 0.0);
    metric_reaches(&server, r#"greeter_bytes_dripped_total{country="NZ"}"#, 7.0);
    // One that spoke first lingers after its greeting, waiting for its EOF: no longer
    // trapped either.
    let mut speaker = connect(server.addr);
    speaker.write_all(b"EHLO x\r\n").unwrap();
    assert_eq!(read_to_eof(&mut speaker).unwrap(), b"hello\r\n");
    metric_reaches(
        &server,
        r#"greeter_trapped_clients_total{country="NZ"}"#,
        2.0,
    );
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 0.0);
    drop(speaker);
}

#[test]
fn a_client_a_policy_traps_is_placed_too() {
    let db = temp_file("country.mmdb", &loopback_in("NZ"));
    let server = spawn_server(&[
        "--deny",
        "127.0.0.1",
        "--deny-action",
        "tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--geoip-db",
        db.arg(),
    ]);
    let peer = connect(server.addr);
    let trap = nth_line(&server, "TRAP peer=", 1);
    assert!(trap.ends_with(" why=deny country=NZ"), "{trap}");
    drop(peer);
    assert!(nth_line(&server, "CLOSE peer=", 1).ends_with(" country=NZ"));
}

#[test]
fn a_database_without_countries_is_refused_at_start_and_by_check_config() {
    let asn = temp_file("asn.mmdb", &mmdb::asn_db());
    let corrupt = temp_file("corrupt.mmdb", b"not a database at all");
    let country = temp_file("country.mmdb", &loopback_in("NZ"));
    // Sparse: 8 TiB named, nothing written; read whole it would not fit in memory.
    let huge = temp_file("huge.mmdb", b"");
    std::fs::OpenOptions::new()
        .write(true)
        .open(huge.arg())
        .unwrap()
        .set_len(8 << 40)
        .unwrap();
    for check_only in [true, false] {
        for (db, says) in [
            (
                asn.arg().to_owned(),
                "its records hold no country (database type \"GeoLite2-ASN\")",
            ),
            (corrupt.arg().to_owned(), "not a valid MaxMind DB file"),
            (
                huge.arg().to_owned(),
                "it is 8796093022208 bytes, over the 1 GiB a country or city database takes",
            ),
            (
                format!("{}.missing", country.arg()),
                "no such file or directory",
            ),
        ] {
            let mut args = vec!["--port", "0", "--tarpit", "--geoip-db", &db];
            if check_only {
                args.push("--check-config");
            }
            let (status, _, stderr) = run_binary("greeter-server", &args);
            // As for every file that cannot be used (a --deny-file, a --message-file):
            // a bad config for --check-config, a failed start for a start.
            let code = if check_only { 2 } else { 1 };
            assert_eq!(status.code(), Some(code), "{db}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains(&format!("cannot use geoip-db file {db}: {says}")),
                "{stderr}"
            );
        }
    }
    // A country database passes, printed as an absolute, normalised path.
    let dir = country.parent().unwrap();
    let name = country.file_name().unwrap().to_str().unwrap();
    let relative = format!("././/{name}");
    let (status, stdout, stderr) = run_binary_in(
        "greeter-server",
        &["--geoip-db", &relative, "--check-config"],
        &[],
        Some(dir),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout.contains(&format!("geoip-db = {:?}", country.arg())),
        "{stdout}"
    );
}

#[test]
fn sighup_reads_a_replaced_database_and_keeps_the_running_one_when_the_new_is_bad() {
    let dir = temp_dir("geoip-reload");
    let db = dir.write("country.mmdb", &loopback_in("NZ"));
    let server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
        "--geoip-db",
        db.to_str().unwrap(),
    ]);
    let replace = |bytes: &[u8]| {
        let next = dir.write("country.mmdb.new", bytes);
        std::fs::rename(next, &db).unwrap();
    };
    let _first = connect(server.addr);
    assert!(nth_line(&server, "TRAP peer=", 1).ends_with(" country=NZ"));
    // Replaced by rename, as a database updater does: the next client is French.
    replace(&loopback_in("FR"));
    server.signal("HUP");
    let reloaded = nth_line(&server, "reload: geoip-db reloaded from", 1);
    assert!(reloaded.ends_with(": type=GeoLite2-Country"), "{reloaded}");
    let _second = connect(server.addr);
    assert!(nth_line(&server, "TRAP peer=", 2).ends_with(" country=FR"));
    // A bad one: one warning, counted as failed, and France still.
    replace(b"\x00\x01truncated");
    server.signal("HUP");
    let warning = nth_line(&server, "reload: keeping the old configuration", 1);
    assert!(
        warning.contains("cannot use geoip-db file") && warning.contains("not a valid MaxMind DB"),
        "{warning}"
    );
    metric_reaches(
        &server,
        r#"greeter_greeting_reloads_total{result="failed"}"#,
        1.0,
    );
    // One too large to read whole (sparse): refused the same way, the server alive.
    let huge = dir.write("country.mmdb.new", b"");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(8 << 40)
        .unwrap();
    std::fs::rename(huge, &db).unwrap();
    server.signal("HUP");
    let warning = nth_line(&server, "reload: keeping the old configuration", 2);
    assert!(warning.contains("over the 1 GiB"), "{warning}");
    let _third = connect(server.addr);
    assert!(nth_line(&server, "TRAP peer=", 3).ends_with(" country=FR"));
    metric_reaches(&server, r#"greeter_trapped_connections{country="FR"}"#, 2.0);
    metric_reaches(&server, r#"greeter_trapped_connections{country="NZ"}"#, 1.0);
}
