//! Servers that outlive their parent: an upgrade's new process is reparented to the
//! test (its subreaper), which signals it by PID, reaps it and reads its pid file;
//! and a server started from its own copy of the binary, which a test may replace.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{binary, lines_of, wait_for, STEP_TIMEOUT};

/// A path of this test process's own in the tests' temporary directory.
pub fn temp_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

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

/// A copy of greeter-server at a path of its own, which a test may replace.
pub fn own_copy(name: &str) -> PathBuf {
    let path = temp_path(name);
    std::fs::copy(binary("greeter-server"), &path).unwrap();
    path
}

/// Replaces the file at `path` as a package manager would (a new file renamed over).
pub fn replace_with_script(path: &Path, script: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, script).unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// A greeter-server started from its own copy of the binary, so that an upgrade starts
/// whatever the test then puts at that path; its stderr read line by line (a process
/// it starts writes there too).
pub struct FromCopy {
    pub exe: PathBuf,
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
    /// The stderr lines read so far.
    read: std::cell::RefCell<Vec<String>>,
}

impl FromCopy {
    /// Copies the binary to a path named after `name` and starts it there with
    /// `--port 0 ARGS`; returns once it prints its `listening on` line.
    pub fn start(name: &str, args: &[&str]) -> Self {
        let exe = own_copy(name);
        let mut child = Command::new(&exe)
            .args(["--port", "0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines_of(child.stderr.take().unwrap());
        let stdout = lines_of(child.stdout.take().unwrap());
        let line = stdout.recv_timeout(STEP_TIMEOUT).unwrap();
        let addr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
        FromCopy {
            exe,
            child,
            addr,
            stderr,
            read: Default::default(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stderr line that contains one of `needles`.
    #[track_caller]
    pub fn next_line_with_any(&self, needles: &[&str]) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(STEP_TIMEOUT)
                .unwrap_or_else(|_| panic!("no log line with any of {needles:?}"));
            self.read.borrow_mut().push(line.clone());
            if needles.iter().any(|needle| line.contains(needle)) {
                return line;
            }
        }
    }

    #[track_caller]
    pub fn next_line_with(&self, needle: &str) -> String {
        self.next_line_with_any(&[needle])
    }

    /// A line read so far, or else the next one, that contains `needle`: for lines of
    /// two processes, which may come in either order.
    #[track_caller]
    pub fn line_with(&self, needle: &str) -> String {
        let seen = self
            .read
            .borrow()
            .iter()
            .find(|line| line.contains(needle))
            .cloned();
        seen.unwrap_or_else(|| self.next_line_with(needle))
    }

    /// How many lines logged so far (read now, without waiting) contain `needle`.
    pub fn count_lines_with(&self, needle: &str) -> usize {
        let mut read = self.read.borrow_mut();
        read.extend(self.stderr.try_iter());
        read.iter().filter(|line| line.contains(needle)).count()
    }

    /// Whether a line read so far contains `needle`.
    pub fn has_read(&self, needle: &str) -> bool {
        self.read.borrow().iter().any(|line| line.contains(needle))
    }

    /// SIGUSR2; returns the new process's pid from the `upgrade: started` line.
    #[track_caller]
    pub fn ask_for_upgrade(&self) -> u32 {
        signal(self.pid(), "USR2");
        let line = self.next_line_with("upgrade: started ");
        line.rsplit_once("(pid ")
            .and_then(|(_, rest)| rest.split(')').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"))
    }

    /// Waits for it to exit; its exit code.
    #[track_caller]
    pub fn exit_code(&mut self) -> Option<i32> {
        let child = &mut self.child;
        wait_for(
            STEP_TIMEOUT,
            || "the old process to exit".to_owned(),
            || child.try_wait().unwrap(),
        )
        .code()
    }
}

impl Drop for FromCopy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.exe);
    }
}

/// Ends a server generation a test started through an upgrade, if the test fails
/// before it does (gone already when the test passed).
pub struct Generation(pub u32);

impl Drop for Generation {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
