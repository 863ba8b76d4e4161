//! A PROXY header waiter's two moments of its own: room for it when it is held (its
//! socket peer under `--max-per-ip`, and the waiters' share of `--max-connections`),
//! and its renaming once the header names its client, who is then admitted as a
//! fresh connection's would be, with its listener's policy current then.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{is_live, take_verdict, HeldConnections};
use crate::admission::Verdict;
use crate::close::{log_proxy_error, CloseReason};
use crate::connection::{Phase, Step};
use crate::deadlines::Deadline;
use crate::timers::Timer;

impl HeldConnections {
    /// A header waiter whose header named `client`: it stops counting as a waiter of
    /// its socket peer and counts for the client, unless its admission refuses it
    /// (then it is closed here: `None`); else it is advanced again, toward its
    /// greeting (the one it kept since it was accepted, or the deny message).
    pub(super) fn name_client(
        &mut self,
        key: usize,
        client: SocketAddr,
        now: Instant,
    ) -> Option<Step> {
        let socket_peer = self.slab[key].conn.peer();
        self.slots.count_out(Phase::Header, socket_peer.ip());
        self.slab[key].conn.set_peer(client);
        self.announce(client, self.counted() - 1);
        // The policy its listener has now (a reload may have replaced it meanwhile).
        let held = &self.slab[key];
        let admission = self.table.admit(
            held.conn.listener(),
            &held.greeting,
            client,
            now,
            &self.slots,
        );
        let verdict = admission.verdict;
        let sent_instead = matches!(verdict, Verdict::DenyMessage | Verdict::Trap(_))
            .then(|| admission.greeting.clone());
        if let Verdict::Refuse(reason) = verdict {
            // Counted for nothing now, so closed without undoing anything.
            self.remove(key, reason);
            return None;
        }
        let held = &mut self.slab[key];
        if let Some(bytes) = sent_instead {
            held.greeting = bytes;
        }
        let step = take_verdict(&self.table, &mut held.conn, verdict, &held.greeting);
        if let Verdict::Trap(_) = verdict {
            // Trapped as a fresh connection is: its lead sent now, its drips started
            // as its step is settled.
            self.note_trapped(key);
            self.slots
                .count_in(self.slab[key].conn.phase(), client.ip());
            return step;
        }
        // A delay's own step gives way to the advance below, where input that came
        // with the header counts.
        self.slots
            .count_in(self.slab[key].conn.phase(), client.ip());
        let held = &mut self.slab[key];
        Some(held.conn.advance(&held.greeting))
    }

    /// Whether a connection from socket peer `ip` may wait for its PROXY header, making
    /// room for it if need be. Not beyond `--max-per-ip` waiters from that peer. When
    /// a quarter of `--max-connections` already waits, the oldest waiter is closed:
    /// a header normally comes within milliseconds, so the oldest is the one least
    /// likely ever to send one, and a flood of header-less connections only ever
    /// pushes out its own.
    pub(super) fn make_room_for_header_waiter(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.slots.admits_header_waiter(ip) {
            return false;
        }
        while self.slots.header_waiters_full() {
            let slab = &self.slab;
            let live = |deadline: &Deadline, timer| is_live(slab, deadline, timer);
            let Some(oldest) = self.timers.pop_oldest(Timer::Header, now, live) else {
                break;
            };
            log_proxy_error(
                self.slab[oldest.key()].conn.peer(),
                "closed for a newer connection: too many wait for their header",
            );
            self.close(oldest.key(), CloseReason::ProxyHeader);
        }
        true
    }
}
