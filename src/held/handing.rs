//! Trapped connections across an upgrade (SIGUSR2): handed to the new process
//! (sent with their records, then forgotten: their slots given back, their
//! descriptor closed without a `shutdown()`, no close handed back), and adopted from
//! the old one (held, trapped as the record says, neither accepted nor trapped anew
//! in the counts).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;

use super::{is_live, Held, HeldConnections};
use crate::connection::{Connection, Phase};
use crate::geoip::Country;
use crate::greeting::Greeting;
use crate::locking::lock;
use crate::tarpit::Drip;
use crate::timers::Timer;
use crate::upgrade::handover::{
    send_batch, Handed, TrapRecord, MAX_FDS_PER_MESSAGE, MAX_HANDED_GREETING,
};

/// How finely a handed connection's next drip is kept: a fraction of its interval,
/// rounded down (early, never late), so that its queue has a few runs of durations,
/// not one per connection.
const DUE_STEPS: u32 = 16;

impl HeldConnections {
    /// Hands every trapped connection to the new process over `channel` (blocking,
    /// with a send timeout; shared with the other workers, locked for each message), [`MAX_FDS_PER_MESSAGE`] a message; `listeners` gives each
    /// listener's address (by index). Returns how many were handed, and the error
    /// that stopped the rest, which stay here (the drain closes them).
    pub(crate) fn hand_over_trapped(
        &mut self,
        channel: &Mutex<UnixStream>,
        listeners: &[Option<SocketAddr>],
        now: Instant,
    ) -> (usize, Option<io::Error>) {
        let mut due = HashMap::new();
        let slab = &self.slab;
        self.timers.each_left(Timer::Drip, now, |deadline, left| {
            if is_live(slab, deadline, Timer::Drip) {
                due.insert(deadline.key(), left);
            }
        });
        let keys = self.trapped_keys();
        let mut handed = 0;
        for batch in keys.chunks(MAX_FDS_PER_MESSAGE) {
            let mut records = Vec::with_capacity(batch.len());
            let mut sockets: Vec<RawFd> = Vec::with_capacity(batch.len());
            let mut sent = Vec::with_capacity(batch.len());
            for &key in batch {
                let Held { conn, greeting, .. } = &self.slab[key];
                let interval = self.table.drip(conn.listener()).interval;
                let left = due.get(&key).copied().unwrap_or(interval);
                let Some(record) = record_of(conn, greeting, listeners, left) else {
                    continue;
                };
                records.push(record);
                sent.push(key);
                sockets.push(conn.stream().as_raw_fd());
            }
            // One message at a time over all workers (see `SharedChannel`).
            let sent_whole = send_batch(&lock(channel), &records, &sockets);
            if let Err(err) = sent_whole {
                return (handed, Some(err));
            }
            for &key in &sent {
                self.forget(key);
            }
            handed += sent.len();
        }
        let slab = &self.slab;
        self.timers
            .compact(slab.len(), |deadline, timer| is_live(slab, deadline, timer));
        (handed, None)
    }

    /// Trapped connection `key`, handed to the new process: out of the slab and its
    /// slots, out of the poll (the new process's descriptor keeps the socket, and the
    /// poll would go on watching it), then its descriptor closed: a plain `close()`,
    /// no `shutdown()`, no linger, no `CLOSE` line (not a close: the trap goes on).
    fn forget(&mut self, key: usize) {
        let Held { mut conn, .. } = self.slab.remove(key);
        self.slots.count_out(conn.phase(), conn.peer().ip());
        if let Some(country) = conn.trap_country() {
            self.geo.traps.released(country);
        }
        let _ = self.registry.deregister(conn.stream_mut());
        drop(conn);
    }

    /// A trapped connection handed over by the process that upgraded to this one,
    /// for `listener` (its index in the config): held, registered as trapped
    /// connections are, its next drip when the record says. It counts in
    /// `--max-trapped` (even past it: it is trapped already), not as accepted or
    /// trapped again. Returns whether it was taken (else its socket is closed, with
    /// a warning).
    pub(crate) fn adopt(&mut self, handed: Handed, listener: u16, now: Instant) -> bool {
        let stream = std::net::TcpStream::from(handed.socket);
        if let Err(err) = stream.set_nonblocking(true) {
            warn!(target: "greeter::held", "cannot adopt a handed connection: {err}");
            return false;
        }
        let record = handed.record;
        let mut conn = Connection::handed(mio::net::TcpStream::from_std(stream), listener, &record);
        let index = usize::from(listener);
        let ours = match self.table.trap(index) {
            _ if record.lines => Greeting::from(&[][..]),
            Some(trap) if trap.drip == Drip::Greeting => trap.lead.clone(),
            _ => self.table.greeting(index).clone(),
        };
        // The greeting it began (the listener's own, shared, when it is the same).
        let greeting = match record.greeting {
            Some(began) if began[..] != ours[..] => Greeting::from(began),
            _ => ours,
        };
        let key = self.slab.vacant_key();
        let phase = conn.phase();
        if let Err(err) = self
            .registry
            .register(conn.stream_mut(), Token(key), phase.interest())
        {
            warn!(target: "greeter::held", "cannot adopt a handed connection: {err}");
            return false;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let interval = self.table.drip(index).interval;
        let left = due_step(Duration::from_millis(record.due_ms).min(interval), interval);
        self.timers
            .push_lasting(Timer::Drip, now, left, key, serial);
        self.slots.count_in(phase, record.peer.ip());
        if let Some(country) = conn.trap_country() {
            self.geo.traps.adopted(country);
        }
        self.slab.insert(Held {
            conn,
            greeting,
            serial,
        });
        true
    }
}

/// The record of trapped connection `conn` (sent `greeting`), its next drip `left`
/// from now.
fn record_of(
    conn: &Connection,
    greeting: &Greeting,
    listeners: &[Option<SocketAddr>],
    left: Duration,
) -> Option<TrapRecord> {
    let Phase::Trapped { sent, bits, .. } = conn.phase() else {
        return None;
    };
    let start = conn.trap_start()?;
    let listener = match listeners.get(conn.listener()).copied().flatten() {
        Some(addr) => addr,
        None => conn.stream().local_addr().ok()?,
    };
    let (input, first) = conn.input();
    Some(TrapRecord {
        listener,
        peer: conn.peer(),
        socket_peer: conn.stream().peer_addr().ok()?,
        start_ms: u64::from(start.seconds) * 1000 + u64::from(start.millis),
        sent,
        lines: bits.lines(),
        why: bits.why(),
        first,
        input,
        blocked: bits.blocked(),
        due_ms: left.as_millis() as u64,
        country: conn.trap_country().unwrap_or(Country::NONE).to_record(),
        greeting: (!bits.lines() && greeting.len() <= MAX_HANDED_GREETING)
            .then(|| greeting.to_vec()),
    })
}

/// `left`, rounded down to a step of `interval` (one [`DUE_STEPS`]th).
fn due_step(left: Duration, interval: Duration) -> Duration {
    let step = interval / DUE_STEPS;
    if step.is_zero() {
        return left;
    }
    step * (left.as_nanos() / step.as_nanos()) as u32
}
