//! How a held connection ends: closed for its reason (reset where the reason says
//! so), its slots given back, and its close handed back to the server, which counts
//! and logs every close in one place; and the drain's close of all.

use std::time::Duration;

use socket2::SockRef;

use super::traps::trap_millis;
use super::{is_live, Held, HeldConnections};
use crate::close::{CloseReason, Closed};
use crate::connection::{Connection, Phase};
use crate::geoip::Country;

impl HeldConnections {
    /// Closes every held connection (a drain that ran out of time): those still
    /// taking their greeting for `reason`, lingering ones as their linger cut short.
    pub(crate) fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.slab.iter().map(|(key, _)| key).collect();
        for key in keys {
            let reason = self.slab[key].conn.drain_reason(reason);
            self.close(key, reason);
        }
    }

    /// The closes of held connections since the last call, oldest first.
    pub(crate) fn take_closed(&mut self) -> std::vec::Drain<'_, Closed> {
        self.closed.drain(..)
    }

    /// Whether any held connection closed since [`HeldConnections::take_closed`].
    #[inline]
    pub(crate) fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Closes held connection `key` for `reason` and hands its close back.
    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        let conn = &self.slab[key].conn;
        self.slots.count_out(conn.phase(), conn.peer().ip());
        if let Some(country) = conn.trap_country() {
            self.geo.traps.released(country);
        }
        self.remove(key, reason);
    }

    /// Takes connection `key` out (its slots already given back), closes it, and
    /// hands its close back.
    pub(super) fn remove(&mut self, key: usize, reason: CloseReason) {
        // Dropping the stream closes the socket, which also removes it from the poll:
        // no deregister call is needed for a descriptor that is never duplicated.
        let Held { conn, greeting, .. } = self.slab.remove(key);
        if reason.resets() {
            // Best effort: a failure leaves a plain close.
            let _ = SockRef::from(conn.stream()).set_linger(Some(Duration::ZERO));
        }
        let closed = self.closed(&conn, &greeting, reason);
        self.closed.push(closed);
        let slab = &self.slab;
        self.timers
            .compact(slab.len(), |deadline, timer| is_live(slab, deadline, timer));
    }

    /// The close of `conn`, being sent `greeting`, for `reason`. One closed while its
    /// PROXY header was awaited never had its client named: its `ACCEPT` line is owed,
    /// and logged now. A denied client that was sent the deny message counts as
    /// `denied`, however that ended.
    #[inline]
    pub(super) fn closed(&self, conn: &Connection, greeting: &[u8], reason: CloseReason) -> Closed {
        if conn.phase() == Phase::Header {
            self.announce_unnamed(conn);
        }
        let reason = if conn.is_denied() && reason.names().greeted {
            CloseReason::Denied
        } else {
            reason
        };
        let (input, first) = conn.input();
        let trapped_ms = conn.trap_start().map_or(0, trap_millis);
        Closed {
            peer: conn.peer(),
            accepted_ms: conn.accepted_ms(),
            // A greeting is at most 1 GiB (checked when a server is built).
            sent: conn.sent(greeting) as u32,
            reason,
            input,
            first,
            pregreeted: conn.pregreeted(),
            trapped_ms,
            country: conn.trap_country().unwrap_or(Country::NONE),
        }
    }
}
