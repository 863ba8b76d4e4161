//! `--tarpit` across SIGUSR2: the old process hands every trapped client to the new
//! one once it serves (their sockets and where each trap stands), so that no client
//! sees its connection end, its drips go on at their interval from the new process,
//! and its trap's time counts from its first accept; a failed upgrade leaves them
//! dripping from the old one. Every generation writes to the first one's stderr;
//! this test binary is the subreaper of the generations it starts.
//!
//! The hold test runs small by default (600 clients held by `greeter-load --hold`'s
//! library, 200 ms drips); `GREETER_FULL_SCALE=1` makes it the issue's full-scale
//! run: 5,000 clients, `--drip-interval 1s`, three upgrades
//! (`GREETER_FULL_SCALE=1 cargo test --release --test tarpit_upgrade held`).

mod mmdb;
mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use util::*;

/// What one client received: when each read returned bytes, how many in all, and
/// whether its connection ended (EOF or an error) while it was watched.
#[derive(Debug, Default)]
struct Received {
    reads: Vec<Instant>,
    bytes: usize,
    ended: Option<Instant>,
}

/// Trapped clients, each read on a thread of its own as its drips come.
struct Clients {
    received: Vec<Arc<Mutex<Received>>>,
    readers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Kept open until dropped (the readers read clones).
    streams: Vec<TcpStream>,
}

impl Clients {
    /// Connects `count` clients to `addr`.
    fn connect(addr: SocketAddr, count: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Clients {
            received: Vec::new(),
            readers: Vec::new(),
            stop: Arc::clone(&stop),
            streams: Vec::new(),
        };
        for _ in 0..count {
            let stream = connect(addr);
            let mut reader = stream.try_clone().unwrap();
            reader
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let received = Arc::new(Mutex::new(Received::default()));
            let record = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            clients.readers.push(thread::spawn(move || {
                let mut buffer = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    match reader.read(&mut buffer) {
                        Ok(0) => {
                            record.lock().unwrap().ended = Some(Instant::now());
                            return;
                        }
                        Ok(n) => {
                            let mut record = record.lock().unwrap();
                            record.reads.push(Instant::now());
                            record.bytes += n;
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => {
                            record.lock().unwrap().ended = Some(Instant::now());
                            return;
                        }
                    }
                }
            }));
            clients.received.push(received);
            clients.streams.push(stream);
        }
        clients
    }

    /// How many clients' connections ended.
    fn ended(&self) -> usize {
        self.received
            .iter()
            .filter(|received| received.lock().unwrap().ended.is_some())
            .count()
    }

    /// Whether every client has read something after `since`.
    fn all_read_after(&self, since: Instant) -> bool {
        self.received.iter().all(|received| {
            received
                .lock()
                .unwrap()
                .reads
                .last()
                .is_some_and(|&last| last > since)
        })
    }

    /// The longest time between two reads of one client, from `from` on.
    fn longest_gap(&self, from: Instant) -> Duration {
        let mut longest = Duration::ZERO;
        for received in &self.received {
            let received = received.lock().unwrap();
            let reads: Vec<Instant> = received
                .reads
                .iter()
                .copied()
                .filter(|&at| at >= from)
                .collect();
            for pair in reads.windows(2) {
                longest = longest.max(pair[1] - pair[0]);
            }
        }
        longest
    }

    /// Stops reading and closes every client.
    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.streams.clear();
    }
}

/// How many lines of `log` contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

/// How many trapped connections the old processes' workers say they handed over.
fn handed(log: &str) -> usize {
    log.lines()
        .filter_map(|line| line.split("upgrade: handed ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum()
}

/// SIGUSR2 to `old`; waits until the new process has taken over `trapped` trapped
/// connections (its `took over` line, the `nth` in the log) and the old one has
/// exited 0, none of `clients` seeing its connection end; returns the new process
/// (ended when dropped, so that a failing check leaves no server behind).
fn upgrade_handing_over(
    server: &mut ServerProcess,
    clients: &Clients,
    old: u32,
    pid_file: &Path,
    trapped: usize,
    nth: usize,
) -> Generation {
    signal(old, "USR2");
    let new = Generation(wait_for(
        STEP_TIMEOUT,
        || "the new process to write the pid file".to_owned(),
        || pid_in(pid_file).filter(|&pid| pid != old),
    ));
    let code = if old == server.pid() {
        server.wait_exit_only(STEP_TIMEOUT).code().unwrap_or(-1)
    } else {
        wait_for_exit(old)
    };
    assert_eq!(code, 0, "the old process {old} exits 0");
    let took_over = format!("upgrade: took over {trapped} trapped connections");
    wait_for(
        STEP_TIMEOUT,
        || {
            // The upgrade lines alone: thousands of TRAP lines would bury them.
            let log = server.stderr();
            let upgrades: Vec<&str> = log
                .lines()
                .filter(|line| line.contains("upgrade:"))
                .collect();
            format!(
                "{nth} lines with {took_over:?}; the upgrade lines:\n{}",
                upgrades.join("\n")
            )
        },
        || {
            assert_eq!(clients.ended(), 0, "a client's connection ended");
            (count(&server.stderr(), &took_over) >= nth).then_some(())
        },
    );
    new
}

#[test]
fn trapped_clients_stay_trapped_across_three_upgrades_dripped_by_each_new_process() {
    become_subreaper();
    let pid_file = temp_path("trapped.pid");
    let interval = Duration::from_millis(200);
    let clients_count = 100;
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "200ms",
        "--workers",
        "2",
        "--log-connections",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let first_accept = Instant::now();
    let clients = Clients::connect(server.addr, clients_count);
    wait_for(
        STEP_TIMEOUT,
        || format!("{clients_count} TRAP lines"),
        || (count(&server.stderr(), "TRAP peer=") == clients_count).then_some(()),
    );
    let mut pid = server.pid();
    let mut generations = Vec::new();
    let mut last_exit = Instant::now();
    for nth in 1..=3 {
        let generation =
            upgrade_handing_over(&mut server, &clients, pid, &pid_file, clients_count, nth);
        let new = generation.0;
        last_exit = Instant::now();
        generations.push(generation);
        pid = new;
        // The old process is gone: these drips come from the new one.
        wait_until("every client dripped by the new process", || {
            assert_eq!(clients.ended(), 0, "a client's connection ended");
            clients.all_read_after(last_exit)
        });
        assert_eq!(clients.ended(), 0, "a client's connection ended");
    }
    // Two more intervals from the last process.
    let settle = Instant::now();
    wait_until("two more drips to every client", || {
        clients.all_read_after(settle + interval)
    });
    assert_eq!(clients.ended(), 0, "a client's connection ended");
    let gap = clients.longest_gap(first_accept);
    assert!(gap <= 2 * interval, "a gap of {gap:?} between two drips");
    let log = server.stderr();
    // A handover is neither a close nor an accept, in any process.
    assert_eq!(count(&log, "CLOSE peer="), 0, "{log}");
    assert_eq!(count(&log, "ACCEPT peer="), clients_count, "{log}");
    assert_eq!(count(&log, "TRAP peer="), clients_count, "{log}");
    assert_eq!(handed(&log), 3 * clients_count, "{log}");
    for line in log
        .lines()
        .filter(|line| line.contains("totals in_flight=0"))
    {
        // The old processes' totals: what they drained was not the trapped clients.
        assert_eq!(field(line, "drain"), "0", "{line}");
    }
    // The last process counts neither an accept nor a trap of its own.
    signal(pid, "USR1");
    let totals = wait_for(
        STEP_TIMEOUT,
        || "the last process's totals".to_owned(),
        || {
            let log = server.stderr();
            log.lines()
                .find(|line| line.contains(&format!("totals in_flight={clients_count} ")))
                .map(str::to_owned)
        },
    );
    assert_eq!(field(&totals, "accepted"), "0", "{totals}");
    assert_eq!(field(&totals, "trapped"), "0", "{totals}");

    // Their traps end now: each CLOSE counts from its first accept.
    let since_last_upgrade = last_exit.elapsed();
    let since_first = first_accept.elapsed();
    clients.close();
    let log = wait_for(
        STEP_TIMEOUT,
        || format!("{clients_count} CLOSE lines"),
        || Some(server.stderr()).filter(|log| count(log, "CLOSE peer=") == clients_count),
    );
    for line in log.lines().filter(|line| line.contains("CLOSE peer=")) {
        assert_eq!(field(line, "reason"), "trap-eof", "{line}");
        let ms: u64 = field(line, "ms").parse().unwrap();
        assert!(
            ms as u128 >= since_first.as_millis() - 100
                && ms as u128 > since_last_upgrade.as_millis(),
            "ms={ms}: trapped {since_first:?} ago, last upgrade {since_last_upgrade:?} ago: {line}"
        );
    }
    signal(pid, "TERM");
    assert_eq!(wait_for_exit(pid), 0);
}

#[test]
fn a_failed_upgrade_leaves_the_trapped_clients_dripping_from_the_old_process() {
    become_subreaper();
    let server = FromCopy::start(
        "greeter-tarpit-failing",
        &["--tarpit", "--drip-interval", "100ms", "--log-connections"],
    );
    let clients = Clients::connect(server.addr, 50);
    wait_for(
        STEP_TIMEOUT,
        || "50 TRAP lines".to_owned(),
        || (server.count_lines_with("TRAP peer=") == 50).then_some(()),
    );
    // The new binary fails at once, before it could say `ready`.
    replace_with_script(
        &server.exe,
        "#!/bin/sh\necho 'broken on purpose' >&2\nexit 1\n",
    );
    signal(server.pid(), "USR2");
    server.line_with("upgrade: keeping this process");
    let failed = Instant::now();
    wait_until("every client dripped after the failed upgrade", || {
        assert_eq!(clients.ended(), 0, "a client's connection ended");
        clients.all_read_after(failed + Duration::from_millis(200))
    });
    assert_eq!(server.count_lines_with("upgrade: handed"), 0);
    assert_eq!(server.count_lines_with("CLOSE peer="), 0);
    clients.close();
    wait_for(
        STEP_TIMEOUT,
        || "50 CLOSE lines of the old process".to_owned(),
        || (server.count_lines_with("reason=trap-eof") == 50).then_some(()),
    );
}

/// The hold test's scale: clients, drip interval, and how long the clients are held
/// in all.
fn hold_scale() -> (usize, Duration, Duration) {
    match std::env::var("GREETER_FULL_SCALE").as_deref() {
        Ok("1") => (5_000, Duration::from_secs(1), Duration::from_secs(20)),
        // Over 253 a worker: two messages each, of which the first is larger than
        // the kernel's largest piece of a stream (two workers' pieces could
        // interleave).
        _ => (600, Duration::from_millis(200), Duration::from_secs(4)),
    }
}

#[test]
fn clients_held_by_greeter_load_stay_connected_across_three_upgrades() {
    become_subreaper();
    let _ = greeter::fdlimit::raise_to_hard_limit();
    let (clients, interval, hold_for) = hold_scale();
    let pid_file = temp_path("held.pid");
    let interval_arg = format!("{}ms", interval.as_millis());
    let max_trapped = (2 * clients).to_string();
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        &interval_arg,
        "--max-trapped",
        &max_trapped,
        "--workers",
        "2",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    // The metrics socket is handed on with the listeners: each generation answers.
    let metrics = metrics_addr(&server);
    let dripped_by_this_generation = || {
        let (_, body) = http_get(metrics, "/metrics");
        samples(&body)
            .get(r#"greeter_bytes_dripped_total{country="unknown"}"#)
            .copied()
            .unwrap_or(0.0)
    };
    let options = greeter_load::hold::HoldOptions {
        addr: server.addr,
        clients,
        duration: hold_for,
    };
    let first_connect = Instant::now();
    let holding = thread::spawn(move || greeter_load::hold::hold(&options).unwrap());
    wait_for(
        STEP_TIMEOUT,
        || format!("{clients} TRAP lines"),
        || (count(&server.stderr(), "TRAP peer=") == clients).then_some(()),
    );
    // Every client is trapped by now, and held until the hold ends.
    let held_at_least = (first_connect + hold_for).saturating_duration_since(Instant::now());
    let mut pid = server.pid();
    let mut generations = Vec::new();
    let mut last_upgrade = Instant::now();
    let mut switches = Vec::new();
    // The clients are greeter-load's (checked by its report at the end).
    let no_readers = Clients::connect(server.addr, 0);
    for nth in 1..=3 {
        // A line to every client from this generation first (32 bytes each).
        wait_until("a line to every client from this generation", || {
            dripped_by_this_generation() >= (32 * clients) as f64
        });
        let asked = Instant::now();
        let generation =
            upgrade_handing_over(&mut server, &no_readers, pid, &pid_file, clients, nth);
        last_upgrade = Instant::now();
        switches.push(last_upgrade - asked);
        pid = generation.0;
        generations.push(generation);
    }
    assert!(
        last_upgrade < first_connect + hold_for - 2 * interval,
        "the upgrades took too long for the hold ({:?}): raise hold_for",
        last_upgrade - first_connect
    );
    let report = holding.join().unwrap();
    let log = server.stderr();
    assert_eq!(
        count(&log, "came with a record this version cannot read"),
        0,
        "{log}"
    );
    eprintln!("greeter-load --hold {clients}: {report:?}");
    eprintln!("SIGUSR2 to the old process's exit and the new one's `took over`: {switches:?}");
    let since_last_upgrade = last_upgrade.elapsed();
    assert_eq!(report.connected, clients, "{report:?}");
    assert_eq!(report.still_connected, clients, "{report:?}");
    assert_eq!(report.ended_early, 0, "{report:?}");
    assert_eq!(report.received_nothing, 0, "{report:?}");
    assert!(
        report.max_gap_ms <= 2 * interval.as_millis() as u64,
        "a gap of {} ms between two drips (interval {interval:?}): {report:?}",
        report.max_gap_ms
    );
    // The clients closed as the hold ended: each CLOSE counts from its first accept.
    let log = wait_for(
        STEP_TIMEOUT,
        || format!("{clients} CLOSE lines"),
        || Some(server.stderr()).filter(|log| count(log, "CLOSE peer=") == clients),
    );
    assert_eq!(count(&log, "ACCEPT peer="), clients);
    for line in log.lines().filter(|line| line.contains("CLOSE peer=")) {
        let ms: u128 = field(line, "ms").parse().unwrap();
        assert!(
            ms > since_last_upgrade.as_millis() && ms + 100 >= held_at_least.as_millis(),
            "ms={ms}: held at least {held_at_least:?}, the last upgrade {since_last_upgrade:?} \
             before: {line}"
        );
    }
    signal(pid, "TERM");
    assert_eq!(wait_for_exit(pid), 0);
}

#[test]
fn greeter_load_hold_sees_a_greeting_server_end_every_connection() {
    let mut server = spawn_server(&[]);
    let options = greeter_load::hold::HoldOptions {
        addr: server.addr,
        clients: 20,
        duration: Duration::from_millis(500),
    };
    let report = greeter_load::hold::hold(&options).unwrap();
    assert_eq!(
        (report.connected, report.ended_early),
        (20, 20),
        "{report:?}"
    );
    assert_eq!(report.still_connected, 0);
    assert_eq!(report.bytes, 20 * DEFAULT_GREETING.len() as u64);
    assert!(!report.all_held());
    server.signal("TERM");
    server.wait_exit(STEP_TIMEOUT);
}

#[test]
fn a_dripped_greeting_goes_on_from_its_offset_in_the_new_process() {
    become_subreaper();
    let pid_file = temp_path("greeting.pid");
    let banner = "220 mail.example.com ESMTP, dripped two bytes at a time\r\n";
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip",
        "greeting",
        "--drip-bytes",
        "2",
        "--drip-interval",
        "50ms",
        "--message",
        banner,
        "--log-connections",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let mut client = connect(server.addr);
    let mut first = [0u8; 8];
    client.read_exact(&mut first).unwrap();
    // This client is read here (its bytes checked), not by a reader thread.
    let no_readers = Clients::connect(server.addr, 0);
    let old = server.pid();
    let generation = upgrade_handing_over(&mut server, &no_readers, old, &pid_file, 1, 1);
    let new = generation.0;
    // The rest, from the new process, then its ordinary close.
    let rest = read_to_eof(&mut client).unwrap();
    assert_eq!([&first[..], &rest].concat(), banner.as_bytes());
    let close = nth_line(&server, "CLOSE peer=", 1);
    assert_eq!(field(&close, "bytes"), banner.len().to_string(), "{close}");
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

#[test]
fn a_trapped_client_keeps_its_country_across_an_upgrade() {
    become_subreaper();
    let pid_file = temp_path("country.pid");
    let db = temp_file(
        "upgrade-country.mmdb",
        &mmdb::country_db(
            "GeoLite2-Country",
            &[("127.0.0.0/8", "NZ"), ("::1/128", "NZ")],
        ),
    );
    let mut server = spawn_server(&[
        "--tarpit",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--metrics",
        "127.0.0.1:0",
        "--geoip-db",
        db.arg(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let metrics = metrics_addr(&server);
    let mut client = connect(server.addr);
    let mut line = [0u8; 32];
    client.read_exact(&mut line).unwrap();
    let no_readers = Clients::connect(server.addr, 0);
    let old = server.pid();
    let generation = upgrade_handing_over(&mut server, &no_readers, old, &pid_file, 1, 1);
    let new = generation.0;
    // The new process counts it under its country: trapped here, not trapped anew.
    let gauge = r#"greeter_trapped_connections{country="NZ"}"#;
    wait_until("the new process's gauge to count it under NZ", || {
        samples(&http_get(metrics, "/metrics").1).get(gauge) == Some(&1.0)
    });
    let scraped = samples(&http_get(metrics, "/metrics").1);
    assert_eq!(
        scraped.get(r#"greeter_trapped_clients_total{country="NZ"}"#),
        Some(&0.0)
    );
    client.read_exact(&mut line).unwrap();
    drop(client);
    let close = nth_line(&server, "CLOSE peer=", 1);
    assert!(close.ends_with(" country=NZ"), "{close}");
    wait_until("its country's gauge back at 0", || {
        samples(&http_get(metrics, "/metrics").1).get(gauge) == Some(&0.0)
    });
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

#[test]
fn clients_waiting_in_a_full_tarpit_s_backlog_are_left_to_the_new_process() {
    become_subreaper();
    let pid_file = temp_path("full.pid");
    let mut server = spawn_server(&[
        "--tarpit",
        "--max-trapped",
        "5",
        "--drip-interval",
        "100ms",
        "--log-connections",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let trapped = Clients::connect(server.addr, 5);
    let start = Instant::now();
    wait_until("five trapped clients dripped", || {
        trapped.all_read_after(start)
    });
    // Ten more wait in the backlog while the tarpit is full. The new process, empty
    // when it starts, may trap some of them before it is handed the five (it keeps
    // those past its limit); the old process's drain leaves the rest in the backlog
    // (it used to accept them, only to close them trap-full).
    let waiting = Clients::connect(server.addr, 10);
    let old = server.pid();
    let generation = upgrade_handing_over(&mut server, &waiting, old, &pid_file, 5, 1);
    let new = generation.0;
    let handed = Instant::now();
    wait_until("the handed clients dripped by the new process", || {
        assert_eq!(waiting.ended(), 0, "a waiting client's connection ended");
        trapped.all_read_after(handed)
    });
    let log = server.stderr();
    assert!(!log.contains("trap-full"), "{log}");
    assert_eq!(waiting.ended(), 0);
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

#[test]
fn a_dripped_greeting_ends_as_it_began_though_the_new_process_greets_otherwise() {
    become_subreaper();
    let pid_file = temp_path("began.pid");
    let began = "220 mail.example.com ESMTP Postfix\r\n";
    let toml = |message: &str| {
        format!(
            "tarpit = true\ndrip = \"greeting\"\ndrip-bytes = 4\ndrip-interval = \"50ms\"\n\
             log-connections = true\nport = 0\npid-file = {:?}\nmessage = {:?}\n",
            pid_file.to_str().unwrap(),
            message
        )
    };
    let (command, path) = ServerCommand::new(&[]).config("began.toml", &toml(began));
    let mut server = command.spawn();
    let mut client = connect(server.addr);
    let mut first = [0u8; 8];
    client.read_exact(&mut first).unwrap();
    // The new process's greeting is another (written by rename, as a deploy would).
    let next = path.with_extension("next");
    std::fs::write(&next, toml("220 mx.other.org ESMTP\r\n")).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let no_readers = Clients::connect(server.addr, 0);
    let old = server.pid();
    let generation = upgrade_handing_over(&mut server, &no_readers, old, &pid_file, 1, 1);
    let new = generation.0;
    let rest = read_to_eof(&mut client).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&[&first[..], &rest].concat()),
        began,
        "the greeting it began, whole"
    );
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}
