//! Servers that outlive their parent: an upgrade's new process is reparented to the
//! test (its subreaper), which signals it by PID, reaps it and reads its pid file.

use std::path::Path;
use std::process::Command;

use super::{wait_for, STEP_TIMEOUT};

/// Makes this test process the reaper of its orphaned descendants: a server started
/// by an upgrade is reparented here when the one that started it exits.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer and touches no memory.
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(done, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Sends `signal` (a name: USR2, TERM) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// Waits until descendant `pid` (reparented here) has exited; returns its exit code.
pub fn wait_for_exit(pid: u32) -> i32 {
    let mut status = 0;
    wait_for(
        STEP_TIMEOUT,
        || format!("pid {pid} to exit"),
        || {
            // SAFETY: waitpid writes only the status integer it is given.
            let reaped = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
            (reaped == pid as i32).then_some(())
        },
    );
    assert!(libc::WIFEXITED(status), "pid {pid} was killed: {status}");
    libc::WEXITSTATUS(status)
}

/// The pid the pid file names.
pub fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
