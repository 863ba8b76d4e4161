//! Counting and logging a close, the loop's last step for every connection: its
//! reason counted, a peer's first input classified, a pregreeter's `PREGREET` line,
//! the `CLOSE` line, and a trap's duration in its histogram.

use crate::close::{log_close, log_pregreet, Closed};
use crate::totals::Totals;

/// Counts a trap's duration (its `ms=`, by the wall clock) in the trap histogram:
/// out of line, so that the held connections' loop is as it was.
#[cold]
#[inline(never)]
pub(super) fn observe_trap(totals: &mut Totals, trapped_ms: u64) {
    totals.observe_trap_duration(trapped_ms);
}

/// Counts a close under its reason and logs its `CLOSE` line (its `ACCEPT` line, even
/// one owed by a connection whose PROXY header never came, was logged by `held.rs`).
#[inline(always)]
pub(super) fn record(
    totals: &mut Totals,
    closed: &Closed,
    level: log::Level,
    lifetime_ms: impl FnOnce() -> u32,
) {
    totals.count_close(closed.reason);
    // Only a held connection reads input: the fast path passes one predicted branch.
    if closed.input > 0 {
        record_input(totals, closed, level);
    }
    log_close(closed, level, lifetime_ms);
}

/// Counts what a peer that sent data sent first, and a pregreeter's `PREGREET` line.
#[cold]
fn record_input(totals: &mut Totals, closed: &Closed, level: log::Level) {
    totals.count_peer_input(closed.first);
    if closed.pregreeted {
        totals.pregreeted += 1;
        if log::log_enabled!(target: crate::close::LOG_TARGET, level) {
            log_pregreet(closed, level);
        }
    }
}
