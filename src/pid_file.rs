//! `--pid-file PATH`: the serving process's pid, written atomically (a temporary file
//! beside it, then a rename) once it serves, so that a reader never sees a half
//! written or empty file; at an upgrade's handover the old process writes the new
//! one's pid and the new process writes it again. At exit it is removed only by the
//! process it names: one that handed over leaves it to the new one. [`PidFile`] is
//! that rule as a guard the supervisor holds while it serves.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::warn;

/// The log target of the pid file's warning: the supervisor's, where it was written
/// before the guard had a room of its own (docs/operations.md).
const LOG_TARGET: &str = "greeter::supervisor";

/// A pid file this process wrote: it names this process, or the new process of an
/// upgrade once that one serves, and is removed when the guard is dropped unless it
/// was handed over.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// A new process serves and owns the file: it is not removed here.
    handed_over: bool,
}

impl PidFile {
    /// Writes this process's pid to `path`; `None` (after a warning: the server serves
    /// on) if it cannot, and nothing is written or removed there afterwards.
    pub fn create(path: PathBuf) -> Option<PidFile> {
        write_or_warn(&path, std::process::id()).then_some(PidFile {
            path,
            handed_over: false,
        })
    }

    /// An upgrade's new process (`pid`) serves: the file names it from now on, before
    /// the new process gets to it, and stays at exit.
    pub fn hand_over(&mut self, pid: u32) {
        self.handed_over = true;
        write_or_warn(&self.path, pid);
    }

    /// Names this process again: a new process of an upgrade that did not serve may
    /// have written (and removed) the file if it reported just as it was stopped.
    pub fn reclaim(&self) {
        write_or_warn(&self.path, std::process::id());
    }
}

impl Drop for PidFile {
    /// Removes the file if it still names this process and was not handed over.
    fn drop(&mut self) {
        if !self.handed_over {
            remove_if_ours(&self.path);
        }
    }
}

/// Writes `pid` to the pid file at `path`; whether it did (a failure is a warning).
fn write_or_warn(path: &Path, pid: u32) -> bool {
    match write_pid(path, pid) {
        Ok(()) => true,
        Err(err) => {
            warn!(target: LOG_TARGET, "pid file: cannot write {}: {err}", path.display());
            false
        }
    }
}

/// Writes this process's pid to `path`, atomically.
///
/// # Errors
/// If the temporary file cannot be written or renamed over `path`.
pub fn write(path: &Path) -> io::Result<()> {
    write_pid(path, std::process::id())
}

/// Writes `pid` to `path`, atomically: this process's, or, at an upgrade's handover,
/// the new process's (written by both, so that the file names it from the moment the
/// old one drains).
///
/// # Errors
/// If the temporary file cannot be written or renamed over `path`.
pub fn write_pid(path: &Path, pid: u32) -> io::Result<()> {
    // Named after the writer: the old and the new process of an upgrade may write at
    // once.
    let temporary = temporary_beside(path, std::process::id());
    // No fsync: readers need the rename's atomicity, not durability (a pid file is
    // stale after a crash anyway), and an fsync behind a busy disk held up the
    // supervisor's start for seconds, with the signals it answers.
    let written = std::fs::File::create(&temporary).and_then(|mut file| writeln!(file, "{pid}"));
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = std::fs::remove_file(&temporary);
            Err(err)
        }
    }
}

/// Removes `path` if it still names this process.
pub fn remove_if_ours(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// `PATH.PID.tmp`: in the same directory, so that the rename is atomic.
fn temporary_beside(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{pid}.tmp"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_removed_only_by_its_process() {
        let path = std::env::temp_dir().join(format!("greeter-pid-{}", std::process::id()));
        std::fs::write(&path, "1\n").unwrap();
        remove_if_ours(&path);
        assert!(path.exists(), "another process's file stays");
        write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert!(!temporary_beside(&path, std::process::id()).exists());
        remove_if_ours(&path);
        assert!(!path.exists());
    }

    #[test]
    fn the_guard_removes_its_file_unless_it_handed_it_over() {
        let path = std::env::temp_dir().join(format!("greeter-pid-guard-{}", std::process::id()));
        drop(PidFile::create(path.clone()).unwrap());
        assert!(!path.exists(), "removed at exit");
        let mut guard = PidFile::create(path.clone()).unwrap();
        guard.hand_over(1);
        drop(guard);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1\n",
            "the new process's"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
