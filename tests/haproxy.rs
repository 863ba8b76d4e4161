//! greeter behind HAProxy, with the configuration of docs/deploy/haproxy.cfg: three
//! backends on loopback, one killed during a run, marked down, brought back and used
//! again. Needs `haproxy` (Debian's package; scripts/test.sh installs it).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use greeter_load::{self as load, LoadReport};
use util::*;

/// Marking a server down takes `fall 3` checks `inter 200ms` apart (the test's
/// interval; the documented one is 2 s); up, `rise 2`. Generous for a loaded machine.
const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

struct HaProxy {
    child: Child,
    frontend: SocketAddr,
    stats_socket: PathBuf,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// docs/deploy/haproxy.cfg with loopback addresses for the frontend and `backends`,
/// a stats socket in the test's directory, a global maxconn that fits the machine's
/// fd limit, and checks 200 ms apart instead of 2 s (most of the test's time was
/// HAProxy marking a backend down and up).
fn config_for(
    documented: &str,
    frontend: SocketAddr,
    backends: &[SocketAddr],
    stats_socket: &Path,
) -> String {
    let mut config = String::new();
    let mut servers_written = false;
    for line in documented.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("maxconn 50000") {
            // The global limit sizes HAProxy's descriptor table (two per connection);
            // a test machine's fd limit is lower than a production host's.
            config.push_str("    maxconn 4000\n");
        } else if trimmed.starts_with("default-server ") {
            config.push_str(&line.replace("inter 2s", "inter 200ms"));
            config.push('\n');
        } else if trimmed.starts_with("bind ") {
            config.push_str(&format!("    bind {frontend}\n"));
        } else if trimmed.starts_with("stats socket ") {
            config.push_str(&format!(
                "    stats socket {} mode 600 level admin\n",
                stats_socket.display()
            ));
        } else if trimmed.starts_with("server ") {
            if !servers_written {
                for (index, backend) in backends.iter().enumerate() {
                    config.push_str(&format!("    server greeter{} {backend}\n", index + 1));
                }
                servers_written = true;
            }
        } else {
            config.push_str(line);
            config.push('\n');
        }
    }
    assert!(servers_written, "the documented config lists its servers");
    assert!(
        config.contains("inter 200ms"),
        "the documented check interval changed"
    );
    config
}

/// The documented configuration, without the PROXY protocol.
const PLAIN: &str = include_str!("../docs/deploy/haproxy.cfg");
/// The documented configuration with the PROXY protocol (send-proxy-v2).
const WITH_PROXY_PROTOCOL: &str = include_str!("../docs/deploy/haproxy-proxy-protocol.cfg");

fn start_haproxy(documented: &str, backends: &[SocketAddr]) -> HaProxy {
    // One directory per HAProxy: the tests of this file run in parallel.
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let instance = STARTED.fetch_add(1, Ordering::SeqCst);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("haproxy-{}-{instance}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats_socket = dir.join("admin.sock");
    // HAProxy needs a port number: take a free one, and try again if it is taken.
    for _ in 0..5 {
        let frontend = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config_path = dir.join("haproxy.cfg");
        let config = config_for(documented, frontend, backends, &stats_socket);
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is installed (scripts/test.sh installs it)");
        let mut proxy = HaProxy {
            child,
            frontend,
            stats_socket: stats_socket.clone(),
        };
        let started = wait_for(
            STEP_TIMEOUT,
            || "haproxy to start or exit".to_owned(),
            || {
                if let Ok(Some(_)) = proxy.child.try_wait() {
                    return Some(false); // did not start (port taken?): try another port
                }
                UnixStream::connect(&proxy.stats_socket).ok().map(|_| true)
            },
        );
        if started {
            return proxy;
        }
        drop(proxy);
    }
    panic!("haproxy did not start");
}

impl HaProxy {
    /// The `status` column of `show stat` for backend server `name` (UP, DOWN, ...).
    fn status_of(&self, name: &str) -> String {
        self.stat_of(name, "status")
    }

    /// Column `field` of `show stat` for backend server `name`.
    fn stat_of(&self, name: &str, field: &str) -> String {
        let mut stats = UnixStream::connect(&self.stats_socket).expect("stats socket");
        stats.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        stats.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        stats.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |field: &str| header.iter().position(|h| *h == field).unwrap();
        let (px, sv, status) = (column("pxname"), column("svname"), column(field));
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|row| row.len() > status && row[px] == "greeters" && row[sv] == name)
            .map(|row| row[status].to_owned())
            .unwrap_or_else(|| panic!("no server {name} in:\n{csv}"))
    }

    fn wait_for_status(&self, name: &str, wanted: &str) {
        let last = std::cell::RefCell::new(String::new());
        wait_for(
            STATE_CHANGE_TIMEOUT,
            || format!("{name} to be {wanted} (it is {})", last.borrow()),
            || {
                let status = self.status_of(name);
                let reached = status == wanted;
                *last.borrow_mut() = status;
                reached.then_some(())
            },
        );
    }
}

fn run_load(frontend: SocketAddr, total: u64) -> LoadReport {
    let options = load_options(frontend, total);
    load::run(&options, &AtomicU64::new(0)).unwrap()
}

#[test]
fn haproxy_spreads_load_and_survives_a_backend_dying_and_returning() {
    let mut backends: Vec<ServerProcess> = (0..3).map(|_| spawn_server(&[])).collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let proxy = start_haproxy(PLAIN, &addrs);
    for name in ["greeter1", "greeter2", "greeter3"] {
        proxy.wait_for_status(name, "UP");
    }

    let report = run_load(proxy.frontend, 3_000);
    assert_eq!(
        (report.completed, report.errors.total()),
        (3_000, 0),
        "all three up"
    );

    // Kill greeter2 during a run. Connections it had in flight may fail; connects
    // that it refuses are redispatched to the others.
    let frontend = proxy.frontend;
    let during = thread::spawn(move || run_load(frontend, 20_000));
    wait_until("greeter2 to take part in the run", || {
        proxy
            .stat_of("greeter2", "stot")
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    });
    backends[1].kill();
    let report = during.join().unwrap();
    eprintln!(
        "run during the kill: {} completed, {} errors {:?}",
        report.completed,
        report.errors.total(),
        report.errors
    );
    assert!(report.completed > 0);

    proxy.wait_for_status("greeter2", "DOWN");
    let report = run_load(proxy.frontend, 3_000);
    assert_eq!(
        (report.completed, report.errors.total()),
        (3_000, 0),
        "greeter2 down"
    );

    // Bring it back on its port: HAProxy's checks mark it up, and it gets traffic.
    backends[1] = ServerCommand::new(&[]).port(addrs[1].port()).spawn();
    proxy.wait_for_status("greeter2", "UP");
    let report = run_load(proxy.frontend, 3_000);
    assert_eq!(
        (report.completed, report.errors.total()),
        (3_000, 0),
        "greeter2 back"
    );

    // Health checks read the greeting and close with a reset: for the servers that is
    // a normal, greeted connection, never an error.
    for backend in &mut backends {
        backend.signal("TERM");
        backend.wait_exit(STEP_TIMEOUT);
        let log = backend.stderr();
        let totals = log
            .lines()
            .rev()
            .find(|line| line.contains("totals in_flight=0"))
            .unwrap_or_else(|| panic!("no totals in:\n{log}"));
        assert!(totals.contains("closed_early=0 "), "{totals}");
        assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    }
    let restarted = backends[1].stderr();
    let accepted: u64 = restarted
        .lines()
        .rev()
        .find_map(|line| line.split("accepted=").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        accepted >= 500,
        "the restarted backend served only {accepted} connections"
    );
}

#[test]
fn haproxy_with_send_proxy_v2_limits_and_logs_each_client_address() {
    // Large enough that a client that reads nothing stays held, and beginning with
    // what the documented health check expects.
    let greeting = [DEFAULT_GREETING, &large_greeting(16 * 1024 * 1024)].concat();
    let backend =
        ServerCommand::new(&["--proxy-protocol", "--max-per-ip", "1", "--log-connections"])
            .greeting("haproxy-proxy-greeting", &greeting)
            .spawn();
    let proxy = start_haproxy(WITH_PROXY_PROTOCOL, &[backend.addr]);
    // Health checks carry a header (LOCAL), or the backend would never be up.
    proxy.wait_for_status("greeter1", "UP");

    // Every connection reaches greeter from HAProxy's address; the headers tell
    // 127.0.0.2 and 127.0.0.3 apart.
    let holder = connect_from("127.0.0.2", proxy.frontend);
    backend.wait_for_log("ACCEPT peer=127.0.0.2:");
    let mut refused = connect_from("127.0.0.2", proxy.frontend);
    let mut received = Vec::new();
    let _ = refused.read_to_end(&mut received);
    assert!(
        received.is_empty(),
        "127.0.0.2 is over its share: nothing sent"
    );
    let log = backend.wait_for_log(" reason=per-ip");
    assert!(
        log.lines()
            .any(|line| line.contains("CLOSE peer=127.0.0.2:") && line.contains(" reason=per-ip ")),
        "the refused client is logged by its own address:\n{log}"
    );
    let other = connect_from("127.0.0.3", proxy.frontend);
    assert_each_peer_receives(vec![other, holder], &greeting);
    let log = backend.stderr();
    assert!(log.contains("ACCEPT peer=127.0.0.3:"), "{log}");
    assert!(
        !log.lines()
            .any(|line| line.contains("reason=per-ip") && !line.contains("peer=127.0.0.2:")),
        "only 127.0.0.2 was over its share:\n{log}"
    );
}
