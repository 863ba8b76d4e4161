//! The trapped connections' moments in the holder (`--tarpit`): a client trapped
//! (counted, its `TRAP` line), a drip due (or the trap's timeout), and a drain that
//! closes every trap at once, since a trap never finishes.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::Level;

use super::{HeldConnections, HeldCounts};
use crate::admission::{PolicyTable, ServerLimits, TrapWhy};
use crate::close::{log_trap, CloseReason};
use crate::connection::{Connection, Step};
use crate::geoip::{Country, GeoIp, TrapsByCountry};
use crate::greeting::Greeting;
use crate::slots::Slots;
use crate::tarpit::{Drip, TrapStart};

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
        let country = held.conn.trap_country();
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
        if let Some(country) = country {
            let traps = &self.geo.traps;
            traps.dripped(country, dripped, drip.interval.as_millis() as u64);
            if !self.slab[key].conn.phase().is_trapped() {
                // A dripped greeting all out: trapped no more.
                traps.released(country);
            }
        }
        if step == Step::Wait && self.slab[key].conn.phase().is_trapped() {
            self.timers.push_next_drip(now, drip.interval, key, serial);
        }
        self.settle(key, before, step, now);
    }

    /// Held connection `key`, delayed, pregreeted with `--pregreet tarpit`: trapped
    /// with its listener's trap now (its slots moved from the delay's to the trap's,
    /// its `TRAP` line logged), or, when the tarpit is full, its close (`trap-full`).
    pub(super) fn trap_pregreeter(&mut self, key: usize) -> Step {
        let held = &mut self.slab[key];
        let delaying = held.conn.phase();
        let ip = held.conn.peer().ip();
        let (step, lead) = trap_pregreeter(&self.table, &self.slots, &mut held.conn);
        let Some(lead) = lead else {
            return step;
        };
        held.greeting = lead.clone();
        self.counts.bytes_sent += held.conn.sent(&held.greeting) as u64;
        self.note_trapped(key);
        self.slots.count_out(delaying, ip);
        self.slots.count_in(self.slab[key].conn.phase(), ip);
        step
    }

    /// Held connection `key`, trapped just now ([`note_trap`]).
    pub(super) fn note_trapped(&mut self, key: usize) {
        let held = &mut self.slab[key];
        note_trap(
            &mut self.counts,
            &self.table,
            &self.geo,
            self.log_level,
            &mut held.conn,
            &held.greeting,
        );
    }

    /// The keys of the trapped connections.
    pub(super) fn trapped_keys(&self) -> Vec<usize> {
        self.slab
            .iter()
            .filter(|(_, held)| held.conn.phase().is_trapped())
            .map(|(key, _)| key)
            .collect()
    }

    /// Closes every trapped connection (a drain: traps never finish), reason
    /// `drain`.
    pub(crate) fn close_trapped(&mut self) {
        for key in self.trapped_keys() {
            self.close(key, CloseReason::DrainTimeout);
        }
    }
}

/// How long a trap that began at `start` has lasted, in milliseconds, at least 1
/// (0 means "not trapped" in a [`Closed`](crate::close::Closed)).
#[cold]
#[inline(never)]
pub(super) fn trap_millis(start: TrapStart) -> u64 {
    (start.elapsed(SystemTime::now()).as_millis() as u64).max(1)
}

/// A client just trapped (`conn`, sent `lead` so far): its country looked up (with
/// `--geoip-db`: the one lookup of its life) and kept, counted (by country too), its
/// lead counted as dripped, its `TRAP` line logged at `level`.
#[cold]
#[inline(never)]
pub(super) fn note_trap(
    counts: &mut HeldCounts,
    table: &PolicyTable,
    geo: &Geo,
    level: Level,
    conn: &mut Connection,
    lead: &[u8],
) {
    let country = geo
        .db
        .as_ref()
        .map_or(Country::NONE, |db| db.country(conn.peer().ip()));
    conn.set_trap_country(country);
    let sent = conn.sent(lead) as u64;
    counts.trapped += 1;
    counts.dripped += sent;
    geo.traps.trapped(country, sent);
    if log::log_enabled!(target: crate::close::LOG_TARGET, level) {
        let label = table
            .trap(conn.listener())
            .map_or("", |tarpit| &tarpit.label);
        let why = conn.trap_why().unwrap_or(TrapWhy::Listener);
        log_trap(conn.peer(), label, why.as_str(), country, level);
    }
}

/// Where trapped clients come from: the `--geoip-db` database of the config in force
/// (`None`: none, no lookup), and the trap counters by country `/metrics` reads.
#[derive(Debug, Default)]
pub(crate) struct Geo {
    pub(super) db: Option<Arc<GeoIp>>,
    pub(super) traps: Arc<TrapsByCountry>,
}

/// Traps a connection (a tarpit listener's, or one its policy traps: `why`): its
/// lead (`lead`) sent now, its drips to come.
#[cold]
#[inline(never)]
pub(super) fn trap(table: &PolicyTable, conn: &mut Connection, lead: &[u8], why: TrapWhy) -> Step {
    let listener = conn.listener();
    let lines = table
        .trap(listener)
        .is_none_or(|trap| trap.drip == Drip::Lines);
    let bytes = table.drip(listener).bytes;
    conn.trap(lines, TrapStart::at(SystemTime::now()), lead, bytes, why)
}

/// A delayed client that pregreeted with `--pregreet tarpit` (`conn`): trapped with
/// its listener's trap, sent its lead (then returned); or, when the tarpit is full
/// (or a reload left its listener without a trap), its close (`trap-full`).
#[cold]
#[inline(never)]
pub(super) fn trap_pregreeter<'a>(
    table: &'a PolicyTable,
    slots: &Slots,
    conn: &mut Connection,
) -> (Step, Option<&'a Greeting>) {
    match table.trap(conn.listener()) {
        Some(tarpit) if slots.admits_trapped(conn.peer()) => (
            trap(table, conn, &tarpit.lead, TrapWhy::Pregreet),
            Some(&tarpit.lead),
        ),
        _ => (Step::Close(CloseReason::TrapFull), None),
    }
}
