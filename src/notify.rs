//! systemd's notify protocol (`Type=notify`, `Type=notify-reload`): with
//! `NOTIFY_SOCKET` set, greeter says `READY=1` once it serves, `RELOADING=1` (with
//! `MONOTONIC_USEC=`) and `READY=1` again around a reload, `STOPPING=1` when a drain
//! begins, a one-line `STATUS=` now and then, and `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` while every event loop still answers. Without `NOTIFY_SOCKET`
//! nothing is sent. The datagrams go out from the supervisor and the reload thread,
//! never from an event loop (a send to a stalled manager may block).

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
    if let Err(err) = sd_notify::notify(states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            warn!("notify: cannot tell the service manager ({err}); going on without it");
        }
    }
}

/// The one-line status: what the server is doing now.
pub fn status_line(snapshot: &Snapshot) -> String {
    let state = if snapshot.draining {
        "draining"
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

/// The status now.
pub fn status(snapshot: &Snapshot) {
    send(&[NotifyState::Status(&status_line(snapshot))]);
}

/// Every event loop answered since the last ping.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
