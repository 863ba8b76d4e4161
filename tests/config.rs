//! The config file, the environment and `--check-config`: which layer wins, what an
//! error says, that the printed configuration reads back the same, `[[listener]]`
//! tables each serving their own greeting, and what SIGHUP applies (and what it
//! leaves for a restart). These drive the real binary, and the whole server
//! in-process for the reload under load.

mod mmdb;
mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use greeter::supervisor::Request;
use greeter::CloseReason;
use util::*;

/// `greeter-server ARGS --check-config` with `env`: exit code, stdout, stderr.
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let argv: Vec<&str> = args.iter().copied().chain(["--check-config"]).collect();
    let (status, stdout, stderr) = run_binary_with_env("greeter-server", &argv, env);
    (status.code(), String::from_utf8(stdout).unwrap(), stderr)
}

/// The printed configuration as `(section, key) -> (value, source)`; sections are
/// `top` and `listener N`.
fn printed(config: &str) -> BTreeMap<(String, String), (String, String)> {
    let mut section = "top".to_owned();
    let mut listeners = 0;
    let mut values = BTreeMap::new();
    for line in config.lines() {
        if line == "[[listener]]" {
            listeners += 1;
            section = format!("listener {listeners}");
        } else if let Some((assignment, source)) = line.rsplit_once("  # ") {
            let (key, value) = assignment.split_once(" = ").expect("key = value");
            values.insert(
                (section.clone(), key.to_owned()),
                (value.to_owned(), source.to_owned()),
            );
        }
    }
    values
}

fn value_of(config: &str, key: &str) -> (String, String) {
    printed(config)
        .remove(&("top".to_owned(), key.to_owned()))
        .unwrap_or_else(|| panic!("no {key} in:\n{config}"))
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let file = temp_file(
        "layers.toml",
        b"backlog = 64\nwrite-timeout = \"5s\"\nmax-connections = 100\n",
    );
    let env = [("GREETER_BACKLOG", "32"), ("GREETER_WRITE_TIMEOUT", "7s")];
    let (code, out, err) = check(&["--config", file.arg(), "--backlog", "16"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(value_of(&out, "backlog"), ("16".into(), "flag".into()));
    assert_eq!(
        value_of(&out, "write-timeout"),
        ("\"7s\"".into(), "env GREETER_WRITE_TIMEOUT".into())
    );
    assert_eq!(
        value_of(&out, "max-connections"),
        ("100".into(), "file".into())
    );
    assert_eq!(
        value_of(&out, "linger-timeout"),
        ("\"2s\"".into(), "default".into())
    );
    // GREETER_CONFIG names the file when --config does not.
    let (code, out, err) = check(&[], &[("GREETER_CONFIG", file.arg())]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(value_of(&out, "backlog"), ("64".into(), "file".into()));
}

#[test]
fn a_bad_file_is_one_line_naming_file_line_and_key_and_exit_2() {
    let cases: &[(&str, &str)] = &[
        (
            "port = 0\n\nmax-conections = 5\n",
            "FILE:3: unknown key max-conections (did you mean max-connections?)",
        ),
        (
            "max-connections = \"many\"\n",
            "FILE:1: max-connections must be an integer, not a string (write max-connections = 100)",
        ),
        ("\n\nbacklog = 0\n", "FILE:3: backlog: 0 is not in 1..=2147483647"),
        ("\nport = 65536\n", "FILE:2: port: 65536 is not in 0..=65535"),
        ("log-connections = 1\n", "FILE:1: log-connections must be true or false, not an integer"),
        ("message = \"\"\n", "FILE:1: message: the greeting is empty (give a non-empty greeting)"),
        ("port = = 1\n", "FILE:1: "),
        ("port = 1\nport = 2\n", "FILE:2: "),
        ("message = \"a\"\nmessage-file = \"/b\"\n", "FILE:2: message and message-file are both set"),
        ("[[listener]]\nhost = \"127.0.0.1\"\n", "FILE:1: this [[listener]] has no port"),
        ("port = 1\n[[listener]]\nport = 2\n", "FILE:1: port at the top level cannot be used with the [[listener]] tables"),
    ];
    for (text, expected) in cases {
        let file = temp_file("bad.toml", text.as_bytes());
        let expected = format!("greeter-server: {}", expected.replace("FILE", file.arg()));
        for check_only in [true, false] {
            let mut args = vec!["--config", file.arg()];
            if check_only {
                args.push("--check-config");
            }
            let (status, stdout, stderr) = run_binary("greeter-server", &args);
            assert_eq!(status.code(), Some(2), "{text:?}: {stderr}");
            assert!(stdout.is_empty(), "{text:?}");
            assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
            assert!(
                stderr.starts_with(&expected),
                "{text:?}: expected {expected:?}, got {stderr}"
            );
        }
    }
    // A FIFO nobody writes to is refused at once, not waited on.
    let fifo = temp_file("config.fifo", b"");
    std::fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&*fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (status, _, stderr) = run_binary("greeter-server", &["--config", fifo.arg()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "greeter-server: cannot read config file {}: not a regular file (give --config a TOML file)\n",
            fifo.arg()
        )
    );
    let (status, _, stderr) =
        run_binary("greeter-server", &["--config", "/nonexistent/greeter.toml"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "greeter-server: cannot read config file /nonexistent/greeter.toml: no such file or directory (check the --config path)\n"
    );
}

#[test]
fn check_config_prints_a_config_that_reads_back_the_same() {
    let greeting = temp_file("check-greeting.txt", b"from a file\n");
    let text = format!(
        "max-connections = 500\nlinger-timeout = \"1m\"\nsend-buffer = \"64KiB\"\n\n\
         [[listener]]\nhost = [\"127.0.0.1\", \"::1\"]\nport = 2222\nmessage = \"SSH-2.0-OpenSSH_9.6\\r\\n\"\n\n\
         [[listener]]\nport = 2525\nmessage-file = {:?}\n\n\
         [[listener]]\nport = 8080\nproxy-protocol = true\n",
        greeting.arg()
    );
    let file = temp_file("check.toml", text.as_bytes());
    let env = [("GREETER_WRITE_TIMEOUT", "9s")];
    let (code, first, err) = check(&["--config", file.arg(), "--log-connections"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let values = printed(&first);
    let sources: Vec<&str> = values.values().map(|(_, source)| source.as_str()).collect();
    for source in ["default", "file", "flag", "env GREETER_WRITE_TIMEOUT"] {
        assert!(sources.contains(&source), "no {source} in:\n{first}");
    }
    let at = |section: &str, key: &str| values[&(section.to_owned(), key.to_owned())].0.clone();
    assert_eq!(at("listener 1", "message"), "\"SSH-2.0-OpenSSH_9.6\\r\\n\"");
    assert_eq!(at("listener 1", "host"), "[\"127.0.0.1\", \"::1\"]");
    assert_eq!(
        at("listener 2", "message-file"),
        format!("{:?}", greeting.arg())
    );
    assert_eq!(at("listener 3", "proxy-protocol"), "true");
    assert_eq!(at("top", "send-buffer"), "\"64KiB\"");

    // Fed back alone (no flags, no environment), it gives the same settings.
    let printed_file = temp_file("check-printed.toml", first.as_bytes());
    let (code, second, err) = check(&["--config", printed_file.arg()], &[]);
    assert_eq!(code, Some(0), "{err}");
    let without_sources = |config: &str| {
        printed(config)
            .into_iter()
            .map(|(key, (value, _))| (key, value))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        without_sources(&first),
        without_sources(&second),
        "{first}\n---\n{second}"
    );

    // A check reads the greeting files: a missing one is the error, exit 2.
    drop(greeting);
    let (code, out, err) = check(&["--config", file.arg()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("greeter-server: cannot read greeting file"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_environment_is_checked_like_the_flags() {
    let (code, out, err) = check(&[], &[("GREETER_MAX_CONNECTIONS", "0")]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(
        err,
        "greeter-server: GREETER_MAX_CONNECTIONS=\"0\": 0 is not in 1..=4294967295\n"
    );
    let (code, _, err) = check(&[], &[("GREETER_MAX_CONECTIONS", "5")]);
    assert_eq!(code, Some(0));
    assert_eq!(
        err,
        "greeter-server: warning: ignoring GREETER_MAX_CONECTIONS: no such setting (did you mean GREETER_MAX_CONNECTIONS?)\n"
    );
}

#[test]
fn host_or_port_flags_beside_listener_tables_are_an_error() {
    let file = temp_file("tables.toml", b"[[listener]]\nport = 0\n");
    for flag in ["--port", "--host"] {
        let value = if flag == "--port" { "1" } else { "127.0.0.1" };
        let (status, _, stderr) =
            run_binary("greeter-server", &["--config", file.arg(), flag, value]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr,
            format!(
                "greeter-server: {flag} cannot be used with the [[listener]] tables of {} (give each listener its {})\n",
                file.arg(),
                &flag[2..]
            )
        );
    }
}

/// Three listeners on port 0: an SSH banner, an SMTP banner, the default greeting.
const THREE_LISTENERS: &str = "\
[[listener]]
port = 0
message = \"SSH-2.0-OpenSSH_9.6\\r\\n\"

[[listener]]
port = 0
message = \"220 mail.example.org ESMTP\\r\\n\"

[[listener]]
port = 0
";

#[test]
fn each_listener_answers_with_its_own_greeting() {
    let (command, _path) = ServerCommand::new(&[]).config("three.toml", THREE_LISTENERS);
    let server = command.spawn();
    let addrs = server.listening_addrs(2);
    let expected: [&[u8]; 3] = [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"220 mail.example.org ESMTP\r\n",
        DEFAULT_GREETING,
    ];
    for round in 0..3 {
        for (addr, greeting) in addrs.iter().zip(expected) {
            let mut peer = connect(*addr);
            let received = read_to_eof(&mut peer).unwrap();
            assert_same_bytes(&received, greeting);
            let _ = round;
        }
    }
}

#[test]
fn proxy_protocol_can_be_set_for_one_listener_alone() {
    let config = "[[listener]]\nport = 0\nproxy-protocol = true\nmessage = \"proxied\"\n\n\
                  [[listener]]\nport = 0\nmessage = \"direct\"\n";
    let (command, _path) = ServerCommand::new(&["--log-connections"]).config("proxy.toml", config);
    let server = command.spawn();
    let addrs = server.listening_addrs(1);
    // With a header: greeted, and the client it names is logged.
    let mut proxied = connect(addrs[0]);
    proxied
        .write_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 4000 80\r\n")
        .unwrap();
    assert_same_bytes(&read_to_eof(&mut proxied).unwrap(), b"proxied");
    server.wait_for_log("ACCEPT peer=192.0.2.7:4000");
    // Without one, that listener greets nobody...
    let mut headerless = connect(addrs[0]);
    headerless.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_to_eof(&mut headerless).unwrap_or_default(), b"");
    // ...while the other greets at once, without one.
    let mut direct = connect(addrs[1]);
    assert_same_bytes(&read_to_eof(&mut direct).unwrap(), b"direct");
}

/// A config of two listeners with these greetings, and `extra` top-level lines.
fn two_listeners(first: &str, second: &str, extra: &str) -> String {
    format!(
        "{extra}linger-timeout = \"1m\"\n\n[[listener]]\nport = 0\nmessage = {first:?}\n\n\
         [[listener]]\nport = 0\nmessage = {second:?}\n"
    )
}

/// Connects to `addr` until `stop`, reading each greeting whole and checking that it is
/// `old` or `new` (never another listener's); counts what it got.
fn greet_until(
    addr: SocketAddr,
    old: &'static [u8],
    new: &'static [u8],
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 2]>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..200_000 {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            let mut peer = connect_from("127.0.0.2", addr);
            let received = read_to_eof(&mut peer).expect("a whole greeting");
            let which = match received.as_slice() {
                got if got == old => 0,
                got if got == new => 1,
                got => panic!("{addr} sent {:?}", String::from_utf8_lossy(got)),
            };
            counts[which].fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn a_reload_under_load_switches_every_worker_to_the_new_greetings_and_limits_together() {
    const OLD: [&[u8]; 2] = [b"first, before", b"second, before"];
    const NEW: [&[u8]; 2] = [b"first, after the reload", b"second, after the reload"];
    let text = |greetings: [&[u8]; 2], extra: &str| {
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        two_listeners(&text(greetings[0]), &text(greetings[1]), extra)
    };
    // A third listener whose greeting outgrows the socket buffers, so that a peer
    // that does not read stays held.
    let large = temp_file("reload-load-large", &large_greeting(16 * 1024 * 1024));
    let held_listener = format!(
        "\n[[listener]]\nport = 0\nmessage-file = {:?}\n",
        large.arg()
    );
    let text = |greetings: [&[u8]; 2], extra: &str| text(greetings, extra) + &held_listener;
    let file = temp_file("reload-load.toml", text(OLD, "").as_bytes());
    let server = supervise_exactly(&["--config", file.arg(), "--workers", "4"]);
    assert_eq!(server.addrs.len(), 3);
    wait_until("every worker to publish its limit", || {
        server.snapshot().max_connections == 4 * 10_000
    });

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<[AtomicU64; 2]>> = (0..2).map(|_| Arc::default()).collect();
    let load: Vec<_> = (0..2)
        .map(|index| {
            greet_until(
                server.addrs[index],
                OLD[index],
                NEW[index],
                Arc::clone(&stop),
                Arc::clone(&counts[index]),
            )
        })
        .collect();
    wait_until("both listeners to greet under load", || {
        counts
            .iter()
            .all(|count| count[0].load(Ordering::Relaxed) > 100)
    });

    std::fs::write(&file, text(NEW, "max-connections = 9000\nmax-per-ip = 1\n")).unwrap();
    server.requests.send(Request::Reload);
    // Every worker publishes the limit it runs with: all four have switched.
    wait_until("every worker to take the new config", || {
        server.snapshot().max_connections == 4 * 9000
    });
    let switched: Vec<u64> = counts
        .iter()
        .map(|count| count[1].load(Ordering::Relaxed))
        .collect();
    wait_until("both listeners to greet with the new bytes", || {
        counts
            .iter()
            .zip(&switched)
            .all(|(count, before)| count[1].load(Ordering::Relaxed) > before + 100)
    });
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread
            .join()
            .expect("every greeting was one of its listener's");
    }
    for (index, addr) in server.addrs[..2].iter().enumerate() {
        let mut peer = connect(*addr);
        assert_same_bytes(&read_to_eof(&mut peer).unwrap(), NEW[index]);
    }

    // The new --max-per-ip applies too (in each worker): of five connections from
    // one address that do not read their large greeting, each worker holds one at
    // most, so at least one is refused.
    let mut holders = Vec::new();
    for opened in 1..=5 {
        holders.push(connect_from("127.0.0.3", server.addrs[2]));
        wait_until("the connection to be held or refused", || {
            let snapshot = server.snapshot();
            snapshot.held as u64 + snapshot.totals.closes(CloseReason::PerIpLimit) == opened
        });
    }
    let snapshot = server.snapshot();
    assert!(
        snapshot.held <= 4,
        "{} held from one address",
        snapshot.held
    );
    assert!(snapshot.totals.closes(CloseReason::PerIpLimit) >= 1);
    drop(holders);
    server.stop();
}

#[test]
fn a_bad_file_at_reload_changes_nothing() {
    let config = two_listeners("one", "two", "");
    let (command, path) = ServerCommand::new(&[]).config("reload-bad.toml", &config);
    let server = command.spawn();
    let addrs = server.listening_addrs(1);
    let broken = format!(
        "max-conections = 3\n{}",
        config.replace("\"one\"", "\"changed\"")
    );
    std::fs::write(&path, broken).unwrap();
    server.signal("HUP");
    server.wait_for_log(&format!(
        "reload: keeping the old configuration: {}:1: unknown key max-conections (did you mean max-connections?)",
        path.display()
    ));
    for (addr, greeting) in addrs.iter().zip([b"one".as_slice(), b"two"]) {
        let mut peer = connect(*addr);
        assert_same_bytes(&read_to_eof(&mut peer).unwrap(), greeting);
    }
    // Fixed, it applies.
    std::fs::write(&path, config.replace("\"one\"", "\"changed\"")).unwrap();
    server.signal("HUP");
    server.wait_for_log("reload: configuration reloaded from");
    let mut peer = connect(addrs[0]);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), b"changed");
}

#[test]
fn a_reload_that_changes_the_port_warns_and_keeps_the_old_listener_serving() {
    let (command, path) =
        ServerCommand::new(&[]).config("reload-port.toml", "port = 0\nmessage = \"before\"\n");
    let server = command.spawn();
    let port = free_port();
    std::fs::write(
        &path,
        format!("port = {port}\nmessage = \"after\"\nbacklog = 10\n"),
    )
    .unwrap();
    server.signal("HUP");
    let shown = path.display();
    server.wait_for_log("reload: configuration reloaded from");
    let log = server.stderr();
    assert!(
        log.contains(&format!(
            "reload: port changed in {shown}; it takes effect at the next restart"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "reload: backlog changed in {shown}; it takes effect at the next restart"
        )),
        "{log}"
    );
    // The old listener serves on, with the rest of the reload applied.
    let mut peer = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), b"after");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing was bound on the new port"
    );
}

#[test]
fn the_shipped_config_and_its_example_check_and_name_every_key() {
    let shipped = std::fs::read_to_string("docs/deploy/greeter.toml").unwrap();
    let (code, out, err) = check(&["--config", "docs/deploy/greeter.toml"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(value_of(&out, "workers"), ("0".into(), "file".into()));
    // The commented [[listener]] example, uncommented, is a valid config too.
    let example: String = shipped
        .lines()
        .skip_while(|line| *line != "# [[listener]]")
        .filter_map(|line| line.strip_prefix("# ").or((line == "#").then_some("")))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(example.matches("[[listener]]").count(), 3, "{example}");
    let example_file = temp_file("shipped-example.toml", example.as_bytes());
    let (code, out, err) = check(&["--config", example_file.arg()], &[]);
    assert_eq!(code, Some(0), "{err}\n{example}");
    assert_eq!(
        printed(&out)
            .keys()
            .filter(|(_, key)| key == "port")
            .count(),
        3
    );
    // Every commented key line of the example and of the file the package installs
    // is valid when uncommented: all of them at once are a TOML document (with the
    // example's [[listener]] headers), and each alone is a config that checks.
    let packaged = std::fs::read_to_string("docs/deploy/debian/greeter.toml").unwrap();
    let files = temp_dir("uncommented");
    files.write("banner.txt", b"hello");
    files.write("allow.list", b"192.0.2.0/24\n");
    files.write("deny.list", b"198.51.100.0/24\n");
    files.write(
        "GeoLite2-Country.mmdb",
        &mmdb::country_db("GeoLite2-Country", &[("192.0.2.0/24", "NZ")]),
    );
    for (path, text) in [
        ("docs/deploy/greeter.toml", &shipped),
        ("docs/deploy/debian/greeter.toml", &packaged),
    ] {
        let key_line = |line: &str| {
            greeter::config::keys::KEYS.iter().any(|key| {
                line.strip_prefix(key.name)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        };
        let mut uncommented = String::new();
        let mut lines = 0;
        for line in text.lines() {
            match line.strip_prefix("# ") {
                Some(setting) if key_line(setting) || setting == "[[listener]]" => {
                    lines += usize::from(key_line(setting));
                    uncommented.push_str(setting);
                    let alone = files.write("alone.toml", format!("{setting}\n").as_bytes());
                    if key_line(setting) {
                        let (code, _, err) = check(&["--config", alone.to_str().unwrap()], &[]);
                        assert_eq!(code, Some(0), "{path}: {setting}\n{err}");
                    }
                }
                _ => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        assert!(
            lines >= greeter::config::keys::KEYS.len() - 2,
            "{path}: {lines} key lines"
        );
        if let Err(err) = toml::de::DeTable::parse(&uncommented) {
            panic!("{path} uncommented is not TOML: {err}\n{uncommented}");
        }
    }
    // Every key is in the shipped file and in the one table of operations.md.
    let operations = std::fs::read_to_string("docs/operations.md").unwrap();
    for key in greeter::config::keys::KEYS {
        let name = key.name;
        assert!(
            shipped.contains(&format!("# {name} = ")) || shipped.contains(&format!("\n{name} = ")),
            "docs/deploy/greeter.toml lacks {name}"
        );
        let variable = greeter::config::keys::env_var(name);
        assert!(
            operations.contains(&format!("| `{variable}`"))
                && operations.contains(&format!("| `{name}`")),
            "operations.md's settings table lacks {name}"
        );
    }
}

/// The lines of a printed configuration that are settings, each without the comment
/// after its value (`# flag` reads back as `# file`).
fn setting_lines(config: &str) -> Vec<&str> {
    config
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            line.rsplit_once("  # ")
                .map_or(line, |(setting, _)| setting)
        })
        .collect()
}

/// `--check-config ARGS` with `env` in `cwd`: the printed configuration (exit 0).
#[track_caller]
fn check_in(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let argv: Vec<&str> = args.iter().copied().chain(["--check-config"]).collect();
    let (status, stdout, stderr) = run_binary_in("greeter-server", &argv, env, Some(cwd));
    assert_eq!(status.code(), Some(0), "{args:?} {env:?}: {stderr}");
    String::from_utf8(stdout).unwrap()
}

/// Feeds `printed` back as `--config`, from another directory, and again: the
/// settings stay the same and the second round is byte for byte the first. Returns
/// the keys it sets.
fn assert_fixed_point(printed: &str) -> Vec<(String, String)> {
    let elsewhere = temp_dir("fed-back");
    let file = elsewhere.write("printed #1.toml", printed.as_bytes());
    let again = check_in(&elsewhere, &["--config", "printed #1.toml"], &[]);
    assert_eq!(
        setting_lines(printed),
        setting_lines(&again),
        "fed back, it reads differently:\n{printed}\n---\n{again}"
    );
    std::fs::write(&file, &again).unwrap();
    let third = check_in(
        std::path::Path::new("/"),
        &["--config", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(again, third, "not a fixed point");
    let mut section = "top".to_owned();
    let mut set = Vec::new();
    for line in setting_lines(printed) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            set.push((section.clone(), key.to_owned()));
        }
    }
    set
}

#[test]
fn check_config_prints_what_runs_and_reads_back_byte_for_byte_from_any_directory() {
    let dir = temp_dir("fixed-point");
    let at = |relative: &str| format!("{}/{relative}", dir.display());
    dir.write("greeting #1.txt", "ünïcödé # greeting\n".as_bytes());
    dir.write("lists/allow list.txt", b"127.0.0.0/8\n");
    dir.write("lists/deny.txt", b"192.0.2.0/24\n");
    dir.write(
        "geo/country.mmdb",
        &mmdb::country_db("DBIP-Country-Lite", &[("192.0.2.0/24", "NZ")]),
    );
    // Every key from a flag, the environment or the file, each written awkwardly:
    // zero-padded or signed numbers, escapes, unicode, `#` in strings, relative
    // paths (the file's relative to its directory, the others' to the current one).
    dir.write(
        "conf/greeter.toml",
        b"deny-file = [\"../lists/./deny.txt\", \"..//lists/../lists/deny.txt\"]\n\
          deny = [\"198.51.100.0/24\", \"2001:DB8::/32\"]\n\
          send-buffer = \"065536\"\n\
          rate-table-size = 0x10\n\
          pass-table-size = 0o17\n\
          drain-timeout = \"010s\"\n\
          proxy-timeout = \"03s\"  # a comment\n\
          message-file = \"../greeting #1.txt\"  # replaced by --message\n",
    );
    let flags = [
        "--config=conf/greeter.toml",
        "--port=0100",
        "--host=127.0.0.1",
        "--host=[::1]",
        "--message=tab\t \"quoted\" back\\slash # not a comment  # nor this \u{1}ünïcödé ☃\r\n",
        "--max-connections=0100",
        "--max-delayed=+030",
        "--pid-file=./run//greeter.pid",
        "--rate-prefix-v6=+048",
        "--backlog=0128",
        "--workers=00",
        "--deny-message=550 no # really\n",
        "--log-connections",
        "--greet-delay=0250ms",
        "--write-timeout=1m 30s",
        "--tarpit",
        "--drip=greeting",
        "--drip-line-length=040",
        "--drip-interval=05s",
        "--drip-bytes=+2",
    ];
    let env = [
        ("GREETER_MAX_PER_IP", "007"),
        ("GREETER_RATE_PREFIX_V4", "024"),
        ("GREETER_PROXY_PROTOCOL", "Yes"),
        ("GREETER_ALLOW", " 127.0.0.0/8 ,, ::1 "),
        ("GREETER_ALLOW_FILE", "lists/../lists/allow list.txt"),
        ("GREETER_MAX_RATE_PER_IP", "20/s"),
        ("GREETER_PREGREET", "drop"),
        ("GREETER_PASS_TTL", "012h"),
        ("GREETER_LINGER_TIMEOUT", "02s"),
        ("GREETER_LOG_FORMAT", "json"),
        ("GREETER_METRICS", "127.0.0.1:9464"),
        ("GREETER_UPGRADE_TIMEOUT", "10s"),
        ("GREETER_TRAP_TIMEOUT", "01h"),
        ("GREETER_MAX_TRAPPED", "0100"),
        ("GREETER_MAX_TRAPPED_PER_IP", "+3"),
        ("GREETER_GEOIP_DB", "geo//./../geo/country.mmdb"),
    ];
    let first = check_in(&dir, &flags, &env);
    for (key, value) in [
        ("port", "100".to_owned()),
        ("max-connections", "100".to_owned()),
        ("max-delayed", "30".to_owned()),
        ("pass-table-size", "15".to_owned()),
        ("backlog", "128".to_owned()),
        ("send-buffer", "65536".to_owned()),
        ("workers", "0".to_owned()),
        ("max-per-ip", "7".to_owned()),
        ("rate-prefix-v6", "48".to_owned()),
        ("allow-file", format!("[{:?}]", at("lists/allow list.txt"))),
        ("deny-file", format!("[{0:?}, {0:?}]", at("lists/deny.txt"))),
        ("pid-file", format!("{:?}", at("run/greeter.pid"))),
        ("geoip-db", format!("{:?}", at("geo/country.mmdb"))),
    ] {
        assert_eq!(value_of(&first, key).0, value, "{key} in:\n{first}");
    }
    let mut set = assert_fixed_point(&first);

    // [[listener]] tables, their paths relative to the file, named by a relative
    // --config.
    dir.write(
        "conf/tables.toml",
        b"message-file = \"./../greeting #1.txt\"\n\
          max-connections = 0o144\n\
          [[listener]]\n\
          host = [\"127.0.0.1\", \"[::1]\"]\n\
          port = 0\n\
          name = \"ssh.Port-22_b\"  # a # comment\n\
          rate-group = \"ssh.Port-22_b\"\n\
          message = \"nul \\u0000 del \\u007F \\u00e9 \\U0001F600 # x \\\"q\\\" \\\\ \\r\\n\"\n\
          deny = \"192.0.2.0/24\"\n\
          [[listener]]\n\
          host = \"127.0.0.1\"\n\
          port = +1_025\n\
          proxy-protocol = true\n\
          allow-file = [\"../lists/allow list.txt\"]\n\
          deny-file = \"./../lists/deny.txt\"\n\
          rate-prefix-v4 = 0b11000\n",
    );
    let tables = check_in(&dir, &["--config", "conf/tables.toml"], &[]);
    let values = printed(&tables);
    let value = |section: &str, key: &str| values[&(section.to_owned(), key.to_owned())].0.clone();
    assert_eq!(
        value("top", "message-file"),
        format!("{:?}", at("greeting #1.txt"))
    );
    assert_eq!(value("listener 2", "port"), "1025");
    assert_eq!(
        value("listener 2", "deny-file"),
        format!("[{:?}]", at("lists/deny.txt"))
    );
    set.extend(assert_fixed_point(&tables));

    // The walk covers every key.
    for key in greeter::config::keys::KEYS {
        assert!(
            set.iter().any(|(_, name)| name == key.name),
            "give {} an awkward value in this test",
            key.name
        );
    }
}

#[test]
fn a_variable_that_names_no_value_is_refused_at_start_and_by_check_config() {
    for (var, value) in [("GREETER_HOST", ","), ("GREETER_DENY_FILE", " , ")] {
        // A start that got past it fails anyway on the missing greeting, never serves.
        for check_only in [true, false] {
            let mut args = vec!["--port", "0", "--message-file", "/nonexistent/greeting"];
            if check_only {
                args.push("--check-config");
            }
            let (status, stdout, stderr) =
                run_binary_with_env("greeter-server", &args, &[(var, value)]);
            assert_eq!(status.code(), Some(2), "{var}: {stderr}");
            assert!(stdout.is_empty());
            assert_eq!(
                stderr,
                format!(
                    "greeter-server: {var}={value:?} names nothing between its commas (give one \
                     value or several separated by commas, or leave {var} empty to unset it)\n"
                )
            );
        }
    }
}

#[test]
fn check_config_refuses_listeners_that_the_start_would_refuse() {
    let port = free_port();
    let same =
        format!("[[listener]]\nport = {port}\n\n[[listener]]\nport = {port}\nmessage = \"b\"\n");
    let file = temp_file("same-port.toml", same.as_bytes());
    let expected = format!(
        "greeter-server: cannot listen on 127.0.0.1:{port}: two listeners name it \
         (give each [[listener]] its own host and port)\n"
    );
    let (code, out, err) = check(&["--config", file.arg()], &[]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(2), "", expected.as_str())
    );
    let (status, _, err) = run_binary("greeter-server", &["--config", file.arg()]);
    assert_eq!((status.code(), err.as_str()), (Some(1), expected.as_str()));
    // Within one listener too: a wildcard beside an address of its family.
    let (code, _, err) = check(
        &["--host", "0.0.0.0", "--host", "127.0.0.1", "--port", "0"],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("it overlaps 0.0.0.0:0"), "{err}");
}

#[test]
fn every_duration_flag_refuses_a_negative_duration_in_greeters_words() {
    use clap::CommandFactory;
    let commands = [
        greeter::config::ServerCli::command(),
        greeter::cli::ClientCli::command(),
        greeter_load::cli::LoadCli::command(),
    ];
    let mut checked = Vec::new();
    for command in commands {
        let name = command.get_name().to_owned();
        let durations: Vec<String> = command
            .get_arguments()
            .filter(|arg| arg.get_value_names().is_some_and(|names| names == ["DUR"]))
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect();
        for flag in durations {
            let argv = [name.as_str(), &format!("--{flag}"), "-1s"];
            let err = command.clone().try_get_matches_from(argv).unwrap_err();
            let text = err.to_string();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{argv:?}: {text}"
            );
            assert!(
                text.lines().next().unwrap().ends_with(
                    "\"-1s\" is negative: a duration is 0 or more \
                     (write durations like 250ms, 10s or 1m)"
                ),
                "{argv:?}: {text}"
            );
            checked.push(format!("{name} --{flag}"));
        }
    }
    // Every binary has some: a renamed value name would skip them silently.
    for binary in ["greeter-server", "greeter-client", "greeter-load"] {
        assert!(checked.iter().any(|c| c.starts_with(binary)), "{checked:?}");
    }
    // The binary itself: exit 2, the same wording; a flag where a value should be
    // still says what is missing.
    let (status, _, stderr) = run_binary("greeter-server", &["--linger-timeout", "-1s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid value '-1s' for '--linger-timeout <DUR>': \"-1s\" is negative"
        ),
        "{stderr}"
    );
    let (status, _, stderr) = run_binary("greeter-server", &["--write-timeout", "--check-config"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a duration is missing: --check-config is a flag"),
        "{stderr}"
    );
}

/// Every TOML example a reader may copy (README.md, docs/operations.md) is a config
/// file the server takes: `--check-config` exits 0 on each.
#[test]
fn every_toml_example_in_the_docs_is_a_config_the_server_takes() {
    let mut examples = 0;
    for doc in ["README.md", "docs/operations.md"] {
        let text =
            std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```toml\n") {
            let body = &rest[start + "```toml\n".len()..];
            let end = body.find("```").expect("a closed toml block");
            let example = &body[..end];
            // Ports as written may be taken or privileged: --check-config binds nothing.
            let file = temp_file("example.toml", example.as_bytes());
            let (code, _, stderr) = check(&["--config", file.arg()], &[]);
            assert_eq!(
                code,
                Some(0),
                "{doc}: this example is refused:\n{example}\n{stderr}"
            );
            examples += 1;
            rest = &body[end..];
        }
    }
    assert!(examples >= 3, "found {examples} examples");
}
