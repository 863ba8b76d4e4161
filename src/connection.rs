//! One connection's life: its phase, and the one method that moves it along and says
//! what happens next. The fast path is a fresh connection advanced once; only one
//! whose step is [`Step::Wait`] is ever held, so the connections
//! greeted at once and the held ones share one decision procedure. (Holding is
//! `held.rs`'s job; this file knows nothing of slabs, polls or timers' queues.)
//!
//! ```text
//!  accept ─► (--proxy-protocol) Header ─ header whole: Named(client) ─┐
//!                                        (--greet-delay: Delaying, READABLE, until
//!                                         its deadline; input: a pregreeter)
//!                │ READABLE; header deadline                           │
//!                │ garbage, oversized, FIN, timeout: Close(proxy)      ▼
//!                                                    Writing ─► all written ─► shutdown(Write), TCP_INFO:
//!                                                    │ WRITABLE; write         nothing unsent, no input ─► Close(greeted)
//!                                                    │ deadline (from accept)  │       (the fast path: never held)
//!                                                    │ timeout: reset          ├─ unsent ─► Flushing
//!                                                    │ peer reset: close       │            READABLE|WRITABLE; write
//!                                                                              │            deadline; discard input;
//!                                                                              │            TCP_INFO on each event
//!                                                                              │              │ all sent, no input: Close(greeted)
//!                                                                              │              │ all sent, input: ▼
//!                                                                              └─ input ─►  Lingering
//!                                                                                           READABLE; linger deadline
//!                                                                                           (from all sent); discard
//!                                                                                           until EOF, timeout or
//!                                                                                           the 256 KiB budget
//! ```
//!
//! A `--tarpit` listener's client is trapped instead (`Trapped`, from a fresh
//! connection or a named header waiter): READABLE (`EPOLLIN|EPOLLRDHUP`) and its
//! listener's drip deadline; its input read once (4 KiB) then left; one drip a
//! deadline ([`Connection::drip`]); EOF or reset: Close(trap-eof, trap-reset);
//! a drip that would block: READABLE|WRITABLE until writable, drips skipped; a
//! dripped greeting all out: the ordinary close (`finish_writing`).
//!
//! The greeting is not a field: the holder passes it to [`Connection::advance`] (its
//! listener's current one, or the deny message, for a fresh connection, as
//! `PolicyTable::admit` chose; the one a held connection keeps across reloads), so
//! that greeting a connection at once costs no reference count.

use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::Interest;

use crate::admission::Pregreet;
use crate::close::{log_proxy_error, CloseReason};
use crate::geoip::Country;
use crate::peer_addr::PeerAddr;
use crate::peer_input::FirstInput;
use crate::proxy::{read_header, Header, PartialHeader};
use crate::socket::{
    discard_input, shut_down_and_check, write_greeting, AfterGreeting, InputState, TcpProgress,
    WriteProgress,
};
use crate::timers::Timer;
pub(crate) use trapped::{Readiness, TrapBits};

/// How many bytes a flushing or lingering connection reads and discards before giving
/// up on the peer. A peer that keeps sending past this is not waiting for a clean
/// close.
pub(crate) const LINGER_DISCARD_LIMIT: usize = 256 * 1024;

/// A connection from accept to close.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The socket, nonblocking (registered with the poll only while held).
    stream: TcpStream,
    /// The client: the socket's peer, or the one its PROXY header named.
    peer: PeerAddr,
    /// When it was accepted, in milliseconds since the server started (wrapping), for
    /// the `ms=` field of the `CLOSE` log line; 4 bytes instead of an `Instant`'s 16,
    /// since every held connection pays for it. Set when it is held: a connection
    /// closed at once never needs it.
    accepted_ms: u32,
    /// Where it is in its life.
    phase: Phase,
    /// Whether `--deny` turned its client away or it spoke during its greet delay:
    /// what its close reports.
    standing: Standing,
    /// Its listener's index in the config's listeners: its row in the loop's policy
    /// table (its policy is checked once a PROXY header names the client). Two sockets
    /// of one listener share it.
    listener: u16,
    /// What the peer sent first, once it sent anything.
    first: FirstInput,
    /// Bytes read from the peer (and discarded), bounded by [`LINGER_DISCARD_LIMIT`];
    /// a PROXY header is not input.
    input: u32,
    /// The start of a PROXY header that came in pieces, kept until the rest comes
    /// (`None` on every other connection: a header read whole needs no buffer).
    partial_header: Option<Box<PartialHeader>>,
}

/// What sets a connection apart from an ordinary one. A connection is at most one of
/// these (a denied client is never delayed), so one byte holds both facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Greeted, or on its way to it.
    Ordinary,
    /// `--deny` turned its client away: it is sent the `--deny-message` instead of
    /// the greeting, and its close counts as `denied`.
    Denied,
    /// It sent data during its `--greet-delay`.
    Pregreeted,
}

/// The phases of a connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `--proxy-protocol`: nothing is sent until the PROXY header has come whole (a
    /// header read in pieces is kept meanwhile).
    Header,
    /// `--greet-delay`: the client is known and waits for its greeting; whatever it
    /// sends meanwhile makes it a pregreeter (read and discarded).
    Delaying {
        /// The length of the PROXY header read before (0 without one).
        header_len: u16,
        /// `--pregreet`: what a pregreeter gets.
        pregreet: Pregreet,
    },
    /// The greeting is being written; `sent` bytes are out.
    Writing {
        /// How far into the greeting the peer has been sent (a greeting is at most
        /// 1 GiB: `MAX_GREETING_BYTES`, checked when a server is built).
        sent: u32,
        /// The length of the PROXY header read before the greeting (0 without one),
        /// so that the header does not count as the peer's input.
        header_len: u16,
    },
    /// The whole greeting and the FIN are written, but part of them still waits in
    /// the kernel for the peer's window. Closing now could turn a late peer byte into
    /// a reset that discards that rest, so the connection is held (reading and
    /// discarding input) until the kernel has sent it all, within the write timeout.
    Flushing,
    /// Everything is sent, and the peer sent data: input is read and discarded until
    /// the peer's EOF so that the close is a FIN, not a reset.
    Lingering,
    /// `--tarpit`: the client is dripped a line or a few bytes every interval
    /// ([`crate::tarpit`]); its input is read once (up to 4 KiB, classified) and then
    /// left unread; its EOF or reset ends the trap at once.
    Trapped {
        /// Bytes dripped so far (the lead greeting's first): how far into the
        /// greeting it is, and the `bytes=` of its close (saturating).
        sent: u32,
        /// Its mode, whether a drip would block, and its start's milliseconds.
        bits: TrapBits,
        /// Where its client is from (`--geoip-db`), looked up once when it was
        /// trapped: one byte, in the phase's padding (it stays 8 bytes).
        country: Country,
    },
}

impl Phase {
    /// The readiness this phase waits for. A flushing connection waits for input and
    /// for the moment the kernel has sent the rest: no event says "all sent", but after
    /// `shutdown(Write)` every wake-up of the socket is reported as writable, and the
    /// last one comes when the peer acknowledges our FIN.
    pub(crate) fn interest(self) -> Interest {
        match self {
            Phase::Header | Phase::Delaying { .. } | Phase::Lingering => Interest::READABLE,
            Phase::Writing { .. } => Interest::WRITABLE,
            Phase::Flushing => Interest::READABLE.add(Interest::WRITABLE),
            Phase::Trapped { bits, .. } if bits.blocked() => {
                Interest::READABLE.add(Interest::WRITABLE)
            }
            Phase::Trapped { .. } => Interest::READABLE,
        }
    }

    /// The deadline that bounds this phase.
    pub(crate) fn timer(self) -> Timer {
        match self {
            Phase::Header => Timer::Header,
            Phase::Delaying { .. } => Timer::Delay,
            Phase::Writing { .. } | Phase::Flushing => Timer::Write,
            Phase::Lingering => Timer::Linger,
            Phase::Trapped { .. } => Timer::Drip,
        }
    }

    /// Whether it is a trapped connection's.
    #[inline]
    pub(crate) fn is_trapped(self) -> bool {
        matches!(self, Phase::Trapped { .. })
    }
}

/// What happens to a connection after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing more can be done now: it waits for its phase's readiness
    /// ([`Phase::interest`]) within its phase's deadline ([`Phase::timer`]).
    Wait,
    /// Its PROXY header came whole and named this client: the holder makes it the
    /// connection's peer, checks its limits and logs its `ACCEPT` line, then advances
    /// it again (toward its greeting).
    Named(SocketAddr),
    /// It is finished: close it for this reason.
    Close(CloseReason),
    /// `--pregreet tarpit`: it pregreeted during its delay; the holder traps it
    /// (or closes it, reason `trap-full`, when the tarpit is full).
    Trap,
}

impl Connection {
    /// A connection just accepted from `peer`: it waits for its PROXY header first if
    /// `proxy_protocol`, else it is to be greeted.
    #[inline]
    pub(crate) fn accepted(
        stream: TcpStream,
        peer: SocketAddr,
        proxy_protocol: bool,
        listener: u16,
    ) -> Self {
        let phase = if proxy_protocol {
            Phase::Header
        } else {
            Phase::Writing {
                sent: 0,
                header_len: 0,
            }
        };
        Connection {
            stream,
            peer: PeerAddr::from(peer),
            accepted_ms: 0,
            phase,
            standing: Standing::Ordinary,
            listener,
            first: FirstInput::None,
            input: 0,
            partial_header: None,
        }
    }

    /// Does everything its phase can do now without blocking (after a readiness
    /// event, or once at accept) and says what happens next. `greeting` is the one it
    /// is being sent (always the same one for a connection).
    // Always inlined: where the phase is known (a fresh connection), the compiler
    // drops the arms it cannot be in, and the fast path stays as short as it was.
    #[inline(always)]
    pub(crate) fn advance(&mut self, greeting: &[u8]) -> Step {
        match self.phase {
            Phase::Header => self.take_header(),
            Phase::Writing { sent, header_len } => {
                let mut written = sent as usize;
                let progress = write_greeting(&mut self.stream, greeting, &mut written);
                self.phase = Phase::Writing {
                    sent: written as u32,
                    header_len,
                };
                match progress {
                    WriteProgress::Complete => self.finish_writing(header_len),
                    WriteProgress::WouldBlock => Step::Wait,
                    WriteProgress::Failed(err) => Step::Close(CloseReason::for_error(&err)),
                }
            }
            Phase::Delaying { pregreet, .. } => {
                let input = self.read_input();
                if let Some(dropped) = self.pregreeting(pregreet) {
                    return dropped;
                }
                match input {
                    // A peer that only shut down its side may still read: it is
                    // greeted when its delay is over (edge-triggered, the EOF is not
                    // announced again meanwhile).
                    InputState::Quiet | InputState::Eof => Step::Wait,
                    InputState::BudgetSpent => Step::Close(CloseReason::Flood),
                    InputState::Failed(err) => Step::Close(CloseReason::for_error(&err)),
                }
            }
            Phase::Flushing => {
                let input = self.read_input();
                match input {
                    InputState::Quiet => self.check_flushed(),
                    // The peer closed its side: a late byte of its own can no longer
                    // draw a reset, and the kernel sends the rest after the close.
                    InputState::Eof => Step::Close(CloseReason::PeerEof),
                    // Whether the peer flooded us before or after it had everything
                    // (its last event may not have told us yet).
                    InputState::BudgetSpent => Step::Close(match TcpProgress::of(&self.stream) {
                        Ok(progress) if progress.unsent == 0 => CloseReason::LingerBudget,
                        _ => CloseReason::Flood,
                    }),
                    InputState::Failed(err) => Step::Close(CloseReason::for_error(&err)),
                }
            }
            Phase::Lingering => {
                let input = self.read_input();
                match input {
                    InputState::Quiet => Step::Wait,
                    InputState::Eof => Step::Close(CloseReason::PeerEof),
                    InputState::BudgetSpent => Step::Close(CloseReason::LingerBudget),
                    // Everything was sent: a reset now costs the peer nothing of ours.
                    InputState::Failed(_) => Step::Close(CloseReason::PeerEof),
                }
            }
            // Moved on by its events (`on_trap_event`) and drips (`drip`) only.
            Phase::Trapped { .. } => Step::Wait,
        }
    }

    /// Its phase's deadline has passed: what happens to it. `greeting` as for
    /// [`Connection::advance`] (a delay that ends sends it).
    pub(crate) fn on_deadline(&mut self, greeting: &[u8]) -> Step {
        match self.phase {
            Phase::Delaying { header_len, .. } => {
                self.phase = Phase::Writing {
                    sent: 0,
                    header_len,
                };
                self.advance(greeting)
            }
            Phase::Header => {
                log_proxy_error(self.peer(), "no header in time");
                Step::Close(CloseReason::ProxyHeader)
            }
            Phase::Writing { .. } => Step::Close(CloseReason::WriteTimeout),
            // Finished, not timed out, if the rest went out since its last event; and
            // newly lingering (its own deadline starts now) if the peer sent data.
            Phase::Flushing => match self.check_flushed() {
                Step::Wait if self.phase == Phase::Flushing => {
                    Step::Close(CloseReason::WriteTimeout)
                }
                step => step,
            },
            Phase::Lingering => Step::Close(CloseReason::LingerTimeout),
            // Its deadlines are drips (`drip`).
            Phase::Trapped { .. } => Step::Wait,
        }
    }

    /// Reads and discards what the peer sent, classifying its first bytes.
    fn read_input(&mut self) -> InputState {
        let mut read = self.input as usize;
        let first = &mut self.first;
        let state = discard_input(&mut self.stream, &mut read, LINGER_DISCARD_LIMIT, |chunk| {
            if *first == FirstInput::None {
                *first = FirstInput::classify(chunk);
            }
        });
        self.input = u32::try_from(read).unwrap_or(u32::MAX);
        state
    }

    /// Why it closes when a drain runs out: still taking its greeting, `reason`;
    /// lingering, its linger cut short.
    pub(crate) fn drain_reason(&self, reason: CloseReason) -> CloseReason {
        match self.phase {
            Phase::Lingering => CloseReason::LingerTimeout,
            Phase::Trapped { .. } => CloseReason::DrainTimeout,
            _ => reason,
        }
    }

    /// Takes the PROXY header if it has come whole (with one read, usually), and
    /// counts what came after it as the client's input.
    fn take_header(&mut self) -> Step {
        let (input, first) = (&mut self.input, &mut self.first);
        let header = read_header(&mut self.stream, &mut self.partial_header, |after| {
            if !after.is_empty() {
                *first = FirstInput::classify(after);
                *input = after.len() as u32;
            }
        });
        match header {
            Ok(Header::Incomplete) => Step::Wait,
            Ok(Header::Complete { len, client }) => {
                self.phase = Phase::Writing {
                    sent: 0,
                    header_len: len as u16,
                };
                // LOCAL and UNKNOWN: served as the socket's peer.
                Step::Named(client.unwrap_or(self.peer()))
            }
            Ok(Header::Invalid(why)) => {
                log_proxy_error(self.peer(), why);
                Step::Close(CloseReason::ProxyHeader)
            }
            Err(err) => Step::Close(CloseReason::for_error(&err)),
        }
    }

    /// The whole greeting is written: shut down the write side and close at once, or
    /// wait until the rest is sent or the peer closes.
    fn finish_writing(&mut self, header_len: u16) -> Step {
        match shut_down_and_check(&self.stream, header_len) {
            AfterGreeting::Close => Step::Close(CloseReason::Greeted),
            AfterGreeting::Flush => {
                self.phase = Phase::Flushing;
                Step::Wait
            }
            AfterGreeting::Linger => {
                self.phase = Phase::Lingering;
                Step::Wait
            }
        }
    }

    /// A flushing connection whose input is drained: once the kernel has sent the
    /// whole greeting it closes, or lingers if the peer has sent data.
    fn check_flushed(&mut self) -> Step {
        if self.phase != Phase::Flushing {
            return Step::Wait;
        }
        match TcpProgress::of(&self.stream) {
            Ok(progress) if progress.unsent > 0 => Step::Wait,
            Ok(_) if self.input > 0 => {
                self.phase = Phase::Lingering;
                Step::Wait
            }
            _ => Step::Close(CloseReason::Greeted),
        }
    }

    /// The client: the socket's peer, until a PROXY header names another.
    #[inline]
    pub(crate) fn peer(&self) -> SocketAddr {
        SocketAddr::from(self.peer)
    }

    /// Makes `client`, named by a PROXY header, the connection's peer.
    pub(crate) fn set_peer(&mut self, client: SocketAddr) {
        self.peer = PeerAddr::from(client);
    }

    /// Marks it as a denied client's, to be sent the deny message.
    pub(crate) fn deny(&mut self) {
        self.standing = Standing::Denied;
    }

    /// What the peer sent: how many bytes were read, and the class of the first.
    pub(crate) fn input(&self) -> (u32, FirstInput) {
        (self.input, self.first)
    }

    /// Its listener's index in the config's listeners (its row in the policy table).
    pub(crate) fn listener(&self) -> usize {
        usize::from(self.listener)
    }

    /// Whether it is a denied client's, being sent the deny message.
    #[inline]
    pub(crate) fn is_denied(&self) -> bool {
        self.standing == Standing::Denied
    }

    /// Where it is in its life.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// When it was accepted, in milliseconds since the server started (once held).
    pub(crate) fn accepted_ms(&self) -> u32 {
        self.accepted_ms
    }

    /// Records when it was accepted, as it is held.
    pub(crate) fn set_accepted_ms(&mut self, accepted_ms: u32) {
        self.accepted_ms = accepted_ms;
    }

    /// Greeting bytes written to it so far (all of them once it flushes or lingers).
    #[inline]
    pub(crate) fn sent(&self, greeting: &[u8]) -> usize {
        match self.phase {
            Phase::Header | Phase::Delaying { .. } => 0,
            Phase::Writing { sent, .. } => sent as usize,
            Phase::Flushing | Phase::Lingering => greeting.len(),
            Phase::Trapped { sent, .. } => sent as usize,
        }
    }

    /// The socket, to set options on it.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket, to register it.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

mod delaying;
mod trapped;

#[cfg(test)]
mod tests;
