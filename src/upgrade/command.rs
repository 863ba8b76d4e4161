//! What an upgrade starts: this binary's path as it was at start-up, its arguments and
//! the shell it goes through; and why no upgrade can start here, if none can.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

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
