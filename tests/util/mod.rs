//! Helpers shared by the integration tests (greeter's, and greeter-load's through
//! `#[path]`): an in-process server on port 0, the real binaries as child processes,
//! and peers that read or stall on purpose.
//!
//! Every wait here is bounded, every server binds port 0 on loopback, and a child is
//! only ever stopped through its own PID.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use greeter::{Config, Server, ServerHandle, Snapshot, Totals};

/// The default greeting, as bytes: what a server with no --message sends.
pub const DEFAULT_GREETING: &[u8] = greeter::DEFAULT_GREETING.as_bytes();

/// The server's defaults, listening on 127.0.0.1 port 0.
pub fn default_config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

/// The longest any single step of a test may wait before it counts as a failure.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A server running on its own thread inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: ServerHandle,
    thread: Option<JoinHandle<io::Result<Totals>>>,
}

/// Starts an in-process server with `config` on 127.0.0.1, port 0.
pub fn start_server(config: Config) -> TestServer {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..config
    };
    start_server_on(config)
}

/// Starts an in-process server on `config.listen` as given (e.g. `[::1]:0`).
pub fn start_server_on(config: Config) -> TestServer {
    let server = Server::bind(config).expect("bind the test server");
    let addr = server.local_addr();
    let shutdown = server.handle();
    let thread = Some(thread::spawn(move || server.run()));
    TestServer {
        addr,
        shutdown,
        thread,
    }
}

/// The default configuration with `greeting` (listen address set by `start_server`).
pub fn config_with(greeting: &[u8]) -> Config {
    default_config().with_greeting(greeting.to_vec())
}

impl TestServer {
    /// The server's totals and held connections as of its last loop round.
    pub fn snapshot(&self) -> Snapshot {
        self.shutdown.snapshot()
    }

    /// Shuts the server down gracefully and returns its totals.
    pub fn stop(mut self) -> Totals {
        self.shutdown.shutdown().expect("wake the server");
        let thread = self.thread.take().unwrap();
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop in time");
            thread::sleep(Duration::from_millis(5));
        }
        thread
            .join()
            .expect("server thread panicked")
            .expect("server loop failed")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}

/// A greeting of `len` bytes that never repeats a short pattern, so that a lost,
/// duplicated or reordered chunk cannot go unnoticed.
pub fn large_greeting(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// Connects with bounded waits for every later read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// Reads until EOF. Any error (a reset included) fails the caller's assertion.
pub fn read_to_eof(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    Ok(received)
}

/// Asserts that `received` is exactly `expected`, with a short message for big buffers.
#[track_caller]
pub fn assert_same_bytes(received: &[u8], expected: &[u8]) {
    if received != expected {
        let first_difference = received
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(expected.len()));
        panic!(
            "received {} bytes, expected {}; first difference at byte {first_difference}",
            received.len(),
            expected.len()
        );
    }
}

/// Writes `bytes` to a fresh file in the target directory and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A `greeter-server` child process.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// The stdout lines after the first `listening on` one.
    stdout: mpsc::Receiver<String>,
}

/// Path of one of the workspace's binaries. Cargo tells a test only about the
/// binaries of its own package (greeter's tests: greeter-server and greeter-client;
/// greeter-load's: greeter-load), which is why this module, shared by both, asks
/// with `option_env!`.
pub fn binary(name: &str) -> &'static str {
    let path = match name {
        "greeter-server" => option_env!("CARGO_BIN_EXE_greeter-server"),
        "greeter-client" => option_env!("CARGO_BIN_EXE_greeter-client"),
        "greeter-load" => option_env!("CARGO_BIN_EXE_greeter-load"),
        other => panic!("no binary {other}"),
    };
    path.unwrap_or_else(|| panic!("{name} is not a binary of this test's package"))
}

/// Starts `greeter-server --port 0 ARGS` and waits for its `listening on` line.
pub fn spawn_server(args: &[&str]) -> ServerProcess {
    spawn_server_with_fd_limit(args, None)
}

/// As [`spawn_server`], under `ulimit -n LIMIT` (soft and hard) when given, so that
/// the server cannot raise it.
pub fn spawn_server_with_fd_limit(args: &[&str], fd_limit: Option<u32>) -> ServerProcess {
    spawn_server_with(0, args, fd_limit)
}

/// Starts `greeter-server --port PORT ARGS` (e.g. to restart a server on its port).
pub fn spawn_server_on_port(port: u16, args: &[&str]) -> ServerProcess {
    spawn_server_with(port, args, None)
}

/// As [`spawn_server`], under a soft open-file limit of `limit` (the hard limit
/// stays, so the server may raise it).
pub fn spawn_server_with_soft_fd_limit(args: &[&str], limit: u32) -> ServerProcess {
    spawn_server_under(0, args, Some(format!("ulimit -Sn {limit}")))
}

fn spawn_server_with(port: u16, args: &[&str], fd_limit: Option<u32>) -> ServerProcess {
    spawn_server_under(
        port,
        args,
        fd_limit.map(|limit| format!("ulimit -n {limit}")),
    )
}

/// Starts the server, through `sh -c "ULIMIT && exec ..."` when a ulimit is given.
fn spawn_server_under(port: u16, args: &[&str], ulimit: Option<String>) -> ServerProcess {
    let mut server = spawn_server_stderr_unread(port, args, ulimit);
    server.read_stderr();
    server
}

/// Starts `greeter-server --port 0 ARGS` with its stderr a pipe that nobody reads
/// until [`ServerProcess::read_stderr`] is called: a log consumer that stalled.
pub fn spawn_server_with_unread_stderr(args: &[&str]) -> ServerProcess {
    spawn_server_stderr_unread(0, args, None)
}

fn spawn_server_stderr_unread(port: u16, args: &[&str], ulimit: Option<String>) -> ServerProcess {
    let mut command = match ulimit {
        Some(ulimit) => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{ulimit} && exec \"$0\" \"$@\""))
                .arg(binary("greeter-server"));
            command
        }
        None => Command::new(binary("greeter-server")),
    };
    let mut child = command
        .args(["--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn greeter-server");
    let stderr = Arc::default();
    let (lines, listening) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let line = match listening.recv_timeout(STEP_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let mut log = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut log);
            }
            panic!("greeter-server printed no listening line; stderr:\n{log}");
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address after 'listening on'");
    ServerProcess {
        child,
        addr,
        stderr,
        stdout: listening,
    }
}

/// Reads a pipe to its end on a thread, into a shared string.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    collect_into(pipe, Arc::clone(&text));
    text
}

/// Reads a pipe to its end on a thread, appending to `sink`.
fn collect_into(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl ServerProcess {
    /// Starts reading the server's stderr (at once for every server but one started
    /// by [`spawn_server_with_unread_stderr`]).
    pub fn read_stderr(&mut self) {
        if let Some(pipe) = self.child.stderr.take() {
            collect_into(pipe, Arc::clone(&self.stderr));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every address the server listens on: the first `listening on` line's and the
    /// `more` that follow it (one per further listener).
    #[track_caller]
    pub fn listening_addrs(&self, more: usize) -> Vec<SocketAddr> {
        let mut addrs = vec![self.addr];
        for _ in 0..more {
            let line = self
                .stdout
                .recv_timeout(STEP_TIMEOUT)
                .expect("another listening line");
            let addr = line
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            addrs.push(addr.parse().expect("an address after 'listening on'"));
        }
        addrs
    }

    /// Stdout lines printed since the listening lines were read (none, ever: the
    /// server prints nothing else there). Only complete once the server has exited.
    pub fn other_stdout_lines(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    /// Sends `signal` (e.g. "TERM") to this child only.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Kills this child (SIGKILL, by its PID) and reaps it: a crash, not a shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit, failing the test after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for server") {
                // Let the stderr reader catch the last lines.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit, asserts exit code 0 and that stderr holds `line`.
    #[track_caller]
    pub fn assert_exits_cleanly_logging(&mut self, line: &str, timeout: Duration) {
        let status = self.wait_exit(timeout);
        let log = self.stderr();
        assert_eq!(status.code(), Some(0), "{log}");
        assert!(log.contains(line), "no {line:?} in stderr:\n{log}");
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; returns stderr.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in stderr:\n{text}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the server holds exactly `count` connections, asking it with SIGUSR1
    /// and reading the `totals in_flight=N` line it logs.
    #[track_caller]
    pub fn wait_for_in_flight(&self, count: usize) {
        let wanted = format!("totals in_flight={count} ");
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let asked = self.stderr().matches("totals in_flight=").count();
            self.signal("USR1");
            let log = loop {
                let log = self.stderr();
                if log.matches("totals in_flight=").count() > asked {
                    break log;
                }
                assert!(Instant::now() < deadline, "no totals line:\n{log}");
                thread::sleep(Duration::from_millis(2));
            };
            let last = log.rsplit("totals in_flight=").next().unwrap_or("");
            if format!("totals in_flight={last}").starts_with(&wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {count} in flight; last: totals in_flight={last}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many descriptors the server has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read the server's fd table")
            .count()
    }

    /// Asserts that the server stays near idle for a second (at most a fifth of a
    /// core), as a paused server must rather than retrying in a tight loop.
    #[track_caller]
    pub fn assert_near_idle_for_a_second(&self) {
        let used = cpu_ticks_over_a_second(self.pid());
        assert!(used <= 20, "server used {used} ticks (of 100) in a second");
    }

    /// User plus system CPU time the server has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks_of(self.pid()).expect("the server is running")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a binary of this package to completion (bounded) and returns its status,
/// stdout bytes and stderr text.
pub fn run_binary(name: &str, args: &[&str]) -> (ExitStatus, Vec<u8>, String) {
    let mut child = Command::new(binary(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let stdout = child.stdout.take().unwrap();
    let stdout_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} did not finish in time");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = stdout_reader.join().unwrap();
    thread::sleep(Duration::from_millis(20));
    let stderr = stderr.lock().unwrap().clone();
    (status, stdout, stderr)
}

/// Lets every peer read to EOF at once (each on its own thread) and asserts that each
/// received exactly `expected` and a clean EOF.
#[track_caller]
pub fn assert_each_peer_receives(peers: Vec<TcpStream>, expected: &[u8]) {
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut peer| thread::spawn(move || read_to_eof(&mut peer)))
        .collect();
    for reader in readers {
        let received = reader
            .join()
            .unwrap()
            .expect("the whole greeting and a clean EOF");
        assert_same_bytes(&received, expected);
    }
}

/// Sends `bytes` and ignores a failure: the server may already have closed.
pub fn send_quietly(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Polls `condition` until it holds, failing the test with `what` after
/// [`STEP_TIMEOUT`]. The way tests wait for a state instead of sleeping.
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The CPU ticks (of 100) process `pid` uses over the next second; it must run
/// throughout.
pub fn cpu_ticks_over_a_second(pid: u32) -> u64 {
    let before = cpu_ticks_of(pid).expect("the process is running");
    thread::sleep(Duration::from_secs(1));
    cpu_ticks_of(pid).expect("the process is still running") - before
}

/// User plus system CPU time process `pid` has used, in clock ticks; `None` once it
/// is gone.
pub fn cpu_ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Runs `greeter-server ARGS` and asserts that it fails at start-up as promised: exit
/// 1, nothing on stdout, one line on stderr starting with `expected`. Returns the line.
#[track_caller]
pub fn assert_startup_error(args: &[&str], expected: &str) -> String {
    let (status, stdout, stderr) = run_binary("greeter-server", args);
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stdout.is_empty(), "{args:?}: stdout {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.starts_with(expected),
        "{args:?}: expected {expected:?}, got {stderr}"
    );
    stderr
}

/// Connects to `addr` from `source` (another loopback address such as 127.0.0.2), with
/// bounded waits like [`connect`].
pub fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let source: SocketAddr = format!("{source}:0")
        .parse()
        .or_else(|_| format!("[{source}]:0").parse())
        .expect("a source address");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(source),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// A bounded load run of `total` connections, 16 at once, expecting the default
/// greeting (change fields for anything else).
pub fn load_options(addr: SocketAddr, total: u64) -> greeter_load::LoadOptions {
    greeter_load::LoadOptions {
        addr,
        connections: 16,
        total: Some(total),
        duration: Duration::from_secs(30),
        expected: Arc::from(DEFAULT_GREETING),
        timeout: Duration::from_secs(5),
        threads: 1,
        send_proxy: false,
    }
}

/// The metrics address the server logged.
pub fn metrics_addr(server: &ServerProcess) -> SocketAddr {
    let log = server.wait_for_log("metrics: serving http://");
    let rest = &log[log.find("metrics: serving http://").unwrap() + 24..];
    rest[..rest.find("/metrics").unwrap()].parse().unwrap()
}

/// `GET path` over a fresh connection: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = connect(addr);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: greeter\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response[response.find("\r\n\r\n").unwrap() + 4..].to_owned();
    (status, body)
}

/// The samples of an exposition, `name{labels}` to value (a test's reading, not a
/// validation: `prometheus_exposition_parses_with_the_prometheus_parser` does that).
pub fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A loopback port that was free a moment ago, for a flag whose real port the test
/// cannot read back (the metrics address of a server whose log is not read).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
