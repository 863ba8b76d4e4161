//! systemd's notify protocol (`Type=notify`, `Type=notify-reload`): with
//! `NOTIFY_SOCKET` set, greeter says `READY=1` once it serves, `RELOADING=1` (with
//! `MONOTONIC_USEC=`) and `READY=1` again around a reload, `STOPPING=1` when a drain
//! begins, a one-line `STATUS=` now and then, and `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` while every event loop still answers. Without `NOTIFY_SOCKET`
//! nothing is sent. The datagrams go out from the supervisor and the reload thread,
//! never from an event loop (a send to a stalled manager may block).
//!
//! `NOTIFY_SOCKET` is read as sd_notify(3) says: a path, or with a leading `@` a name
//! in Linux's abstract namespace (no file to share).
//! The sd-notify crate connects by path only, so the datagram is sent here, to an
//! address std builds for either form; the crate still formats the states and reads
//! the watchdog's variables.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::warn;
use sd_notify::NotifyState;

use crate::handle::Snapshot;

/// How often `STATUS=` is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Whether a failed send was reported already (once is enough: the next failures are
/// the same).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Whether the service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the manager asked this
/// process for it.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// Sends `states` if the manager listens; a failure is logged once.
fn send(states: &[NotifyState<'_>]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send_to(&socket, states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            warn!(
                target: "greeter::notify",
                "notify: cannot tell the service manager ({err}); going on without it"
            );
        }
    }
}

/// Sends `states` as one datagram, a `KEY=value` line each, to the manager at
/// `socket` (`NOTIFY_SOCKET`'s value).
fn send_to(socket: &OsStr, states: &[NotifyState<'_>]) -> io::Result<()> {
    let datagram: String = states.iter().map(|state| format!("{state}\n")).collect();
    let manager = manager_address(socket)?;
    UnixDatagram::unbound()?.send_to_addr(datagram.as_bytes(), &manager)?;
    Ok(())
}

/// The address `NOTIFY_SOCKET` names: a leading `@` stands for the abstract
/// namespace's leading NUL (as systemd writes it), anything else is a path.
fn manager_address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    let vsock = [&b"vsock:"[..], b"vsock-stream:", b"vsock-dgram:"];
    if vsock.iter().any(|prefix| bytes.starts_with(prefix)) {
        // sd_notify(3)'s third form, for a manager outside a VM.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "an AF_VSOCK address, which greeter does not speak (a path or an @name only)",
        ));
    }
    match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(socket),
    }
}

/// The one-line status: what the server is doing now.
pub fn status_line(snapshot: &Snapshot) -> String {
    let state = if snapshot.draining {
        "draining"
    } else if snapshot.stopping {
        "stopping"
    } else {
        "serving"
    };
    format!(
        "{state}: held={} accepted={} greeting_bytes={}",
        snapshot.held, snapshot.totals.accepted, snapshot.greeting_bytes
    )
}

/// It serves. `MAINPID=` names this process: after an upgrade it is the new main
/// process (the unit needs `NotifyAccess=all` for systemd to take it from a process
/// it did not start).
pub fn ready(snapshot: &Snapshot) {
    send(&[
        NotifyState::MainPid(std::process::id()),
        NotifyState::Ready,
        NotifyState::Status(&status_line(snapshot)),
    ]);
}

/// A reload begins.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended (applied or refused: the server serves either way).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A drain begins.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// A stop was asked: the service is stopping, but greets on for `delay` (the
/// shutdown delay) before the drain.
pub fn stopping_after(delay: Duration) {
    let status = format!(
        "stopping: greeting on for {} before the drain",
        humantime::format_duration(delay)
    );
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// The drain begins after the shutdown delay (`STOPPING=1` was sent at its start).
pub fn draining() {
    send(&[NotifyState::Status("draining")]);
}

/// The status now.
pub fn status(snapshot: &Snapshot) {
    send(&[NotifyState::Status(&status_line(snapshot))]);
}

/// Every event loop answered since the last ping.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        let abstract_name = manager_address(OsStr::new("@greeter/notify")).unwrap();
        assert_eq!(
            abstract_name.as_abstract_name(),
            Some(&b"greeter/notify"[..])
        );
        assert_eq!(abstract_name.as_pathname(), None);
        let path = manager_address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let vsock = manager_address(OsStr::new("vsock:2:1234")).unwrap_err();
        assert!(vsock.to_string().contains("AF_VSOCK"), "{vsock}");
        // Longer than a socket address holds: an error, not a cut name.
        let long = format!("@{}", "x".repeat(200));
        assert!(manager_address(OsStr::new(&long)).is_err());
    }
}
