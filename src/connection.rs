//! A held connection's whole life: what it waits for, the nonblocking steps that move
//! it along, its deadlines, and why it closed.
//!
//! ```text
//!  accept (server.rs) ─► write greeting ─► all written ─► shutdown(Write), TCP_INFO:
//!        │                                                  nothing unsent, no input ─► close
//!        │ partial                                          │            (the fast path: never held)
//!        ▼                                                  │
//!  ┌─ Writing ──────────────────┐  all written, shutdown,   ├─ unsent ─► ┌─ Flushing ───────────────┐
//!  │ WRITABLE; write deadline   │─ TCP_INFO (same three ──► │            │ READABLE|WRITABLE; write │
//!  │ (from accept); write the   │  ways as the fast path)   │            │ deadline; discard input; │
//!  │ rest on each event         │                           │            │ TCP_INFO on each event   │
//!  └────────────────────────────┘                           │            └──────────────────────────┘
//!     │ timeout: reset                                      │              │ all sent, no input: close
//!     │ peer reset: close                                   │              │ all sent, input: ▼
//!                                                           └─ input ─►  ┌─ Lingering ──────────────┐
//!                                                                        │ READABLE; linger deadline│
//!                                                                        │ (from all sent); discard │
//!                                                                        │ until EOF, timeout or    │
//!                                                                        │ the 256 KiB budget       │
//!                                                                        └──────────────────────────┘
//! ```
//!
//! Only connections that could not be finished at once live here, in a slab whose key
//! is the connection's mio `Token`; the common case (whole greeting written by the
//! first `write`, nothing unsent, nothing received) never gets an entry. Each phase
//! has one deadline in its queue, found again by the connection's serial number: a
//! stale entry (its connection closed or moved on) is skipped or compacted away.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, log, log_enabled, warn, Level};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use socket2::SockRef;

use crate::config::Config;
use crate::deadlines::{Deadline, DeadlineQueue};
use crate::error::describe_io_error;
use crate::per_ip::PerIpLimit;
use crate::proxy::{take_header, Header};
use crate::tcp_state::TcpProgress;
use crate::totals::Totals;

/// How many bytes a flushing or lingering connection reads and discards before giving
/// up on the peer. A peer that keeps sending past this is not waiting for a clean
/// close.
pub(crate) const LINGER_DISCARD_LIMIT: usize = 256 * 1024;

/// Stale deadline entries tolerated beyond twice the held connections before a queue
/// is compacted (so that a server holding nothing does not compact on every close).
const DEADLINE_SLACK: usize = 64;

/// A flushing connection waits for input and for the moment the kernel has sent the
/// rest. No event says "all sent", but after `shutdown(Write)` every wake-up of the
/// socket is reported as writable, and the last one comes when the peer acknowledges
/// our FIN; each event re-checks `TCP_INFO`.
const FLUSHING_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// A connection that still owes the server something: greeting bytes to take (from us
/// or from the kernel), or its EOF after the greeting.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The socket, nonblocking and registered with the poll under the slab key.
    stream: TcpStream,
    /// The peer, for the `CLOSE` log line and the per-address limit.
    peer: SocketAddr,
    /// The greeting it is being sent: the one current when it was accepted, kept
    /// (shared, never copied) across a reload that swaps the server's.
    greeting: Arc<[u8]>,
    /// When it was accepted, in milliseconds since the server started (wrapping), for
    /// the `ms=` field of the `CLOSE` log line; 4 bytes instead of an `Instant`'s 16,
    /// since every held connection pays for it.
    accepted_ms: u32,
    /// Where this connection is in its life. Its deadline is not stored: each phase
    /// has exactly one entry in that phase's deadline queue, found by `serial`.
    phase: Phase,
    /// A serial number that tells this connection apart from a later one that reuses
    /// its slab key, so that a stale timer entry never closes the newcomer.
    serial: u64,
}

/// The phases of a connection that could not be finished at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `--proxy-protocol`: nothing is sent until the PROXY header has come whole; it
    /// stays in the socket (peeked, not read) until then.
    Header,
    /// The greeting was only partly written; `sent` bytes are out.
    Writing {
        /// How far into the shared greeting the peer has been sent.
        sent: usize,
        /// The length of the PROXY header read before the greeting (0 without one),
        /// so that the header does not count as the peer's input.
        header_len: u16,
    },
    /// The whole greeting and the FIN are written, but part of them still waits in
    /// the kernel for the peer's window. Closing now could turn a late peer byte into
    /// a reset that discards that rest, so the connection is held (reading and
    /// discarding input) until the kernel has sent it all, within the write timeout.
    Flushing {
        /// Bytes read and thrown away so far, bounded by [`LINGER_DISCARD_LIMIT`].
        discarded: usize,
    },
    /// Everything is sent, and the peer sent data: input is read and discarded until
    /// the peer's EOF so that the close is a FIN, not a reset.
    Lingering {
        /// Bytes read and thrown away so far, bounded by [`LINGER_DISCARD_LIMIT`].
        discarded: usize,
    },
}

impl Phase {
    /// Whether the greeting is still being handed over (by us or by the kernel): the
    /// write deadline's phases.
    fn is_sending(self) -> bool {
        matches!(self, Phase::Writing { .. } | Phase::Flushing { .. })
    }

    /// Whether it waits for the peer's EOF: the linger deadline's phase.
    fn is_lingering(self) -> bool {
        matches!(self, Phase::Lingering { .. })
    }

    /// Whether it waits for its PROXY header: the header deadline's phase.
    fn is_header(self) -> bool {
        matches!(self, Phase::Header)
    }
}

/// Why a connection was closed; each maps to one counter of [`Totals`] and one
/// `reason=` of the `CLOSE` log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The whole greeting is out and nothing was left to wait for.
    Greeted,
    /// The whole greeting was out (or left to the kernel) and the peer closed its side.
    PeerEof,
    /// The whole greeting was out; the peer sent data and did not close its side
    /// within the linger timeout (or the drain's).
    LingerTimeout,
    /// The whole greeting was out; the peer sent more than the discard budget.
    LingerBudget,
    /// The peer reset or went away before taking the greeting.
    PeerReset,
    /// The peer did not take the greeting within the write timeout.
    WriteTimeout,
    /// A shutdown's drain timeout cut the greeting off.
    DrainTimeout,
    /// The peer's address held its `--max-per-ip` share; nothing was sent.
    PerIpLimit,
    /// The peer flooded us while its greeting still waited in the kernel.
    Flood,
    /// `--proxy-protocol`: the header was missing, malformed, too long or too late.
    ProxyHeader,
    /// A failure on the server's side.
    Error,
}

impl CloseReason {
    /// The `reason=` value of the `CLOSE` log line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Greeted => "greeted",
            CloseReason::PeerEof => "eof",
            CloseReason::LingerTimeout => "linger-timeout",
            CloseReason::LingerBudget => "linger-budget",
            CloseReason::PeerReset => "reset",
            CloseReason::WriteTimeout => "timeout",
            CloseReason::DrainTimeout => "drain",
            CloseReason::PerIpLimit => "per-ip",
            CloseReason::Flood => "flood",
            CloseReason::ProxyHeader => "proxy",
            CloseReason::Error => "error",
        }
    }

    /// The reason for closing after a failed read or write.
    pub(crate) fn for_error(err: &io::Error) -> Self {
        if peer_went_away(err) {
            CloseReason::PeerReset
        } else {
            CloseReason::Error
        }
    }

    /// Whether the connection is aborted with a reset: the peer is not taking the
    /// greeting, so the kernel should free the queued bytes now instead of keeping an
    /// orphan socket that retransmits to a peer that will not read.
    fn resets(self) -> bool {
        matches!(
            self,
            CloseReason::WriteTimeout | CloseReason::DrainTimeout | CloseReason::Flood
        )
    }
}

/// A closed connection, as the totals and the `CLOSE` log line need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    /// Who it was.
    pub(crate) peer: SocketAddr,
    /// When it was accepted, in milliseconds since the server started (wrapping).
    pub(crate) accepted_ms: u32,
    /// Greeting bytes written to it.
    pub(crate) sent: usize,
    /// Why it closed.
    pub(crate) reason: CloseReason,
    /// Whether its `ACCEPT` line was logged: not yet for a connection closed while
    /// its PROXY header was awaited, whose client was never known.
    pub(crate) announced: bool,
}

/// The connections a server holds, with everything that bounds them: the slab, the
/// write and linger deadlines, the per-address accounting. Closes are reported into
/// the caller's buffer, so that the server counts and logs every close in one place.
#[derive(Debug)]
pub(crate) struct HeldConnections {
    /// The held connections, keyed by their mio `Token`.
    slab: Slab<Connection>,
    /// Registers held connections with the server's poll (a clone of its registry).
    registry: Registry,
    /// Deadlines of connections still taking their greeting (writing or flushing),
    /// counted from accept.
    write_deadlines: DeadlineQueue,
    /// Deadlines of lingering connections, counted from when all was sent.
    linger_deadlines: DeadlineQueue,
    /// Deadlines of connections waiting for their PROXY header, counted from accept.
    header_deadlines: DeadlineQueue,
    /// Connections whose PROXY header came whole, out of the slab and the poll, for the
    /// server to greet (see [`HeldConnections::take_proxied`]).
    proxied: Vec<Proxied>,
    /// Held connections per client address, when `--max-per-ip` is set.
    per_ip: Option<PerIpLimit>,
    /// Connections waiting for their PROXY header, bounded apart from the greeted
    /// ones, so that header-less connections cannot take every slot.
    header_waiters: usize,
    /// The most connections that may wait for their header at once.
    max_header_waiters: usize,
    /// Header waiters per socket peer (the client is not known yet), when
    /// `--max-per-ip` is set: its limit applies to them too.
    header_waiters_per_peer: Option<PerIpLimit>,
    /// The serial number for the next held connection.
    next_serial: u64,
    /// When the server started: the epoch of `Connection::accepted_ms`.
    started: Instant,
}

impl HeldConnections {
    /// No connection held yet; room for `capacity` before anything grows.
    pub(crate) fn new(registry: Registry, config: &Config, capacity: usize) -> Self {
        HeldConnections {
            slab: Slab::with_capacity(capacity),
            registry,
            write_deadlines: DeadlineQueue::with_capacity(config.write_timeout, capacity),
            linger_deadlines: DeadlineQueue::with_capacity(config.linger_timeout, capacity),
            header_deadlines: DeadlineQueue::with_capacity(
                config.proxy_timeout,
                if config.proxy_protocol { capacity } else { 0 },
            ),
            proxied: Vec::new(),
            per_ip: config.max_per_ip.map(PerIpLimit::new),
            header_waiters: 0,
            max_header_waiters: max_header_waiters(config.max_connections),
            header_waiters_per_peer: config.max_per_ip.map(PerIpLimit::new),
            next_serial: 0,
            started: Instant::now(),
        }
    }

    /// How many connections are held.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Whether a connection from `ip` may be greeted: its address holds less than its
    /// `--max-per-ip` share.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.per_ip.as_ref().is_none_or(|limit| limit.admits(ip))
    }

    /// Whether a connection from socket peer `ip` may wait for its PROXY header, making
    /// room for it if need be. Not beyond `--max-per-ip` waiters from that peer. When
    /// a quarter of `--max-connections` already waits, the oldest waiter is closed:
    /// a header normally comes within milliseconds, so the oldest is the one least
    /// likely ever to send one, and a flood of header-less connections only ever
    /// pushes out its own.
    pub(crate) fn make_room_for_header_waiter(
        &mut self,
        ip: IpAddr,
        closed: &mut Vec<Closed>,
    ) -> bool {
        if !self
            .header_waiters_per_peer
            .as_ref()
            .is_none_or(|limit| limit.admits(ip))
        {
            return false;
        }
        while self.header_waiters >= self.max_header_waiters {
            let Some(oldest) = self.header_deadlines.pop_oldest() else {
                break;
            };
            if is_live(&self.slab, &oldest, Phase::is_header) {
                debug!(
                    "PROXY_ERROR peer={} error=\"closed for a newer connection: too many wait for their header\"",
                    self.slab[oldest.key].peer
                );
                self.close(oldest.key, CloseReason::ProxyHeader, closed);
            }
        }
        true
    }

    /// Milliseconds since the server started, wrapping every 49 days (only ever used
    /// as a difference over one connection's life).
    pub(crate) fn millis_since_start(&self, at: Instant) -> u32 {
        at.duration_since(self.started).as_millis() as u32
    }

    /// The soonest deadline, if any (it may be stale: the loop then wakes for nothing).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [
            self.write_deadlines.next(),
            self.linger_deadlines.next(),
            self.header_deadlines.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes a connection that could not be finished at once: registers it for what
    /// its phase waits for and starts that phase's deadline (from accept).
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub(crate) fn hold(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        accepted_at: Instant,
        greeting: Arc<[u8]>,
        phase: Phase,
        totals: &mut Totals,
        closed: &mut Vec<Closed>,
    ) {
        let key = self.slab.vacant_key();
        let serial = self.next_serial;
        self.next_serial += 1;
        let accepted_ms = self.millis_since_start(accepted_at);
        let interest = match phase {
            Phase::Header => Interest::READABLE,
            Phase::Writing { .. } => Interest::WRITABLE,
            Phase::Flushing { .. } => FLUSHING_INTEREST,
            Phase::Lingering { .. } => Interest::READABLE,
        };
        if let Err(err) = self.registry.register(&mut stream, Token(key), interest) {
            warn!(
                "cannot register a connection with the poll: {}",
                describe_io_error(&err)
            );
            let (sent, reason) = match phase {
                Phase::Header => (0, CloseReason::Error),
                Phase::Writing { sent, .. } => (sent, CloseReason::Error),
                Phase::Flushing { .. } | Phase::Lingering { .. } => {
                    (greeting.len(), CloseReason::Greeted)
                }
            };
            closed.push(Closed {
                peer,
                accepted_ms,
                sent,
                reason,
                announced: !phase.is_header(),
            });
            return;
        }
        match phase {
            Phase::Header => self.header_deadlines.push(accepted_at, key, serial),
            Phase::Writing { .. } => self.write_deadlines.push(accepted_at, key, serial),
            Phase::Flushing { .. } => {
                totals.lingered += 1;
                self.write_deadlines.push(accepted_at, key, serial)
            }
            Phase::Lingering { .. } => {
                totals.lingered += 1;
                self.linger_deadlines.push(accepted_at, key, serial)
            }
        };
        let inserted = self.slab.insert(Connection {
            stream,
            peer,
            greeting,
            accepted_ms,
            phase,
            serial,
        });
        debug_assert_eq!(inserted, key, "the slab filled the key it announced");
        // Until its header names the client, a connection counts for no client
        // address, only as a header waiter of its socket peer.
        if phase.is_header() {
            self.header_waiters += 1;
            if let Some(per_peer) = &mut self.header_waiters_per_peer {
                per_peer.hold(peer.ip());
            }
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.hold(peer.ip());
        }
    }

    /// Accounts for a connection from `peer` leaving its header wait (header taken, or
    /// closed).
    fn stop_waiting_for_header(&mut self, peer: SocketAddr) {
        self.header_waiters -= 1;
        if let Some(per_peer) = &mut self.header_waiters_per_peer {
            per_peer.release(peer.ip());
        }
    }

    /// The connections whose PROXY header came whole since the last call (no
    /// allocation while there are none).
    pub(crate) fn take_proxied(&mut self) -> Vec<Proxied> {
        std::mem::take(&mut self.proxied)
    }

    /// Moves connection `key` along after a readiness event: writes the rest of the
    /// greeting, or reads and discards input and checks what the kernel still holds.
    /// Events for keys no longer held (closed earlier in the batch) are ignored.
    pub(crate) fn on_event(&mut self, key: usize, totals: &mut Totals, closed: &mut Vec<Closed>) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Header => match take_header(&mut conn.stream) {
                Ok(Header::Incomplete) => {}
                Ok(Header::Complete { len, client }) => {
                    let mut conn = self.slab.remove(key);
                    self.stop_waiting_for_header(conn.peer);
                    // Out of this poll: the server greets it as if just accepted.
                    let _ = self.registry.deregister(&mut conn.stream);
                    self.proxied.push(Proxied {
                        stream: conn.stream,
                        client: client.unwrap_or(conn.peer),
                        header_len: len as u16,
                    });
                }
                Ok(Header::Invalid(why)) => {
                    debug!("PROXY_ERROR peer={} error=\"{why}\"", conn.peer);
                    self.close(key, CloseReason::ProxyHeader, closed);
                }
                Err(err) => self.close(key, CloseReason::for_error(&err), closed),
            },
            Phase::Writing {
                mut sent,
                header_len,
            } => {
                let before = sent;
                let progress = write_greeting(&mut conn.stream, &conn.greeting, &mut sent);
                totals.bytes_sent += (sent - before) as u64;
                conn.phase = Phase::Writing { sent, header_len };
                match progress {
                    WriteProgress::Complete => self.finish_writing(key, header_len, totals, closed),
                    WriteProgress::WouldBlock => {}
                    WriteProgress::Failed(err) => {
                        self.close(key, CloseReason::for_error(&err), closed)
                    }
                }
            }
            Phase::Flushing { mut discarded } => {
                let input = discard_input(&mut conn.stream, &mut discarded, LINGER_DISCARD_LIMIT);
                conn.phase = Phase::Flushing { discarded };
                match input {
                    InputState::Quiet => self.check_flushed(key, Instant::now(), closed),
                    // The peer closed its side: a late byte of its own can no longer
                    // draw a reset, and the kernel sends the rest after the close.
                    InputState::Eof => self.close(key, CloseReason::PeerEof, closed),
                    InputState::BudgetSpent => {
                        // Whether the peer flooded us before or after it had
                        // everything (its last event may not have told us yet).
                        let reason = match TcpProgress::of(&conn.stream) {
                            Ok(progress) if progress.unsent == 0 => CloseReason::LingerBudget,
                            _ => CloseReason::Flood,
                        };
                        self.close(key, reason, closed)
                    }
                    InputState::Failed(err) => {
                        self.close(key, CloseReason::for_error(&err), closed)
                    }
                }
            }
            Phase::Lingering { mut discarded } => {
                let input = discard_input(&mut conn.stream, &mut discarded, LINGER_DISCARD_LIMIT);
                conn.phase = Phase::Lingering { discarded };
                let reason = match input {
                    InputState::Quiet => return,
                    InputState::Eof => CloseReason::PeerEof,
                    InputState::BudgetSpent => CloseReason::LingerBudget,
                    // Everything was sent: a reset now costs the peer nothing of ours.
                    InputState::Failed(_) => CloseReason::PeerEof,
                };
                self.close(key, reason, closed);
            }
        }
    }

    /// After a greeting that needed several writes: shut down the write side and, as
    /// on the fast path, close at once or hold the connection until the rest is sent
    /// or the peer closes.
    fn finish_writing(
        &mut self,
        key: usize,
        header_len: u16,
        totals: &mut Totals,
        closed: &mut Vec<Closed>,
    ) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        let (phase, interest) = match shut_down_and_check(&conn.stream, header_len) {
            AfterGreeting::Close => return self.close(key, CloseReason::Greeted, closed),
            // Its write deadline, pushed at accept, goes on bounding it.
            AfterGreeting::Flush => (Phase::Flushing { discarded: 0 }, FLUSHING_INTEREST),
            AfterGreeting::Linger => {
                self.linger_deadlines.push(Instant::now(), key, conn.serial);
                (Phase::Lingering { discarded: 0 }, Interest::READABLE)
            }
        };
        totals.lingered += 1;
        conn.phase = phase;
        // Re-registering re-checks readiness, so input that is already queued (or an
        // EOF) produces an event without an extra read here.
        let registered = self
            .registry
            .reregister(&mut conn.stream, Token(key), interest);
        if registered.is_err() {
            self.close(key, CloseReason::Greeted, closed);
        }
    }

    /// A flushing connection whose input is drained: once the kernel has sent the
    /// whole greeting it closes, or lingers if the peer has sent data.
    fn check_flushed(&mut self, key: usize, now: Instant, closed: &mut Vec<Closed>) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        let Phase::Flushing { discarded } = conn.phase else {
            return;
        };
        match TcpProgress::of(&conn.stream) {
            Ok(progress) if progress.unsent > 0 => {}
            Ok(_) if discarded > 0 => {
                // Stays registered for writability too: the spurious events that
                // brings are rare and cheaper than an epoll_ctl.
                conn.phase = Phase::Lingering { discarded };
                self.linger_deadlines.push(now, key, conn.serial);
            }
            _ => self.close(key, CloseReason::Greeted, closed),
        }
    }

    /// Closes the connections whose deadline has passed by `now`.
    pub(crate) fn expire(&mut self, now: Instant, closed: &mut Vec<Closed>) {
        while let Some(due) = self.write_deadlines.pop_expired(now) {
            if !is_live(&self.slab, &due, Phase::is_sending) {
                continue;
            }
            // A flushing connection whose rest went out since its last event is
            // finished, not timed out.
            if matches!(self.slab[due.key].phase, Phase::Flushing { .. }) {
                self.check_flushed(due.key, now, closed);
            }
            if is_live(&self.slab, &due, Phase::is_sending) {
                self.close(due.key, CloseReason::WriteTimeout, closed);
            }
        }
        while let Some(due) = self.linger_deadlines.pop_expired(now) {
            if is_live(&self.slab, &due, Phase::is_lingering) {
                self.close(due.key, CloseReason::LingerTimeout, closed);
            }
        }
        while let Some(due) = self.header_deadlines.pop_expired(now) {
            if is_live(&self.slab, &due, Phase::is_header) {
                debug!(
                    "PROXY_ERROR peer={} error=\"no header in time\"",
                    self.slab[due.key].peer
                );
                self.close(due.key, CloseReason::ProxyHeader, closed);
            }
        }
    }

    /// Closes every held connection (a drain that ran out of time): those still
    /// taking their greeting for `reason`, lingering ones as their linger cut short.
    pub(crate) fn close_all(&mut self, reason: CloseReason, closed: &mut Vec<Closed>) {
        let keys: Vec<usize> = self.slab.iter().map(|(key, _)| key).collect();
        for key in keys {
            let reason = match self.slab[key].phase {
                Phase::Header | Phase::Writing { .. } | Phase::Flushing { .. } => reason,
                Phase::Lingering { .. } => CloseReason::LingerTimeout,
            };
            self.close(key, reason, closed);
        }
    }

    /// Closes connection `key` for `reason` and reports it.
    pub(crate) fn close(&mut self, key: usize, reason: CloseReason, closed: &mut Vec<Closed>) {
        // Dropping the stream closes the socket, which also removes it from the poll:
        // no deregister call is needed for a descriptor that is never duplicated.
        let conn = self.slab.remove(key);
        if reason.resets() {
            // Best effort: a failure leaves a plain close.
            let _ = SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        let sent = match conn.phase {
            Phase::Header => 0,
            Phase::Writing { sent, .. } => sent,
            Phase::Flushing { .. } | Phase::Lingering { .. } => conn.greeting.len(),
        };
        if conn.phase.is_header() {
            self.stop_waiting_for_header(conn.peer);
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.release(conn.peer.ip());
        }
        closed.push(Closed {
            peer: conn.peer,
            accepted_ms: conn.accepted_ms,
            sent,
            reason,
            announced: !conn.phase.is_header(),
        });
        self.compact_deadlines();
    }

    /// Drops the entries of connections that closed (or moved on) before their
    /// deadline, once they outnumber the held connections: amortised O(1) per close,
    /// and each queue stays below `2 x held + DEADLINE_SLACK` entries.
    fn compact_deadlines(&mut self) {
        let bound = 2 * self.slab.len() + DEADLINE_SLACK;
        let slab = &self.slab;
        if self.write_deadlines.len() > bound {
            self.write_deadlines
                .retain(|deadline| is_live(slab, deadline, Phase::is_sending));
        }
        if self.linger_deadlines.len() > bound {
            self.linger_deadlines
                .retain(|deadline| is_live(slab, deadline, Phase::is_lingering));
        }
        if self.header_deadlines.len() > bound {
            self.header_deadlines
                .retain(|deadline| is_live(slab, deadline, Phase::is_header));
        }
    }

    /// How many deadline entries (live or stale) are queued, for tests.
    #[cfg(test)]
    pub(crate) fn deadlines_queued(&self) -> usize {
        self.write_deadlines.len() + self.linger_deadlines.len() + self.header_deadlines.len()
    }
}

/// The most connections that may wait for their PROXY header at once: a quarter of
/// the connection limit (at least one), so that the rest stays for clients that are
/// being greeted. A header normally comes with the first segment and never waits.
fn max_header_waiters(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// Whether `deadline` still belongs to a held connection in a phase it bounds: not to
/// a connection that closed, moved on, or whose key has a new holder.
fn is_live(slab: &Slab<Connection>, deadline: &Deadline, in_phase: fn(Phase) -> bool) -> bool {
    slab.get(deadline.key)
        .is_some_and(|conn| conn.serial == deadline.serial && in_phase(conn.phase))
}

/// The log target of the per-connection lines (`ACCEPT`, `CLOSE`), fixed so that
/// filters and `RUST_LOG=greeter::connection=info` do not depend on where the code
/// lives.
pub(crate) const LOG_TARGET: &str = "greeter::connection";

/// Logs a close as the `CLOSE` line, at `level` (info with `--log-connections`).
/// Its form is documented as stable: fail2ban filters read it.
pub(crate) fn log_close(closed: &Closed, now_ms: u32, level: Level) {
    if log_enabled!(target: LOG_TARGET, level) {
        log!(
            target: LOG_TARGET,
            level,
            "CLOSE peer={} bytes={} ms={} reason={}",
            closed.peer,
            closed.sent,
            now_ms.wrapping_sub(closed.accepted_ms),
            closed.reason.as_str()
        );
    }
}

/// A connection whose PROXY header came whole: the server greets it next.
#[derive(Debug)]
pub(crate) struct Proxied {
    /// The socket, out of the poll, the header taken from it.
    pub(crate) stream: TcpStream,
    /// The client the header named (the socket's peer for `LOCAL` and `UNKNOWN`).
    pub(crate) client: SocketAddr,
    /// The header's length, which is not the client's input.
    pub(crate) header_len: u16,
}

/// Sends the FIN right behind the greeting, then asks the kernel whether anything is
/// left in either direction.
///
/// The FIN goes first because closing a socket that holds unread input sends a reset:
/// sent after the FIN, a reset can no longer turn the peer's clean EOF into an error,
/// even if the peer's bytes land between the check and the close (best effort: a peer
/// that is already gone shows in the check).
pub(crate) fn shut_down_and_check(stream: &TcpStream, header_len: u16) -> AfterGreeting {
    let _ = stream.shutdown(Shutdown::Write);
    after_greeting(TcpProgress::of(stream), header_len)
}

/// What to do with a connection once its whole greeting is written and its write
/// side shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterGreeting {
    /// Nothing of ours waits in the kernel and nothing of the peer's is unread (or
    /// the peer has closed its side): close now.
    Close,
    /// Part of the greeting is still unsent: hold the connection until it is out.
    Flush,
    /// Everything is sent but the peer sent data: linger until its EOF.
    Linger,
}

/// Decides [`AfterGreeting`] from the kernel's view of the connection.
///
/// Bytes that are sent but not yet acknowledged do not hold the connection: a close
/// then still ends in a FIN behind them, and they are lost only if they must be
/// retransmitted after a peer byte has drawn a reset (see docs/architecture.md).
/// If the kernel cannot be asked, the connection is closed as before this check.
///
/// `header_len` bytes of a PROXY header were the load balancer's, not the client's
/// input: then input is what was received beyond them (and beyond the peer's FIN).
pub(crate) fn after_greeting(progress: io::Result<TcpProgress>, header_len: u16) -> AfterGreeting {
    let Ok(progress) = progress else {
        return AfterGreeting::Close;
    };
    let sent_input = if header_len == 0 {
        progress.data_segments_in > 0
    } else {
        let not_input = u64::from(header_len) + u64::from(progress.peer_closed);
        progress.bytes_received > not_input
    };
    if sent_input {
        return if progress.unsent > 0 {
            AfterGreeting::Flush
        } else {
            AfterGreeting::Linger
        };
    }
    if progress.unsent > 0 && !progress.peer_closed {
        AfterGreeting::Flush
    } else {
        AfterGreeting::Close
    }
}

/// What a round of writing achieved.
#[derive(Debug)]
pub(crate) enum WriteProgress {
    /// Every byte of the greeting is out.
    Complete,
    /// The socket buffer is full; wait for writability.
    WouldBlock,
    /// The peer is gone or the socket failed.
    Failed(io::Error),
}

/// Writes `greeting[*sent..]` until it is all out or the socket would block, advancing
/// `*sent` by what was written.
pub(crate) fn write_greeting(
    out: &mut impl Write,
    greeting: &[u8],
    sent: &mut usize,
) -> WriteProgress {
    while *sent < greeting.len() {
        match out.write(&greeting[*sent..]) {
            // A zero-length write of a non-empty buffer means the peer cannot take more.
            Ok(0) => return WriteProgress::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return WriteProgress::WouldBlock,
            Err(err) => return WriteProgress::Failed(err),
        }
    }
    WriteProgress::Complete
}

/// What reading and discarding the peer's input found.
#[derive(Debug)]
pub(crate) enum InputState {
    /// Nothing (more) to read right now, and no EOF yet.
    Quiet,
    /// The peer closed its side (and everything it sent has been read).
    Eof,
    /// The peer sent more than the discard budget allows.
    BudgetSpent,
    /// The read failed (typically a reset).
    Failed(io::Error),
}

/// Reads and throws away input until EOF, `WouldBlock`, or `*discarded` passes `limit`.
pub(crate) fn discard_input(
    input: &mut impl Read,
    discarded: &mut usize,
    limit: usize,
) -> InputState {
    let mut scratch = [0u8; 4096];
    loop {
        match input.read(&mut scratch) {
            Ok(0) => return InputState::Eof,
            Ok(n) => {
                *discarded += n;
                if *discarded > limit {
                    return InputState::BudgetSpent;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return InputState::Quiet,
            Err(err) => return InputState::Failed(err),
        }
    }
}

/// Whether an I/O error only means "not now" on a nonblocking socket.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// Whether a write or read error is the peer's doing (it reset or went away), as
/// opposed to a failure on the server's side.
pub(crate) fn peer_went_away(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WriteZero
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A socket stand-in that answers each call from a script.
    struct Scripted {
        answers: VecDeque<io::Result<usize>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(answers: Vec<io::Result<usize>>) -> Self {
            Scripted {
                answers: answers.into(),
                written: Vec::new(),
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted write")?;
            let n = n.min(buf.len());
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted read")?;
            Ok(n.min(buf.len()))
        }
    }

    fn err(kind: io::ErrorKind) -> io::Result<usize> {
        Err(kind.into())
    }

    #[test]
    fn held_connection_state_stays_small() {
        // Every held connection pays for this, a slab entry's tag and one 32-byte
        // deadline entry; the budget for user-space memory per held connection is
        // 128 bytes. (mio's stream is 4 bytes in release builds, 16 with debug
        // assertions, so it is counted at 4.)
        let own_fields = std::mem::size_of::<Connection>() - std::mem::size_of::<TcpStream>();
        let per_held = 4 + own_fields + 8 + std::mem::size_of::<Deadline>();
        assert!(per_held <= 128, "a held connection costs {per_held} bytes");
        assert_eq!(std::mem::size_of::<Deadline>(), 32);
    }

    #[test]
    fn partial_write_resumes_where_it_stopped() {
        let greeting = b"Hello there! This is the hosted server";
        let mut socket = Scripted::new(vec![Ok(5), err(io::ErrorKind::WouldBlock)]);
        let mut sent = 0;
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::WouldBlock
        ));
        assert_eq!(sent, 5);

        socket.answers = vec![err(io::ErrorKind::Interrupted), Ok(10), Ok(100)].into();
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::Complete
        ));
        assert_eq!(sent, greeting.len());
        assert_eq!(socket.written, greeting);
    }

    #[test]
    fn zero_length_write_means_the_peer_is_gone() {
        let mut socket = Scripted::new(vec![Ok(0)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn reset_is_reported_as_the_peers_doing() {
        let mut socket = Scripted::new(vec![err(io::ErrorKind::ConnectionReset)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(!peer_went_away(&io::Error::from_raw_os_error(libc::ENOMEM)));
    }

    #[test]
    fn discarding_stops_at_eof_would_block_or_budget() {
        let mut discarded = 0;
        let mut socket = Scripted::new(vec![Ok(100), Ok(0)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000),
            InputState::Eof
        ));
        assert_eq!(discarded, 100);

        let mut socket = Scripted::new(vec![Ok(10), err(io::ErrorKind::WouldBlock)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000),
            InputState::Quiet
        ));
        assert_eq!(discarded, 110);

        let mut socket = Scripted::new(vec![Ok(4096), Ok(4096), Ok(4096)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 5000),
            InputState::BudgetSpent
        ));
    }

    fn progress(
        unsent: u32,
        data_segments_in: u32,
        bytes_received: u64,
        peer_closed: bool,
    ) -> io::Result<TcpProgress> {
        Ok(TcpProgress {
            unsent,
            unacked_segments: 1,
            data_segments_in,
            bytes_received,
            peer_closed,
        })
    }

    #[test]
    fn a_connection_is_closed_only_when_nothing_is_left_in_either_direction() {
        for (unsent, segments_in, peer_closed, expected) in [
            (0, 0, false, AfterGreeting::Close),
            (1, 0, false, AfterGreeting::Flush),
            (9000, 3, false, AfterGreeting::Flush),
            (0, 3, false, AfterGreeting::Linger),
            // A peer that has closed its side cannot draw a reset with bytes it sends...
            (9000, 0, true, AfterGreeting::Close),
            // ...but bytes it sent before its FIN are read first.
            (0, 3, true, AfterGreeting::Linger),
        ] {
            let kernel = progress(
                unsent,
                segments_in,
                u64::from(segments_in) * 10,
                peer_closed,
            );
            assert_eq!(
                after_greeting(kernel, 0),
                expected,
                "unsent {unsent}, {segments_in} segments in, peer closed: {peer_closed}"
            );
        }
        let failed = Err(io::Error::from_raw_os_error(libc::EBADF));
        assert_eq!(after_greeting(failed, 0), AfterGreeting::Close);
    }

    #[test]
    fn a_proxy_header_is_not_the_clients_input() {
        // 28 bytes of header; the peer's FIN counts as one received byte.
        for (bytes_received, peer_closed, expected) in [
            (28, false, AfterGreeting::Close),
            (29, true, AfterGreeting::Close),
            (33, false, AfterGreeting::Linger),
        ] {
            let kernel = progress(0, 1, bytes_received, peer_closed);
            assert_eq!(
                after_greeting(kernel, 28),
                expected,
                "{bytes_received} received"
            );
        }
    }
}
