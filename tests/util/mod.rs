//! Helpers shared by the integration tests (greeter's, and greeter-load's through
//! `#[path]`), one job per file:
//! - `in_process`: a server on its own thread inside the test process.
//! - `process`: the real binaries as child processes, their output read as it comes.
//! - `peers`: clients that connect, read, stall or send on purpose, and the checks of
//!   what they received.
//! - `files`: temporary files, removed when dropped.
//! - `http`: the metrics endpoint, spoken to in raw HTTP.
//! - `procfs`: what `/proc` says of a process.
//! - `descendants`: servers an upgrade started, reparented to the test: signalled,
//!   reaped, found through their pid file.
//!
//! and here the one way every test waits: [`wait_for`] (and [`wait_until`]), which
//! polls a state, never a sleep that happens to be long enough. Every wait is
//! bounded, every server binds port 0 on loopback, and a child is only ever stopped
//! through its own PID.
#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(unused_imports)] // and so of what is re-exported here

mod descendants;
mod files;
mod http;
mod in_process;
mod peers;
mod process;
mod procfs;

pub use descendants::*;
pub use files::*;
pub use http::*;
pub use in_process::*;
pub use peers::*;
pub use process::*;
pub use procfs::*;

use std::thread;
use std::time::{Duration, Instant};

/// The default greeting, as bytes: what a server with no --message sends.
pub const DEFAULT_GREETING: &[u8] = greeter::DEFAULT_GREETING.as_bytes();

/// The longest any single step of a test may wait before it counts as a failure.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `probe` until it gives a value, failing the test after `timeout` with the
/// message `what` builds then (so it can show the state that was waited for).
#[track_caller]
pub fn wait_for<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {}", what());
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `condition` until it holds, failing the test with `what` after
/// [`STEP_TIMEOUT`].
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(
        STEP_TIMEOUT,
        || what.to_owned(),
        || condition().then_some(()),
    )
}
