//! SIGUSR2: the running server starts its binary again, hands it the listening
//! sockets and drains once the new process serves. Every old process ends with exit
//! 0, and no connection is refused or reset meanwhile. This binary makes itself the
//! subreaper of what it starts (only this test binary: prctl applies to the whole
//! process), so that it can wait for every generation, not only the first.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// SIGUSR2 to `old`; returns the new process's pid once the pid file names it.
fn ask_for_upgrade(old: u32, pid_file: &Path) -> u32 {
    signal(old, "USR2");
    wait_for(
        STEP_TIMEOUT,
        || "the new process to write the pid file".to_owned(),
        || pid_in(pid_file).filter(|&pid| pid != old),
    )
}

/// SIGUSR2 to `old`; returns the new process's pid once the pid file names it and the
/// old one has exited 0.
fn upgrade(old: u32, pid_file: &Path, first: Option<&mut ServerProcess>) -> u32 {
    let new = ask_for_upgrade(old, pid_file);
    let code = match first {
        Some(server) => server.wait_exit_only(STEP_TIMEOUT).code().unwrap_or(-1),
        None => wait_for_exit(old),
    };
    assert_eq!(code, 0, "the old process {old} exits 0");
    new
}

/// Clears the flag that keeps a scraping thread going when dropped.
struct StopScrapes<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopScrapes<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn five_upgrades_under_load_lose_no_connection() {
    become_subreaper();
    let pid_file = temp_path("five.pid");
    let mut server = spawn_server(&[
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = server.addr;
    let metrics = metrics_addr(&server);
    let progress = AtomicU64::new(0);
    let upgrading = std::sync::atomic::AtomicBool::new(true);
    let mut options = load_options(addr, u64::MAX);
    options.connections = 64;
    options.total = None;
    options.duration = Duration::from_secs(20);
    let (report, generations) = thread::scope(|scope| {
        let load = scope.spawn(|| greeter_load::run(&options, &progress).unwrap());
        // Scrapes all along: every one is answered, by the old process or the new.
        let scrapes = scope.spawn(|| {
            let mut answered = 0;
            while upgrading.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _) = http_get(metrics, "/metrics");
                assert_eq!(status, 200, "a scrape during an upgrade");
                answered += 1;
            }
            answered
        });
        // Ends the scrapes however this closure ends: a failed step panics here, and
        // the scope joins the scraping thread before the panic goes on.
        let _stop_scrapes = StopScrapes(&upgrading);
        wait_until("the load to run", || {
            progress.load(std::sync::atomic::Ordering::Relaxed) > 1000
        });
        let mut pid = wait_for(
            STEP_TIMEOUT,
            || "the pid file once serving".to_owned(),
            || pid_in(&pid_file),
        );
        assert_eq!(pid, server.pid());
        let mut generations = Vec::new();
        let mut switches = Vec::new();
        for round in 0..5 {
            let started = Instant::now();
            pid = upgrade(pid, &pid_file, (round == 0).then_some(&mut server));
            switches.push(started.elapsed());
            generations.push(Generation(pid));
        }
        eprintln!("SIGUSR2 to the old process's exit: {switches:?}");
        upgrading.store(false, std::sync::atomic::Ordering::Relaxed);
        let answered = scrapes.join().expect("every scrape answered");
        assert!(answered > 5, "{answered} scrapes");
        (load.join().unwrap(), generations)
    });
    let last = generations.last().unwrap().0;
    let latency = report.latency().unwrap_or_default();
    eprintln!(
        "{} connections, {} errors, latency p99 {} us, max {} us",
        report.completed,
        report.errors.total(),
        latency.p99,
        latency.max
    );
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert!(report.completed > 1000, "{}", report.completed);
    let log = server.stderr();
    assert_eq!(
        log.matches("upgrade: the new process (pid ").count(),
        5,
        "{log}"
    );
    assert_eq!(
        log.matches("(socket handed over by an upgrade)").count(),
        5,
        "{log}"
    );
    signal(last, "TERM");
    assert_eq!(wait_for_exit(last), 0);
    assert!(!pid_file.exists(), "the last process removes its pid file");
}

#[test]
fn slow_readers_of_a_large_greeting_get_it_whole_from_the_old_process() {
    become_subreaper();
    let pid_file = temp_path("slow.pid");
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut server = ServerCommand::new(&["--pid-file", pid_file.to_str().unwrap()])
        .greeting("upgrade-large", &greeting)
        .spawn();
    let readers: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    server.wait_for_in_flight(3);
    let old = server.pid();
    let new = ask_for_upgrade(old, &pid_file);
    let _new = Generation(new);
    server.wait_for_log("upgrade: the new process (pid");
    // The old process drains: it still writes to its held peers.
    assert_each_peer_receives(readers, &greeting);
    assert_eq!(server.wait_exit_only(STEP_TIMEOUT).code(), Some(0));
    // The new one serves the same port.
    let mut peer = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), &greeting);
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

/// The old process of an upgrade drains as soon as the new one serves: it does not
/// wait out `--shutdown-delay` (the new process serves the same sockets on).
#[test]
fn the_old_process_of_an_upgrade_does_not_wait_for_the_shutdown_delay() {
    become_subreaper();
    let pid_file = temp_path("delay.pid");
    let mut server = ServerCommand::new(&[
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--shutdown-delay",
        "1h",
    ])
    .spawn();
    let old = server.pid();
    // Within STEP_TIMEOUT, far below the delay.
    let new = upgrade(old, &pid_file, Some(&mut server));
    let _new = Generation(new);
    let mut peer = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    // The new process has the delay (its log is the old one's stderr): a second
    // SIGTERM ends it.
    signal(new, "TERM");
    server.wait_for_log("shutdown: stop signal; /healthz answers 503");
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

/// A FIFO of its own (a test removes it at its end).
fn fifo(name: &str) -> PathBuf {
    let path = temp_path(name);
    let _ = std::fs::remove_file(&path);
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

/// The FIFO opened for writing without waiting: fails (ENXIO) unless a process has it
/// open for reading.
fn open_for_writing(fifo: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
}

/// A script for the server's path: it waits until the test opens the FIFO `go`, then
/// becomes the real greeter-server with the arguments it was given, and `redirect`.
fn wrapper_waiting_on(go: &Path, redirect: &str) -> String {
    format!(
        "#!/bin/sh\n: <'{}'\nexec '{}' \"$@\" {redirect}\n",
        go.display(),
        binary("greeter-server")
    )
}

/// Lets the wrapper waiting on `go` go on, once it waits there.
fn release(go: &Path) {
    wait_for(
        STEP_TIMEOUT,
        || format!("the wrapper to wait on {}", go.display()),
        || open_for_writing(go).ok(),
    );
}

/// Whether process `pid` exists (a zombie included).
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether every thread of `pid` is stopped (SIGSTOP has taken effect).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name's closing parenthesis.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    })
}

/// Stops the old process (SIGSTOP), lets the wrapper waiting on `go` become the new
/// server, and connects `count` clients, each of which has read the first byte of
/// `greeting`: all of them accepted by the new process. The old one stays stopped.
fn clients_of_the_new_process(
    old: &FromCopy,
    go: &Path,
    count: usize,
    greeting: &[u8],
) -> Vec<std::net::TcpStream> {
    use std::io::Read;
    signal(old.pid(), "STOP");
    wait_until("the old process to stop", || all_threads_stopped(old.pid()));
    release(go);
    let mut peers: Vec<_> = (0..count).map(|_| connect(old.addr)).collect();
    for peer in &mut peers {
        let mut first = [0u8; 1];
        peer.read_exact(&mut first).unwrap();
        assert_eq!(first[0], greeting[0]);
    }
    peers
}

#[test]
fn a_new_binary_that_fails_leaves_the_old_one_serving() {
    become_subreaper();
    let mut server = FromCopy::start(
        "greeter-failing",
        &["--upgrade-timeout", "1s", "--drain-timeout", "1s"],
    );
    let (exe, addr, pid) = (server.exe.clone(), server.addr, server.pid());

    // Exits 1 at once.
    replace_with_script(&exe, "#!/bin/sh\necho 'broken on purpose' >&2\nexit 1\n");
    signal(pid, "USR2");
    let warning = server.next_line_with("upgrade: keeping this process");
    assert!(
        warning.contains("exited with exit status: 1 before it served"),
        "{warning}"
    );
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);

    // Never reports: after --upgrade-timeout it is asked to stop with SIGTERM (a
    // greeter drains then), not killed; a second SIGUSR2 meanwhile is ignored.
    replace_with_script(
        &exe,
        "#!/bin/sh\ntrap 'echo \"wrapper: stopped by SIGTERM\" >&2; kill $!; exit 0' TERM\n\
         sleep 30 &\nwait $!\n",
    );
    let new = server.ask_for_upgrade();
    signal(pid, "USR2");
    server.next_line_with("upgrade: one is under way (pid");
    let warning = server.next_line_with("upgrade: keeping this process");
    assert!(
        warning.contains(&format!(
            "the new process (pid {new}) did not report that it serves within 1s; stopping it"
        )),
        "{warning}"
    );
    let stopped = server.next_line_with(&format!("upgrade: the new process (pid {new}) "));
    assert!(stopped.contains("has stopped: exit status: 0"), "{stopped}");
    // Its line and the warning are written by two processes: either may come first.
    assert!(server.has_read("wrapper: stopped by SIGTERM"));
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);

    // Ignores SIGTERM: killed once --drain-timeout (and a second) has passed since.
    replace_with_script(&exe, "#!/bin/sh\ntrap '' TERM\nexec sleep 30\n");
    let asked = Instant::now();
    let new = server.ask_for_upgrade();
    server.next_line_with("upgrade: keeping this process");
    let killed = server.next_line_with(&format!("upgrade: the new process (pid {new}) "));
    assert!(
        killed.contains("had not stopped 2s after SIGTERM; killed it"),
        "{killed}"
    );
    // --upgrade-timeout, then --drain-timeout and a second.
    assert!(asked.elapsed() >= Duration::from_secs(3));
    assert!(!exists(new), "the killed process is reaped");
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);

    // greeter itself, refusing its arguments: its one-line error is quoted.
    replace_with_script(
        &exe,
        &format!(
            "#!/bin/sh\nexec {} \"$@\" --max-connections 0\n",
            binary("greeter-server")
        ),
    );
    signal(pid, "USR2");
    let warning = server.next_line_with("upgrade: keeping this process");
    assert!(
        warning.contains("exited with exit status: 2: greeter-server: invalid value '0' for '--max-connections <N>'"),
        "{warning}"
    );
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);
    signal(pid, "TERM");
    assert_eq!(server.exit_code(), Some(0));
}

/// SIGUSR2, then SIGTERM to the pid the pid file names before the new process runs
/// (issue 29, item 9a): the old process stops the new one too and exits only once it
/// is gone; nothing serves the port and no pid file is left.
#[test]
fn a_stop_during_an_upgrade_stops_the_new_process_too() {
    become_subreaper();
    let pid_file = temp_path("stopped.pid");
    let go = fifo("stopped.go");
    let mut old = FromCopy::start(
        "greeter-stopped",
        &["--pid-file", pid_file.to_str().unwrap()],
    );
    let named = wait_for(
        STEP_TIMEOUT,
        || "the pid file".to_owned(),
        || pid_in(&pid_file),
    );
    assert_eq!(named, old.pid());
    replace_with_script(&old.exe, &wrapper_waiting_on(&go, ""));
    let new = old.ask_for_upgrade();
    let _new = Generation(new);
    signal(pid_in(&pid_file).unwrap(), "TERM");
    assert_eq!(old.exit_code(), Some(0));
    assert!(
        !exists(new),
        "the new process (pid {new}) outlived the old one that was stopped"
    );
    assert!(
        open_for_writing(&go).is_err(),
        "nothing waits to become a server any more"
    );
    assert!(
        std::net::TcpStream::connect(old.addr).is_err(),
        "nothing serves the port"
    );
    assert!(!pid_file.exists(), "the pid file is removed");
    old.next_line_with(&format!(
        "upgrade: stopping the new process (pid {new}) too"
    ));
    let _ = std::fs::remove_file(&go);
}

/// The new process's stdout is a full pipe (issue 29, item 9b): it reports that it
/// serves before it prints, so the old one hands over instead of killing it, and the
/// clients it accepted get their whole greeting from it. The old process is stopped
/// (SIGSTOP) while they connect, so that the new one accepts them all.
#[test]
fn a_new_process_blocked_on_stdout_keeps_the_clients_it_accepted() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    become_subreaper();
    let pid_file = temp_path("blocked.pid");
    let go = fifo("blocked.go");
    let stdout = fifo("blocked.out");
    let greeting = large_greeting(16 * 1024 * 1024);
    let greeting_file = temp_file("upgrade-blocked", &greeting);
    let mut old = FromCopy::start(
        "greeter-blocked",
        &[
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--message-file",
            greeting_file.arg(),
        ],
    );
    // Held open for reading and writing here (so the new process's open does not wait
    // for a reader) and filled: the new process's first print blocks.
    let mut full = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&stdout)
        .unwrap();
    while full.write(&[b'x'; 4096]).is_ok() {}
    replace_with_script(
        &old.exe,
        &wrapper_waiting_on(&go, &format!(">'{}'", stdout.display())),
    );
    let new = old.ask_for_upgrade();
    let _new = Generation(new);
    let peers = clients_of_the_new_process(&old, &go, 3, &greeting);
    signal(old.pid(), "CONT");
    let decision = old.next_line_with_any(&[
        "upgrade: the new process (pid",
        "upgrade: keeping this process",
    ]);
    assert_each_peer_receives(peers, &greeting[1..]);
    assert!(
        decision.contains(&format!("the new process (pid {new}) serves")),
        "{decision}"
    );
    assert_eq!(old.exit_code(), Some(0));
    assert_eq!(
        pid_in(&pid_file),
        Some(new),
        "the pid file names the new process"
    );
    // Its stdout still full, it answers SIGTERM.
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
    assert!(!pid_file.exists(), "the pid file is removed");
    drop(full);
    let _ = std::fs::remove_file(&go);
    let _ = std::fs::remove_file(&stdout);
}

#[test]
fn workers_listeners_proxy_protocol_and_metrics_are_all_handed_on() {
    become_subreaper();
    let pid_file = temp_path("many.pid");
    let (command, _config) = ServerCommand::new(&[
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ])
    .config(
        "upgrade-many.toml",
        "[[listener]]\nport = 0\n[[listener]]\nport = 0\nproxy-protocol = true\n\
         message = \"behind a balancer\"\n",
    );
    let mut server = command.spawn();
    let plain = server.addr;
    let proxied = server.listening_addrs(1)[1];
    let metrics = metrics_addr(&server);
    let greeted_behind_a_balancer = || {
        let mut peer = connect(proxied);
        std::io::Write::write_all(&mut peer, b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 17\r\n")
            .unwrap();
        read_to_eof(&mut peer).unwrap()
    };
    assert_eq!(read_to_eof(&mut connect(plain)).unwrap(), DEFAULT_GREETING);
    assert_eq!(greeted_behind_a_balancer(), b"behind a balancer");
    let old = server.pid();
    let new = upgrade(old, &pid_file, Some(&mut server));
    let _new = Generation(new);
    assert_eq!(read_to_eof(&mut connect(plain)).unwrap(), DEFAULT_GREETING);
    assert_eq!(greeted_behind_a_balancer(), b"behind a balancer");
    // The same metrics socket, answered by the new process (the old one has exited),
    // its counters from zero: the two connections since.
    wait_until("the new process's metrics", || {
        let (status, body) = http_get(metrics, "/metrics");
        status == 200 && samples(&body).get("greeter_connections_accepted_total") == Some(&2.0)
    });
    let log = server.stderr();
    assert!(log.contains("workers=2"), "{log}");
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

#[test]
fn the_new_process_tells_systemd_it_is_the_main_process() {
    use std::os::unix::net::UnixDatagram;
    become_subreaper();
    let notify_path = std::env::temp_dir().join(format!("greeter-{}-up.sock", std::process::id()));
    let _ = std::fs::remove_file(&notify_path);
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let next = || {
        let mut buffer = [0u8; 1024];
        let len = manager.recv(&mut buffer).expect("a notify datagram");
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    };
    let pid_file = temp_path("notify.pid");
    let mut server = ServerCommand::new(&["--pid-file", pid_file.to_str().unwrap()])
        .env("NOTIFY_SOCKET", notify_path.to_str().unwrap())
        .spawn();
    let old = server.pid();
    assert!(next().starts_with(&format!("MAINPID={old}\nREADY=1\n")));
    let new = upgrade(old, &pid_file, Some(&mut server));
    let _new = Generation(new);
    // The new process's READY, and nothing from the old one (no STOPPING=1: the
    // service goes on).
    assert!(next().starts_with(&format!("MAINPID={new}\nREADY=1\n")));
    signal(new, "TERM");
    assert_eq!(next(), "STOPPING=1\nSTATUS=draining\n");
    assert_eq!(wait_for_exit(new), 0);
    let _ = std::fs::remove_file(&notify_path);
}

#[test]
fn systemd_an_activated_server_hands_its_inherited_socket_on() {
    become_subreaper();
    let pid_file = temp_path("activated.pid");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), binary("greeter-server")])
        .args(["--pid-file", pid_file.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate is installed (scripts/test.sh installs systemd)");
    let stderr = lines_of(activator.stderr.take().unwrap());
    let listening = stderr.recv_timeout(STEP_TIMEOUT).unwrap();
    assert!(listening.starts_with("Listening on"), "{listening}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The first connection starts greeter-server in the activator's place.
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);
    let old = wait_for(
        STEP_TIMEOUT,
        || "the pid file".to_owned(),
        || pid_in(&pid_file),
    );
    assert_eq!(old, activator.id());
    let new = ask_for_upgrade(old, &pid_file);
    let _new = Generation(new);
    assert_eq!(activator.wait().unwrap().code(), Some(0));
    assert_eq!(read_to_eof(&mut connect(addr)).unwrap(), DEFAULT_GREETING);
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

/// Three listeners: A denies loopback with a deny message, B (on another address)
/// and C (named) greet. `round` marks every greeting so each step is told apart;
/// `order` is the order of the tables in the file, `with_a` whether A's is there.
fn three_listeners(round: u32, order: &str, with_a: bool) -> String {
    let mut toml = String::new();
    for table in order.chars() {
        match table {
            'a' if with_a => toml.push_str(&format!(
                "[[listener]]\nhost = \"127.0.0.1\"\nport = 0\ndeny = [\"127.0.0.0/8\"]\n\
                 deny-message = \"denied on A{round}\"\n\n"
            )),
            'b' => toml.push_str(&format!(
                "[[listener]]\nhost = \"127.0.0.2\"\nport = 0\nmessage = \"B{round}\"\n\n"
            )),
            'c' => toml.push_str(&format!(
                "[[listener]]\nname = \"c\"\nhost = \"127.0.0.1\"\nport = 0\nmessage = \"C{round}\"\n\n"
            )),
            _ => {}
        }
    }
    toml
}

/// What each of the sockets A, B and C sends a new client.
fn answers(addrs: &[std::net::SocketAddr]) -> Vec<String> {
    addrs
        .iter()
        .map(|&addr| {
            String::from_utf8_lossy(&read_to_eof(&mut connect(addr)).unwrap()).into_owned()
        })
        .collect()
}

#[test]
fn each_port_keeps_its_own_policy_across_reordered_reloads_and_upgrades() {
    become_subreaper();
    let pid_file = temp_path("order.pid");
    let (command, config) = ServerCommand::new(&["--pid-file", pid_file.to_str().unwrap()])
        .config("order.toml", &three_listeners(1, "abc", true));
    let mut server = command.spawn();
    let addrs = server.listening_addrs(2);
    assert_eq!(answers(&addrs), ["denied on A1", "B1", "C1"]);

    let reloads = |count: usize| {
        let text = || server.stderr();
        wait_for(
            STEP_TIMEOUT,
            || format!("{count} reloads in:\n{}", text()),
            || (text().matches("reload: configuration reloaded").count() >= count).then_some(()),
        )
    };
    // Reordered: each socket keeps the table that names its address, or its name.
    std::fs::write(&config, three_listeners(2, "cba", true)).unwrap();
    server.signal("HUP");
    reloads(1);
    assert_eq!(answers(&addrs), ["denied on A2", "B2", "C2"]);

    // A's table gone: its socket keeps its last settings, with a warning.
    std::fs::write(&config, three_listeners(3, "cb", false)).unwrap();
    server.signal("HUP");
    reloads(2);
    assert_eq!(answers(&addrs), ["denied on A2", "B3", "C3"]);
    let log = server.stderr();
    assert!(
        log.contains("the listener on 127.0.0.1:0 is gone from"),
        "{log}"
    );

    // An upgrade to a config in yet another order: the new process takes each socket
    // for the listener it is.
    std::fs::write(&config, three_listeners(4, "bca", true)).unwrap();
    let old = server.pid();
    let new = upgrade(old, &pid_file, Some(&mut server));
    let _new = Generation(new);
    assert_eq!(answers(&addrs), ["denied on A4", "B4", "C4"]);
    signal(new, "TERM");
    assert_eq!(wait_for_exit(new), 0);
}

/// A new greeter that accepted clients but does not report within --upgrade-timeout
/// (the wrapper gives it /dev/null for the report channel and keeps the channel open
/// at fd 9, silent) is stopped with SIGTERM: it drains, and its clients get their
/// whole greeting, also when a SIGTERM from elsewhere follows (systemd's
/// `KillMode=control-group` sends one to every process of the service): the one from
/// the process that started it is not counted as a first stop signal, so this one is
/// not a second. The old process is stopped (SIGSTOP) while they connect, so that the
/// new one accepts them all.
#[test]
fn a_new_process_that_does_not_report_in_time_drains_what_it_accepted() {
    become_subreaper();
    let go = fifo("silent.go");
    let pid_file = temp_path("silent.pid");
    let greeting = large_greeting(16 * 1024 * 1024);
    let greeting_file = temp_file("upgrade-silent", &greeting);
    let mut old = FromCopy::start(
        "greeter-silent",
        &[
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--upgrade-timeout",
            "1s",
            "--message-file",
            greeting_file.arg(),
        ],
    );
    // The report channel is the last passed descriptor: fd 3 + LISTEN_FDS - 1.
    let script = format!(
        "#!/bin/sh\n: <'{}'\nreport=$((LISTEN_FDS + 2))\n\
         eval \"exec '{}' \\\"\\$@\\\" 9<&$report $report>/dev/null\"\n",
        go.display(),
        binary("greeter-server")
    );
    replace_with_script(&old.exe, &script);
    let new = old.ask_for_upgrade();
    let _new = Generation(new);
    let peers = clients_of_the_new_process(&old, &go, 3, &greeting);
    signal(old.pid(), "CONT");
    let warning = old.next_line_with("upgrade: keeping this process");
    assert!(
        warning.contains(&format!(
            "the new process (pid {new}) did not report that it serves within 1s"
        )),
        "{warning}"
    );
    // The new process drains (the old one is not draining), then gets another SIGTERM.
    old.line_with("shutdown: stopped accepting; waiting up to");
    signal(new, "TERM");
    assert_each_peer_receives(peers, &greeting[1..]);
    let stopped = old.next_line_with(&format!("upgrade: the new process (pid {new}) "));
    assert!(stopped.contains("has stopped: exit status: 0"), "{stopped}");
    assert!(!exists(new), "the stopped process is reaped");
    assert!(
        !old.has_read("second stop signal"),
        "the new process's drain was cut short"
    );
    // The new process wrote the pid file once it had reported (to no one) and
    // removed it at exit: it names the old process again.
    assert_eq!(pid_in(&pid_file), Some(old.pid()));
    // The old one still serves.
    let mut peer = connect(old.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), &greeting);
    signal(old.pid(), "TERM");
    assert_eq!(old.exit_code(), Some(0));
    assert!(!pid_file.exists(), "the pid file is removed");
    let _ = std::fs::remove_file(&go);
}
