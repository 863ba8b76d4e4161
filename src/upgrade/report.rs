//! The new process's side of an upgrade: the report channel it was passed, on which
//! it says `ready` once its workers run (and then receives the trapped connections),
//! or `failed: LINE`.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::listen_fds::report_fd;

#[cfg(test)]
mod tests;

/// The new process's side: how it tells the process that started it how its start
/// went.
#[derive(Debug)]
pub struct Report {
    channel: UnixStream,
    /// The pid of the process upgrading to this one.
    upgrader: u32,
}

impl Report {
    /// The report channel a process upgrading to this one passed, if it did. Call it
    /// first thing, before the passed sockets are taken (or anything else could take
    /// or close the descriptor).
    pub fn take() -> Option<Report> {
        let fd = report_fd()?;
        // SAFETY: the LISTEN_FDS protocol passed this descriptor to this process at
        // this number (LISTEN_PID names us), and nothing else takes it: the passed
        // sockets are taken by name, and this name is skipped there.
        let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Not inherited by a process this one upgrades to in turn.
        let _ = socket2::SockRef::from(&channel).set_cloexec(true);
        // The process upgrading to this one started it (the `/bin/sh -c` that set
        // LISTEN_PID exec'd into this one): read now, before it may exit.
        let upgrader = std::os::unix::process::parent_id();
        Some(Report { channel, upgrader })
    }

    /// The pid of the process upgrading to this one: a SIGTERM from it withdraws the
    /// upgrade ([`Request::Withdraw`](crate::supervisor::Request::Withdraw)).
    pub fn upgrader(&self) -> u32 {
        self.upgrader
    }

    /// Says that this process stopped at a bad flag: `usage` is the flag parser's
    /// message, of which the process upgrading to this one quotes the first line.
    pub fn bad_flag(self, usage: &str) {
        let first = usage.lines().next().unwrap_or_default();
        let line = first.strip_prefix("error: ").unwrap_or(first);
        self.failed(&line);
    }

    /// Says that this process serves. Returns the channel, on which the process
    /// upgrading to this one then hands over its trapped connections
    /// ([`super::handover`]) and which it closes once it has.
    pub fn ready(mut self) -> UnixStream {
        let _ = self.channel.write_all(b"ready\n");
        self.channel
    }

    /// Says why this process stopped before it served: `greeter-server: ERROR`, the
    /// line it printed on stderr.
    pub fn failed(mut self, error: &dyn std::fmt::Display) {
        let line = format!("greeter-server: {error}").replace('\n', " ");
        let _ = writeln!(self.channel, "failed: {line}");
    }
}
