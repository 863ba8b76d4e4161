//! `--pid-file PATH`: the serving process's pid, written atomically (a temporary file
//! beside it, then a rename) once it serves, so that a reader never sees a half
//! written or empty file; at an upgrade's handover the old process writes the new
//! one's pid and the new process writes it again. At exit it is removed only by the
//! process it names: one that handed over leaves it to the new one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
}
