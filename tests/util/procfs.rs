//! What `/proc` says of a process: its CPU time and its descriptors.

use std::thread;
use std::time::Duration;

/// The CPU ticks (of 100) process `pid` uses over the next second; it must run
/// throughout. (A rate over a fixed second is the measurement, not a wait.)
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

/// How many descriptors process `pid` has open.
pub fn open_fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the process's fd table")
        .count()
}

/// The send and receive queues (bytes not yet acknowledged, bytes not yet read) of
/// the IPv4 TCP socket bound to `local` and connected to `remote`, from
/// `/proc/net/tcp`, if there is one. For a listening socket (`remote` 0.0.0.0:0) the
/// receive queue is how many connections wait in its accept queue.
pub fn tcp_queues(
    local: std::net::SocketAddrV4,
    remote: std::net::SocketAddrV4,
) -> Option<(u64, u64)> {
    // Addresses are written as the 32-bit value in host order (hex), then the port.
    let key = |addr: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(addr.ip().octets()),
            addr.port()
        )
    };
    let (local, remote) = (key(local), key(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()) {
            let (tx_queue, rx_queue) = fields.get(4)?.split_once(':')?;
            let hex = |field| u64::from_str_radix(field, 16).ok();
            Some((hex(tx_queue)?, hex(rx_queue)?))
        } else {
            None
        }
    })
}

/// The id of the thread of process `pid` named `name` (its `comm`, cut to 15 bytes
/// by the kernel), once it exists.
#[track_caller]
pub fn thread_named(pid: u32, name: &str) -> u32 {
    let name: String = name.chars().take(15).collect();
    super::wait_for(
        super::STEP_TIMEOUT,
        || format!("a thread named {name:?} in process {pid}"),
        || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .ok()?
                .flatten()
                .find(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == name)
                })
                .and_then(|task| task.file_name().to_str()?.parse().ok())
        },
    )
}

/// The state letter of thread `tid` of process `pid` (`S` sleeping, `t` stopped by a
/// tracer, ...).
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The state follows the command name's closing parenthesis.
    stat.rsplit_once(") ")?.1.chars().next()
}

/// One thread of a child process stopped by this test thread as a tracer would
/// (`PTRACE_SEIZE`, `PTRACE_INTERRUPT`), while the rest of the process runs; it runs
/// again when this is dropped (`PTRACE_DETACH`). Only the test thread that made it may
/// drop it (ptrace binds the tracer to its thread).
pub struct StoppedThread {
    tid: libc::pid_t,
}

impl StoppedThread {
    /// Stops thread `tid` and waits until it is stopped.
    pub fn stop(tid: u32) -> Self {
        let tid = tid as libc::pid_t;
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: PTRACE_SEIZE and PTRACE_INTERRUPT take a thread id and no memory of
        // ours (addr and data are null).
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, null, null),
                0,
                "PTRACE_SEIZE {tid}"
            );
            assert_eq!(
                libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null),
                0,
                "PTRACE_INTERRUPT"
            );
        }
        let mut status = 0;
        // SAFETY: waitpid writes only the status integer it is given.
        let waited = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        assert_eq!(waited, tid, "waitpid for the stopped thread");
        assert!(
            libc::WIFSTOPPED(status),
            "thread {tid} stopped: {status:#x}"
        );
        StoppedThread { tid }
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: as in `stop`; the thread is traced by this thread.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, null, null) };
    }
}
