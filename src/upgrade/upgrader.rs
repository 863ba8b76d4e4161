//! The old process's side of an upgrade: start the new process through the shell
//! with the listening sockets, await its report until `--upgrade-timeout`, and stop
//! one that does not serve (SIGTERM, then SIGKILL after `--drain-timeout`), waiting
//! until it is gone.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::command::{refusal, UpgradeCommand};
use crate::listen_fds::Handover;

/// Sets `LISTEN_PID` (and `WATCHDOG_PID`, if systemd asked for a watchdog) to the pid
/// of the process that then execs the new binary.
const EXEC_WITH_OWN_PID: &str = "LISTEN_PID=$$; export LISTEN_PID; \
     if [ -n \"${WATCHDOG_USEC:-}\" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; \
     exec \"$0\" \"$@\"";

/// What became of an upgrade under way, for the supervisor to act on and log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new process (this pid) serves: this one drains and exits.
    Serving(u32),
    /// The new process failed or did not report in time; this one goes on serving.
    /// Why, in one line (`upgrade: keeping this process: WHY`).
    Failed(String),
    /// A new process that was asked to stop has exited: how, in one line
    /// (`upgrade: LINE`).
    Stopped(String),
    /// A new process that was asked to stop was still there `--drain-timeout` (and a
    /// second) later and was killed: one line (`upgrade: LINE`, a warning).
    Killed(String),
}

/// How long a new process that reported failure (or closed its channel) has to exit
/// on its own before it is sent SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What a new process that was sent SIGTERM has beyond `--drain-timeout` before
/// SIGKILL: its drain ends at the drain timeout, then it joins its threads and logs
/// its totals.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// How long a message of trapped connections may wait for the new process to read
/// it before the rest are left to the drain.
const HANDOVER_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a new process on its way out is looked at (a `waitpid` with `WNOHANG`).
const REAP_EVERY: Duration = Duration::from_millis(10);

/// The old process's side: starts the new one, waits for its report, and stops it if
/// it does not serve.
#[derive(Debug)]
pub struct Upgrader {
    command: UpgradeCommand,
    handover: Handover,
    timeout: Duration,
    drain_timeout: Duration,
    pending: Option<Pending>,
    /// The report channel of a new process that said `ready`, until the trapped
    /// connections are handed over on it.
    serving: Option<UnixStream>,
}

/// An upgrade under way: the new process, from its start until it serves or is gone.
#[derive(Debug)]
struct Pending {
    child: Child,
    state: State,
}

/// Where a new process is.
#[derive(Debug)]
enum State {
    /// Started: its report is awaited until `deadline`.
    Starting {
        /// This end of the report channel.
        report: mio::net::UnixStream,
        /// What it has written so far.
        received: Vec<u8>,
        /// When it has not reported in time.
        deadline: Instant,
    },
    /// Not serving, and waited for until it has exited.
    Ending {
        /// Why it ends.
        why: Ending,
        /// When it is sent SIGTERM if it has not exited by then (`None` once sent).
        term_at: Option<Instant>,
        /// When it is sent SIGKILL if it has not exited by then (set with SIGTERM).
        kill_at: Option<Instant>,
        /// Whether it was sent SIGKILL.
        killed: bool,
    },
}

/// Why a new process ends.
#[derive(Debug)]
enum Ending {
    /// It reported failure (its line) or closed its channel without a word (`None`):
    /// it exits by itself.
    Failed(Option<String>),
    /// It did not report within `--upgrade-timeout`, or this process was asked to
    /// stop: it was sent SIGTERM.
    Stopped,
}

impl Upgrader {
    /// Upgrades to `command`, handing on `handover`, waiting `timeout` for the report;
    /// a new process sent SIGTERM has `drain_timeout` (and a second) before SIGKILL.
    pub fn new(
        command: UpgradeCommand,
        handover: Handover,
        timeout: Duration,
        drain_timeout: Duration,
    ) -> Self {
        Upgrader {
            command,
            handover,
            timeout,
            drain_timeout,
            pending: None,
            serving: None,
        }
    }

    /// The pid of the new process while an upgrade is under way: from its start until
    /// it serves or, if it does not, until it has exited.
    pub fn in_progress(&self) -> Option<u32> {
        self.pending.as_ref().map(|pending| pending.child.id())
    }

    /// When [`Upgrader::on_time`] has something to do next.
    pub fn next_due(&self) -> Option<Instant> {
        match &self.pending.as_ref()?.state {
            State::Starting { deadline, .. } => Some(*deadline),
            State::Ending { .. } => Some(Instant::now() + REAP_EVERY),
        }
    }

    /// Closes its duplicates of the listening sockets, once this process stops
    /// accepting: a drain (a client then finds the port closed, unless a new process
    /// holds the sockets too) or a handover.
    pub fn release_sockets(&mut self) {
        self.handover = Handover::default();
    }

    /// The report channel of the new process that serves, once: blocking, each send
    /// bounded by [`HANDOVER_SEND_TIMEOUT`] (a new process that stops reading does
    /// not hold this one's drain for long).
    pub fn take_serving_channel(&mut self) -> Option<UnixStream> {
        let channel = self.serving.take()?;
        let settings = channel
            .set_nonblocking(false)
            .and_then(|()| channel.set_write_timeout(Some(HANDOVER_SEND_TIMEOUT)));
        settings.ok().map(|()| channel)
    }

    /// The binary it starts.
    pub fn exe(&self) -> &std::path::Path {
        &self.command.exe
    }

    /// Why it cannot start the binary here, if it cannot (see [`refusal`]).
    pub fn refusal(&self) -> Option<String> {
        refusal(&self.command.shell)
    }

    /// Starts the new process and registers its report channel as `token`; returns
    /// its pid.
    ///
    /// # Errors
    /// If the sockets cannot be duplicated or the process cannot be started.
    pub fn start(&mut self, registry: &Registry, token: Token) -> io::Result<u32> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let mut command = Command::new(&self.command.shell);
        command
            .arg("-c")
            .arg(EXEC_WITH_OWN_PID)
            .arg(&self.command.exe)
            .args(&self.command.args)
            .env_remove("WATCHDOG_PID");
        self.handover.pass_to(&mut command, OwnedFd::from(theirs))?;
        let child = command.spawn()?;
        let mut report = mio::net::UnixStream::from_std(ours);
        registry.register(&mut report, token, Interest::READABLE)?;
        let pid = child.id();
        self.pending = Some(Pending {
            child,
            state: State::Starting {
                report,
                received: Vec::new(),
                deadline: Instant::now() + self.timeout,
            },
        });
        Ok(pid)
    }

    /// Reads the report channel after an event on it: the outcome once there is one.
    pub fn on_report(&mut self, registry: &Registry) -> Option<Outcome> {
        let pending = self.pending.as_mut()?;
        let State::Starting {
            report, received, ..
        } = &mut pending.state
        else {
            return None;
        };
        let mut chunk = [0u8; 512];
        let ended = loop {
            match report.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let line = received
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|end| String::from_utf8_lossy(&received[..end]).into_owned());
        let why = match line.as_deref() {
            Some("ready") => {
                let pid = pending.child.id();
                if let Some(mut pending) = self.pending.take() {
                    pending.close_report(registry);
                    // Kept, out of the poll: the trapped connections go on it.
                    if let State::Starting { report, .. } = pending.state {
                        self.serving = Some(UnixStream::from(report));
                    }
                    // A new process that serves goes on without us: it is not waited
                    // for.
                }
                return Some(Outcome::Serving(pid));
            }
            Some(line) => Some(line.strip_prefix("failed: ").unwrap_or(line).to_owned()),
            None if ended => None,
            None => return None,
        };
        pending.close_report(registry);
        pending.state = State::Ending {
            why: Ending::Failed(why),
            term_at: Some(Instant::now() + EXIT_GRACE),
            kill_at: None,
            killed: false,
        };
        // Logged once it has exited, with its exit status.
        self.on_time(Instant::now(), registry)
    }

    /// What is due by `now`: a new process that has not reported within
    /// `--upgrade-timeout` is sent SIGTERM; one on its way out is reaped (the outcome
    /// then says how it ended), sent SIGTERM or SIGKILL when its time is up.
    pub fn on_time(&mut self, now: Instant, registry: &Registry) -> Option<Outcome> {
        let drain_timeout = self.drain_timeout;
        let pending = self.pending.as_mut()?;
        match &mut pending.state {
            State::Starting { deadline, .. } => {
                if now < *deadline {
                    return None;
                }
                pending.stop(registry, now, drain_timeout);
                Some(Outcome::Failed(format!(
                    "the new process (pid {}) did not report that it serves within {}; \
                     stopping it",
                    pending.child.id(),
                    humantime::format_duration(self.timeout)
                )))
            }
            State::Ending {
                why,
                term_at,
                kill_at,
                killed,
            } => {
                let pid = pending.child.id();
                match pending.child.try_wait() {
                    Ok(Some(status)) => {
                        let outcome = match (why, *killed) {
                            (Ending::Failed(Some(line)), _) => Outcome::Failed(format!(
                                "the new process (pid {pid}) exited with {status}: {line}"
                            )),
                            (Ending::Failed(None), _) => Outcome::Failed(format!(
                                "the new process (pid {pid}) exited with {status} before it \
                                 served (its log says why)"
                            )),
                            (Ending::Stopped, false) => Outcome::Stopped(format!(
                                "the new process (pid {pid}) has stopped: {status}"
                            )),
                            (Ending::Stopped, true) => Outcome::Killed(format!(
                                "the new process (pid {pid}) had not stopped {} after \
                                 SIGTERM; killed it",
                                humantime::format_duration(drain_timeout + KILL_GRACE)
                            )),
                        };
                        self.pending = None;
                        Some(outcome)
                    }
                    Ok(None) => {
                        if term_at.is_some_and(|at| now >= at) {
                            *term_at = None;
                            *kill_at = Some(now + drain_timeout + KILL_GRACE);
                            terminate(&pending.child);
                        } else if kill_at.is_some_and(|at| now >= at) {
                            *kill_at = None;
                            *killed = true;
                            let _ = pending.child.kill();
                        }
                        None
                    }
                    // Not ours to wait for any more (it cannot be: we started it).
                    Err(_) => {
                        self.pending = None;
                        None
                    }
                }
            }
        }
    }

    /// This process is asked to stop. A new process that has not reported is stopped
    /// too (SIGTERM: it drains what it accepted), as is one that failed and has not
    /// exited yet; one already sent SIGTERM is not sent another (a greeter takes a
    /// second stop signal as "close what is in flight now"). Returns the pid of a new
    /// process this stop has stopped.
    pub fn stop(&mut self, registry: &Registry) -> Option<u32> {
        let drain_timeout = self.drain_timeout;
        let pending = self.pending.as_mut()?;
        match &pending.state {
            State::Starting { .. } => {
                pending.stop(registry, Instant::now(), drain_timeout);
                Some(pending.child.id())
            }
            State::Ending {
                term_at: Some(_), ..
            } => {
                pending.stop(registry, Instant::now(), drain_timeout);
                None
            }
            State::Ending { .. } => None,
        }
    }
}

impl Pending {
    /// Sends SIGTERM, unless it has exited, and gives it `drain_timeout` (and a
    /// second) before SIGKILL; its report is not read any more.
    fn stop(&mut self, registry: &Registry, now: Instant, drain_timeout: Duration) {
        self.close_report(registry);
        // One that has exited is not signalled (its pid may be reused once it is
        // reaped); the next look reports it.
        if let Ok(None) = self.child.try_wait() {
            terminate(&self.child);
        }
        let why = match &self.state {
            State::Ending {
                why: Ending::Failed(line),
                ..
            } => Ending::Failed(line.clone()),
            _ => Ending::Stopped,
        };
        self.state = State::Ending {
            why,
            term_at: None,
            kill_at: Some(now + drain_timeout + KILL_GRACE),
            killed: false,
        };
    }

    /// Deregisters the report channel, if it is still read: it closes when the state
    /// that holds it is replaced.
    fn close_report(&mut self, registry: &Registry) {
        if let State::Starting { report, .. } = &mut self.state {
            let _ = registry.deregister(report);
        }
    }
}

/// Sends SIGTERM to `child`, which has not been reaped.
fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory. The pid is our child's,
    // and it has not been reaped (the callers saw `try_wait` return `None`, and only
    // `try_wait` reaps it here), so it cannot name another process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
