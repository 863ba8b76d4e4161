//! SIGUSR2: replace the running binary without refusing or resetting a connection.
//!
//! The running process starts the file at the path it was started from, with the same
//! arguments and environment, and hands it its listening sockets (and the metrics
//! endpoint's) by the `LISTEN_FDS` protocol greeter already serves systemd's sockets
//! by: each at fd 3 and up, named in `LISTEN_FDNAMES` (`metrics`, and for a listening
//! socket what tells which listener it is: `crate::listen_fds::fd_name`), with
//! `LISTEN_PID` naming the new process (a `/bin/sh -c '... exec'` sets it to its own
//! pid, which the exec keeps). One more descriptor, named `upgrade-report`, is one end
//! of a socket pair: the new process writes `ready` on it as soon as its workers run,
//! before anything that can block (the pid file, systemd, stdout), or `failed: LINE`
//! with its one-line error. Until then the old process serves as before; on `ready`
//! it drains as on SIGTERM. The listening sockets are the same sockets in both
//! processes, so connections queued in the backlog meanwhile are accepted by
//! whichever accepts first, and none is refused.
//!
//! A new process that does not serve is never killed outright, since it may hold
//! connections it accepted: it gets SIGTERM (a greeter drains; one from the process
//! that started it does not count as a stop signal, see
//! [`Request::Withdraw`](crate::supervisor::Request::Withdraw)), and SIGKILL only if
//! it is still there `--drain-timeout` (and a second) later. That is how one that does
//! not report within `--upgrade-timeout` ends, and one whose old process is asked to
//! stop: a stop during an upgrade stops the new process too, and the old process
//! exits only once it is gone, so that a stop never leaves a second server behind.
//!
//! Its rooms: this file holds what to start (`UpgradeCommand`) and whether it can
//! start here; `report` is the new process's side (the report channel), and
//! `upgrader` the old process's (start, await the report, stop one that does not
//! serve).

mod report;
mod upgrader;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

pub use report::Report;
pub use upgrader::{Outcome, Upgrader};

#[cfg(test)]
mod tests;

/// What to start: the binary's path as it was at start-up, and its arguments.
#[derive(Debug, Clone)]
pub struct UpgradeCommand {
    /// The file the server was started from.
    pub exe: PathBuf,
    /// Its arguments, without the program name.
    pub args: Vec<OsString>,
    /// The shell it is started through ([`SHELL`]; another only in tests).
    pub shell: PathBuf,
}

/// The shell a new binary is started through: `sh -c '... exec'` sets `LISTEN_PID` to
/// its own pid, which the exec keeps.
pub const SHELL: &str = "/bin/sh";

/// Why no upgrade can start here, if none can: `shell` is missing, as in an image
/// built `FROM scratch`, where a container is upgraded by replacing it.
pub fn refusal(shell: &Path) -> Option<String> {
    match std::fs::metadata(shell) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Some(format!(
            "{} is missing (in a container, replace the container instead)",
            shell.display()
        )),
        // Anything else is the start's to report.
        _ => None,
    }
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
            shell: PathBuf::from(SHELL),
        })
    }
}
