//! The trapped connections' moments in the holder (`--tarpit`): a client trapped
//! (counted, its `TRAP` line), a drip due (or the trap's timeout), and a drain that
//! closes every trap at once, since a trap never finishes.

use std::time::{Instant, SystemTime};

use log::Level;

use super::{HeldConnections, HeldCounts};
use crate::admission::PolicyTable;
use crate::close::{log_trap, CloseReason};
use crate::connection::{Connection, Step};
use crate::tarpit::{Drip, TrapStart};
use crate::timers::Timer;

impl HeldConnections {
    /// Trapped connection `key`'s drip is due at `now`: its trap ends if it has
    /// lasted `--trap-timeout`; else one drip (its listener's settings now), and the
    /// next one due an interval later.
    pub(super) fn drip(&mut self, key: usize, now: Instant) {
        let held = &mut self.slab[key];
        let listener = held.conn.listener();
        let drip = *self.table.drip(listener);
        if let (Some(limit), Some(start)) = (self.trap_timeout, held.conn.trap_start()) {
            if start.elapsed(SystemTime::now()) >= limit {
                return self.close(key, CloseReason::TrapTimeout);
            }
        }
        let (before, sent_before) = (held.conn.phase(), held.conn.sent(&held.greeting));
        let start = held.conn.trap_start();
        let step = held.conn.drip(&held.greeting, &drip, &mut self.rng);
        if let (Some(start), false) = (start, held.conn.phase().is_trapped()) {
            // A dripped greeting all out, flushed or lingering as any other now: its
            // accept time on the connections' clock again, from its trap's start.
            let trapped = start.elapsed(SystemTime::now()).as_millis() as u32;
            let accepted = self.millis_since_start(now).wrapping_sub(trapped);
            self.slab[key].conn.set_accepted_ms(accepted);
        }
        let held = &mut self.slab[key];
        let dripped = (held.conn.sent(&held.greeting) - sent_before) as u64;
        let serial = held.serial;
        self.counts.bytes_sent += dripped;
        self.counts.dripped += dripped;
        self.counts.trapped_ms += drip.interval.as_millis() as u64;
        if step == Step::Wait && self.slab[key].conn.phase().is_trapped() {
            self.timers
                .push_lasting(Timer::Drip, now, drip.interval, key, serial);
        }
        self.settle(key, before, step, now);
    }

    /// Closes every trapped connection (a drain: traps never finish), reason
    /// `drain`.
    pub(crate) fn close_trapped(&mut self) {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, held)| held.conn.phase().is_trapped())
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.close(key, CloseReason::DrainTimeout);
        }
    }
}

/// How long a trap that began at `start` has lasted, in milliseconds, at least 1
/// (0 means "not trapped" in a [`Closed`]).
#[cold]
#[inline(never)]
pub(super) fn trap_millis(start: TrapStart) -> u64 {
    (start.elapsed(SystemTime::now()).as_millis() as u64).max(1)
}

/// A client just trapped (`conn`, sent `lead` so far): counted, its lead counted
/// as dripped, its `TRAP` line logged at `level`.
#[cold]
#[inline(never)]
pub(super) fn note_trap(
    counts: &mut HeldCounts,
    table: &PolicyTable,
    level: Level,
    conn: &Connection,
    lead: &[u8],
) {
    counts.trapped += 1;
    counts.dripped += conn.sent(lead) as u64;
    if log::log_enabled!(target: crate::close::LOG_TARGET, level) {
        let label = table
            .tarpit(conn.listener())
            .map_or("", |tarpit| &tarpit.label);
        log_trap(conn.peer(), label, level);
    }
}

/// Traps a fresh connection of a tarpit listener: its lead (`lead`) sent now, its
/// drips to come.
#[cold]
#[inline(never)]
pub(super) fn trap(table: &PolicyTable, conn: &mut Connection, lead: &[u8]) -> Step {
    let listener = conn.listener();
    let lines = table
        .tarpit(listener)
        .is_none_or(|tarpit| tarpit.drip == Drip::Lines);
    let bytes = table.drip(listener).bytes;
    conn.trap(lines, TrapStart::at(SystemTime::now()), lead, bytes)
}
