//! SIGUSR2: replace the running binary without refusing or resetting a connection.
//!
//! The running process starts the file at the path it was started from, with the same
//! arguments and environment, and hands it its listening sockets (and the metrics
//! endpoint's) by the `LISTEN_FDS` protocol greeter already serves systemd's sockets
//! by: each at fd 3 and up, named in `LISTEN_FDNAMES` (`metrics`, and for a listening
//! socket what tells which listener it is: `crate::listener::fd_name`), with
//! `LISTEN_PID` naming the new process (a `/bin/sh -c '... exec'` sets it to its own
//! pid, which the exec keeps). One more descriptor, named `upgrade-report`, is one end
//! of a socket pair: the new process writes `ready` on it once it serves, or
//! `failed: LINE` with its one-line error. Until then the old process serves as
//! before; on `ready` it drains as on SIGTERM. The listening sockets are the same
//! sockets in both processes, so connections queued in the backlog meanwhile are
//! accepted by whichever accepts first, and none is refused.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use mio::{Interest, Registry, Token};

use crate::listener::{fd_names, METRICS_FD_NAME};

/// The `LISTEN_FDNAMES` name of the report channel.
pub const REPORT_FD_NAME: &str = "upgrade-report";

/// Sets `LISTEN_PID` (and `WATCHDOG_PID`, if systemd asked for a watchdog) to the pid
/// of the process that then execs the new binary.
const EXEC_WITH_OWN_PID: &str = "LISTEN_PID=$$; export LISTEN_PID; \
     if [ -n \"${WATCHDOG_USEC:-}\" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; \
     exec \"$0\" \"$@\"";

/// The new process's side: how it tells the process that started it how its start
/// went.
#[derive(Debug)]
pub struct Report {
    channel: UnixStream,
}

impl Report {
    /// The report channel a process upgrading to this one passed, if it did. Call it
    /// first thing, before the passed sockets are taken.
    pub fn take() -> Option<Report> {
        let passed: usize = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid == std::process::id());
        let index = fd_names().iter().position(|name| name == REPORT_FD_NAME)?;
        if !ours || index >= passed {
            return None;
        }
        let fd = 3 + index as i32;
        // SAFETY: the LISTEN_FDS protocol passed this descriptor to this process at
        // this number (LISTEN_PID names us), and nothing else takes it: the passed
        // sockets are taken by name, and this name is skipped there.
        let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Not inherited by a process this one upgrades to in turn.
        let _ = socket2::SockRef::from(&channel).set_cloexec(true);
        Some(Report { channel })
    }

    /// Says that this process serves.
    pub fn ready(mut self) {
        let _ = self.channel.write_all(b"ready\n");
    }

    /// Says why this process stopped before it served.
    pub fn failed(mut self, line: &str) {
        let _ = writeln!(self.channel, "failed: {}", line.replace('\n', " "));
    }
}

/// The sockets an upgrade hands on: duplicates, kept while this process lives.
#[derive(Debug, Default)]
pub struct Handover {
    /// Each listening socket with the name it is handed on with, which tells the new
    /// process which of its listeners it is ([`crate::listener::fd_name`]).
    pub listeners: Vec<(std::net::TcpListener, String)>,
    /// The metrics endpoint's listening socket, with `--metrics`.
    pub metrics: Option<std::net::TcpListener>,
}

/// What to start: the binary's path as it was at start-up, and its arguments.
#[derive(Debug, Clone)]
pub struct UpgradeCommand {
    /// The file the server was started from.
    pub exe: PathBuf,
    /// Its arguments, without the program name.
    pub args: Vec<OsString>,
}

impl UpgradeCommand {
    /// This process's own: `current_exe` (read now, before any package replaces the
    /// file) and its arguments.
    ///
    /// # Errors
    /// If the path of the running binary cannot be read.
    pub fn of_this_process() -> io::Result<Self> {
        Ok(UpgradeCommand {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// How an upgrade ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new process (this pid) serves: this one drains and exits.
    Serving(u32),
    /// The new process failed; this one goes on serving. Why, in one line.
    Failed(String),
}

/// The old process's side: starts the new one and waits for its report.
#[derive(Debug)]
pub struct Upgrader {
    command: UpgradeCommand,
    handover: Handover,
    timeout: Duration,
    pending: Option<Pending>,
}

/// An upgrade under way.
#[derive(Debug)]
struct Pending {
    child: Child,
    report: mio::net::UnixStream,
    received: Vec<u8>,
    deadline: Instant,
}

impl Upgrader {
    /// Upgrades to `command`, handing on `handover`, waiting `timeout` for the report.
    pub fn new(command: UpgradeCommand, handover: Handover, timeout: Duration) -> Self {
        Upgrader {
            command,
            handover,
            timeout,
            pending: None,
        }
    }

    /// The pid of the new process while an upgrade is under way.
    pub fn in_progress(&self) -> Option<u32> {
        self.pending.as_ref().map(|pending| pending.child.id())
    }

    /// When the one under way times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|pending| pending.deadline)
    }

    /// Closes its duplicates of the listening sockets, once this process stops
    /// accepting: a drain (a client then finds the port closed, unless a new process
    /// holds the sockets too) or a handover.
    pub fn release_sockets(&mut self) {
        self.handover = Handover::default();
    }

    /// The binary it starts.
    pub fn exe(&self) -> &std::path::Path {
        &self.command.exe
    }

    /// Starts the new process and registers its report channel as `token`; returns
    /// its pid.
    ///
    /// # Errors
    /// If the sockets cannot be duplicated or the process cannot be started.
    pub fn start(&mut self, registry: &Registry, token: Token) -> io::Result<u32> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let mut mappings = Vec::new();
        let mut names = Vec::new();
        for (socket, name) in &self.handover.listeners {
            mappings.push(OwnedFd::from(socket.try_clone()?));
            names.push(name.clone());
        }
        if let Some(metrics) = &self.handover.metrics {
            mappings.push(OwnedFd::from(metrics.try_clone()?));
            names.push(METRICS_FD_NAME.to_owned());
        }
        mappings.push(OwnedFd::from(theirs));
        names.push(REPORT_FD_NAME.to_owned());
        let count = mappings.len();
        let mappings = mappings
            .into_iter()
            .zip(3..)
            .map(|(parent_fd, child_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(EXEC_WITH_OWN_PID)
            .arg(&self.command.exe)
            .args(&self.command.args)
            .env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env_remove("WATCHDOG_PID")
            .fd_mappings(mappings)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        let child = command.spawn()?;
        let mut report = mio::net::UnixStream::from_std(ours);
        registry.register(&mut report, token, Interest::READABLE)?;
        let pid = child.id();
        self.pending = Some(Pending {
            child,
            report,
            received: Vec::new(),
            deadline: Instant::now() + self.timeout,
        });
        Ok(pid)
    }

    /// Reads the report channel after an event on it: the outcome once there is one.
    pub fn on_report(&mut self, registry: &Registry) -> Option<Outcome> {
        let pending = self.pending.as_mut()?;
        let mut chunk = [0u8; 512];
        let ended = loop {
            match pending.report.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => pending.received.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let line = pending
            .received
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|end| String::from_utf8_lossy(&pending.received[..end]).into_owned());
        let outcome = match line.as_deref() {
            Some("ready") => Outcome::Serving(pending.child.id()),
            Some(line) => {
                let why = line.strip_prefix("failed: ").unwrap_or(line).to_owned();
                let status = reap(&mut pending.child);
                Outcome::Failed(format!(
                    "the new process (pid {}) {}: {why}",
                    pending.child.id(),
                    describe(status)
                ))
            }
            None if ended => {
                let status = reap(&mut pending.child);
                Outcome::Failed(format!(
                    "the new process (pid {}) {} before it served (its log says why)",
                    pending.child.id(),
                    describe(status)
                ))
            }
            None => return None,
        };
        self.finish(registry);
        Some(outcome)
    }

    /// The outcome if the one under way has run out of time by `now`: it is stopped.
    pub fn on_time(&mut self, now: Instant, registry: &Registry) -> Option<Outcome> {
        let pending = self.pending.as_mut()?;
        if now < pending.deadline {
            return None;
        }
        let _ = pending.child.kill();
        let _ = pending.child.wait();
        let outcome = Outcome::Failed(format!(
            "the new process (pid {}) did not report that it serves within {}; stopped it",
            pending.child.id(),
            humantime::format_duration(self.timeout)
        ));
        self.finish(registry);
        Some(outcome)
    }

    fn finish(&mut self, registry: &Registry) {
        if let Some(mut pending) = self.pending.take() {
            let _ = registry.deregister(&mut pending.report);
            // A new process that serves goes on without us: it is not waited for.
        }
    }
}

/// Waits for a child that has reported failure (or closed its channel) to exit: it
/// is on its way out, but a second at most, then it is stopped.
fn reap(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                return child.wait().ok();
            }
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => format!("exited with {status}"),
        None => "exited".to_owned(),
    }
}
