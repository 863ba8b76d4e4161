//! The real binaries as child processes: `greeter-server` started on port 0 (under a
//! file-descriptor limit when asked) with its listening lines and stderr read as they
//! come, and one-shot runs of any binary.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{
    cpu_ticks_of, cpu_ticks_over_a_second, open_fds_of, temp_file, wait_for, wait_until, TempFile,
    STEP_TIMEOUT,
};

/// A `greeter-server` child process.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Everything read from its stderr so far.
    stderr: Arc<Mutex<String>>,
    /// The thread reading stderr, joined once the child has exited (then the text is
    /// complete); `None` until [`ServerProcess::read_stderr`] for an unread stderr.
    stderr_reader: Option<JoinHandle<()>>,
    /// Its greeting or config file, if the test made one for it: removed with it.
    files: Vec<TempFile>,
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
    ServerCommand::new(args).spawn()
}

/// How to start a `greeter-server` child: its flags, and what a test changes about its
/// surroundings. `spawn` waits for its `listening on` line.
pub struct ServerCommand {
    args: Vec<String>,
    /// `--port`, or none for a config file that names its listeners' ports.
    port: Option<u16>,
    /// A shell `ulimit` command run first (the server then `exec`s in its place).
    ulimit: Option<String>,
    /// Whether stderr is read from the start (else: a pipe nobody reads until
    /// [`ServerProcess::read_stderr`], a log consumer that stalled).
    read_stderr: bool,
    /// Greeting and config files made for this server and removed with it.
    files: Vec<TempFile>,
    /// Variables set for it.
    env: Vec<(String, String)>,
}

impl ServerCommand {
    /// `greeter-server --port 0 ARGS`.
    pub fn new(args: &[&str]) -> Self {
        ServerCommand {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            port: Some(0),
            ulimit: None,
            read_stderr: true,
            files: Vec::new(),
            env: Vec::new(),
        }
    }

    /// With the variable `name` set to `value`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// On `port` instead of 0 (e.g. to restart a server on its port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// With `--config` of a file holding `toml` (removed with the server), and no
    /// `--port`: the file names the ports. Returns the file's path too, to rewrite it.
    pub fn config(mut self, name: &str, toml: &str) -> (Self, std::path::PathBuf) {
        let file = temp_file(name, toml.as_bytes());
        let path = file.to_path_buf();
        self.args
            .extend(["--config".to_owned(), file.arg().to_owned()]);
        self.files.push(file);
        self.port = None;
        (self, path)
    }

    /// Under `ulimit -n LIMIT` (soft and hard), so that the server cannot raise it.
    pub fn fd_limit(mut self, limit: u32) -> Self {
        self.ulimit = Some(format!("ulimit -n {limit}"));
        self
    }

    /// Under a soft open-file limit of `limit` (the hard limit stays, so the server
    /// may raise it).
    pub fn soft_fd_limit(mut self, limit: u32) -> Self {
        self.ulimit = Some(format!("ulimit -Sn {limit}"));
        self
    }

    /// With `--message-file` of a file holding `greeting`, removed with the server.
    pub fn greeting(mut self, name: &str, greeting: &[u8]) -> Self {
        let file = temp_file(name, greeting);
        self.args
            .extend(["--message-file".to_owned(), file.arg().to_owned()]);
        self.files.push(file);
        self
    }

    /// With its stderr a pipe that nobody reads until [`ServerProcess::read_stderr`].
    pub fn stderr_unread(mut self) -> Self {
        self.read_stderr = false;
        self
    }

    /// Starts it and waits for its `listening on` line.
    pub fn spawn(self) -> ServerProcess {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut server = spawn_with(self.port, &args, self.ulimit, &self.env);
        server.files = self.files;
        if self.read_stderr {
            server.read_stderr();
        }
        server
    }
}

fn spawn_with(
    port: Option<u16>,
    args: &[&str],
    ulimit: Option<String>,
    env: &[(String, String)],
) -> ServerProcess {
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
    if let Some(port) = port {
        command.args(["--port", &port.to_string()]);
    }
    // Hermetic: no GREETER_* setting, and no service manager, of the environment the
    // tests run in.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("GREETER_")
            || name_text.starts_with("WATCHDOG_")
            || name_text == "NOTIFY_SOCKET"
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn greeter-server");
    let stderr = Arc::default();
    let listening = lines_of(child.stdout.take().unwrap());
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
        stderr_reader: None,
        files: Vec::new(),
        stdout: listening,
    }
}

/// The `n`th (from 1) log line that contains `needle`, once there is one.
#[track_caller]
pub fn nth_line(server: &ServerProcess, needle: &str, n: usize) -> String {
    wait_for(
        STEP_TIMEOUT,
        || format!("{n} lines with {needle:?} in:\n{}", server.stderr()),
        || {
            server
                .stderr()
                .lines()
                .filter(|line| line.contains(needle))
                .nth(n - 1)
                .map(str::to_owned)
        },
    )
}

/// The value of `key=` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 2;
    line[start..].split(' ').next().unwrap()
}

/// The lines `pipe` gives, as they come (read on a thread of its own, until the pipe
/// closes or the receiver is dropped).
pub fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Reads a pipe to its end on a thread, appending to `sink`; the thread ends when the
/// pipe's writers are gone.
fn collect_into(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
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
    })
}

impl ServerProcess {
    /// Starts reading the server's stderr (at once for every server but one started
    /// with [`ServerCommand::stderr_unread`]).
    pub fn read_stderr(&mut self) {
        if let Some(pipe) = self.child.stderr.take() {
            self.stderr_reader = Some(collect_into(pipe, Arc::clone(&self.stderr)));
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

    /// Waits for the child to exit, failing the test after `timeout`; then its stderr
    /// is complete.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let stderr = Arc::clone(&self.stderr);
        let child = &mut self.child;
        let status = wait_for(
            timeout,
            || format!("the server to exit; stderr:\n{}", stderr.lock().unwrap()),
            || child.try_wait().expect("wait for server"),
        );
        if let Some(reader) = self.stderr_reader.take() {
            wait_until("the server's stderr to close", || reader.is_finished());
            let _ = reader.join();
        }
        status
    }

    /// Waits for the child to exit, but not for its stderr to close: a process it
    /// started (an upgrade) may hold it on.
    pub fn wait_exit_only(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_for(
            timeout,
            || "the server to exit".to_owned(),
            || child.try_wait().expect("wait for server"),
        )
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
        wait_for(
            STEP_TIMEOUT,
            || format!("{needle:?} in stderr:\n{}", self.stderr()),
            || Some(self.stderr()).filter(|text| text.contains(needle)),
        )
    }

    /// Waits until the server holds exactly `count` connections, asking it with SIGUSR1
    /// and reading the `totals in_flight=N` line it logs.
    #[track_caller]
    pub fn wait_for_in_flight(&self, count: usize) {
        let wanted = format!("totals in_flight={count} ");
        let last = std::cell::RefCell::new(String::new());
        wait_for(
            STEP_TIMEOUT,
            || {
                format!(
                    "{count} in flight; last: totals in_flight={}",
                    last.borrow()
                )
            },
            || {
                let asked = self.stderr().matches("totals in_flight=").count();
                self.signal("USR1");
                let log = wait_for(
                    STEP_TIMEOUT,
                    || format!("a totals line:\n{}", self.stderr()),
                    || {
                        Some(self.stderr())
                            .filter(|log| log.matches("totals in_flight=").count() > asked)
                    },
                );
                let latest = log
                    .rsplit("totals in_flight=")
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let found = format!("totals in_flight={latest}").starts_with(&wanted);
                *last.borrow_mut() = latest;
                found.then_some(())
            },
        );
    }

    /// How many descriptors the server has open.
    pub fn open_fds(&self) -> usize {
        open_fds_of(self.pid())
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
        // A failed test shows what the server said last.
        if thread::panicking() {
            let log = self.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("the server's last log lines:\n{}", tail.join("\n"));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a binary of this package to completion (bounded) and returns its status,
/// stdout bytes and stderr text.
pub fn run_binary(name: &str, args: &[&str]) -> (ExitStatus, Vec<u8>, String) {
    run_binary_with_env(name, args, &[])
}

/// As [`run_binary`], with these environment variables (and no other `GREETER_*`).
pub fn run_binary_with_env(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, Vec<u8>, String) {
    run_binary_in(name, args, env, None)
}

/// As [`run_binary_with_env`], in the directory `cwd` when one is given.
pub fn run_binary_in(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
) -> (ExitStatus, Vec<u8>, String) {
    let mut command = Command::new(binary(name));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GREETER_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .envs(env.iter().copied())
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
    let stderr = Arc::default();
    let stderr_reader = collect_into(child.stderr.take().unwrap(), Arc::clone(&stderr));
    let status = wait_for(
        STEP_TIMEOUT,
        || format!("{name} {args:?} to finish"),
        || child.try_wait().unwrap(),
    );
    let stdout = stdout_reader.join().unwrap();
    let _ = stderr_reader.join();
    let stderr = stderr.lock().unwrap().clone();
    (status, stdout, stderr)
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
