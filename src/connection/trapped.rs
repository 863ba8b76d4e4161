//! A trapped connection (`--tarpit`): what its phase keeps beside its bytes, what a
//! readiness event tells it, and the methods that trap it, drip to it and end its
//! trap. The phase itself is [`Phase::Trapped`], beside the others.

use std::io::{self, Read};
use std::time::{Duration, UNIX_EPOCH};

use mio::net::TcpStream;

use super::{Connection, Phase, Step};
use crate::admission::TrapWhy;
use crate::close::CloseReason;
use crate::geoip::Country;
use crate::peer_input::FirstInput;
use crate::socket::{peer_went_away, would_block, write_greeting, WriteProgress};
use crate::tarpit::{random_line, DripSettings, TrapStart, MAX_LINE_LENGTH, TRAP_READ};
use crate::upgrade::handover::TrapRecord;

/// What a trapped connection keeps besides its bytes, in 16 bits so that the phase
/// stays 8 bytes: its mode (`--drip lines`, kept across a reload), whether its last
/// drip would have blocked (then it waits for writability, and drips are skipped
/// meanwhile), and the milliseconds of its start's second (the second itself is in
/// `accepted_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrapBits(u16);

impl TrapBits {
    const LINES: u16 = 1 << 14;
    const BLOCKED: u16 = 1 << 15;
    const MILLIS: u16 = 0x3ff;
    const WHY_SHIFT: u16 = 10;
    const WHY: u16 = 0b11 << Self::WHY_SHIFT;

    pub(crate) fn new(lines: bool, millis: u16, why: TrapWhy) -> Self {
        let why = match why {
            TrapWhy::Listener => 0,
            TrapWhy::Deny => 1,
            TrapWhy::Rate => 2,
            TrapWhy::Pregreet => 3,
        } << Self::WHY_SHIFT;
        TrapBits((millis & Self::MILLIS) | why | if lines { Self::LINES } else { 0 })
    }

    /// Why it was trapped.
    pub(crate) fn why(self) -> TrapWhy {
        match (self.0 & Self::WHY) >> Self::WHY_SHIFT {
            0 => TrapWhy::Listener,
            1 => TrapWhy::Deny,
            2 => TrapWhy::Rate,
            _ => TrapWhy::Pregreet,
        }
    }

    /// Whether it is dripped lines (else the greeting).
    pub(crate) fn lines(self) -> bool {
        self.0 & Self::LINES != 0
    }

    /// Whether its last drip would have blocked.
    pub(crate) fn blocked(self) -> bool {
        self.0 & Self::BLOCKED != 0
    }

    fn with_blocked(self, blocked: bool) -> Self {
        TrapBits(if blocked {
            self.0 | Self::BLOCKED
        } else {
            self.0 & !Self::BLOCKED
        })
    }

    fn millis(self) -> u16 {
        self.0 & Self::MILLIS
    }
}

/// What a readiness event said beside readability: what a trapped connection,
/// which is not read, needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The socket can take more (a blocked drip may go on).
    pub(crate) writable: bool,
    /// The peer closed its side (`EPOLLRDHUP`) or the connection hung up.
    pub(crate) read_closed: bool,
    /// The socket has an error (a reset).
    pub(crate) error: bool,
}

impl Connection {
    /// Traps a connection (`--tarpit`, or its policy's trap: `why`) at wall-clock
    /// `start`: `lines` (else its greeting is dripped), `lead` what is sent first
    /// (with `--drip lines`: all of it, now; with `--drip greeting`: its first
    /// `bytes`). Then it waits for its next drip.
    pub(crate) fn trap(
        &mut self,
        lines: bool,
        start: TrapStart,
        lead: &[u8],
        bytes: u32,
        why: TrapWhy,
    ) -> Step {
        self.accepted_ms = start.seconds;
        self.phase = Phase::Trapped {
            sent: 0,
            bits: TrapBits::new(lines, start.millis, why),
            country: Country::NONE,
        };
        if lead.is_empty() {
            return Step::Wait;
        }
        self.send_lead(lead, bytes)
    }

    /// A connection trapped by the process that upgraded to this one, handed over
    /// with `record` (its socket `stream`), going on as the record says under
    /// `listener`.
    pub(crate) fn handed(stream: TcpStream, listener: u16, record: &TrapRecord) -> Self {
        let at = UNIX_EPOCH + Duration::from_millis(record.start_ms);
        let start = TrapStart::at(at);
        let bits =
            TrapBits::new(record.lines, start.millis, record.why).with_blocked(record.blocked);
        let mut conn = Connection::accepted(stream, record.peer, false, listener);
        conn.accepted_ms = start.seconds;
        conn.phase = Phase::Trapped {
            sent: record.sent,
            bits,
            country: Country::from_record(record.country),
        };
        conn.first = record.first;
        conn.input = record.input.min(TRAP_READ as u32);
        conn
    }

    /// When its trap began, if it is trapped.
    pub(crate) fn trap_start(&self) -> Option<TrapStart> {
        match self.phase {
            Phase::Trapped { bits, .. } => Some(TrapStart {
                seconds: self.accepted_ms,
                millis: bits.millis(),
            }),
            _ => None,
        }
    }

    /// Where its client is from, if it is trapped ([`Country::NONE`] without
    /// `--geoip-db`).
    pub(crate) fn trap_country(&self) -> Option<Country> {
        match self.phase {
            Phase::Trapped { country, .. } => Some(country),
            _ => None,
        }
    }

    /// Records where its client is from, once it is trapped (looked up then, once).
    pub(crate) fn set_trap_country(&mut self, found: Country) {
        if let Phase::Trapped { country, .. } = &mut self.phase {
            *country = found;
        }
    }

    /// Why it was trapped, if it is.
    pub(crate) fn trap_why(&self) -> Option<TrapWhy> {
        match self.phase {
            Phase::Trapped { bits, .. } => Some(bits.why()),
            _ => None,
        }
    }

    /// A trapped connection's readiness event: its input read once (up to
    /// [`TRAP_READ`] bytes, classified), then never again; its EOF or reset ends the
    /// trap; writability lets a blocked drip go on at the next interval.
    pub(crate) fn on_trap_event(&mut self, readiness: Readiness) -> Step {
        if !self.phase.is_trapped() {
            return Step::Wait;
        }
        if self.input == 0 {
            let mut scratch = [0u8; TRAP_READ];
            loop {
                match self.stream.read(&mut scratch) {
                    Ok(0) => return Step::Close(CloseReason::TrapEof),
                    Ok(n) => {
                        self.first = FirstInput::classify(&scratch[..n]);
                        self.input = n as u32;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) if would_block(&err) => {}
                    Err(err) => return Step::Close(trap_error(&err)),
                }
                break;
            }
        }
        if readiness.error {
            return Step::Close(match self.stream.take_error() {
                Ok(Some(err)) if !peer_went_away(&err) => CloseReason::Error,
                _ => CloseReason::TrapReset,
            });
        }
        if readiness.read_closed {
            return Step::Close(CloseReason::TrapEof);
        }
        if let (true, Phase::Trapped { bits, .. }) = (readiness.writable, &mut self.phase) {
            *bits = bits.with_blocked(false);
        }
        Step::Wait
    }

    /// A trapped connection's drip is due: one send (none while a drip would block):
    /// the rest of its lead, a line (`--drip lines`) or the greeting's next `bytes`;
    /// once all of a dripped greeting is out, the ordinary close. `line` is the
    /// buffer a line is made in, `rng` what makes it.
    pub(crate) fn drip(
        &mut self,
        greeting: &[u8],
        settings: &DripSettings,
        rng: &mut fastrand::Rng,
    ) -> Step {
        let Phase::Trapped { sent, bits, .. } = self.phase else {
            return Step::Wait;
        };
        if bits.blocked() {
            return Step::Wait;
        }
        if (sent as usize) < greeting.len() {
            return self.send_lead(greeting, settings.bytes);
        }
        if !bits.lines() {
            return self.finish_writing(0);
        }
        let mut buffer = [0u8; MAX_LINE_LENGTH as usize];
        let line = random_line(rng, settings.line_length, &mut buffer);
        let mut written = 0;
        let progress = write_greeting(&mut self.stream, line, &mut written);
        self.after_drip(sent, bits, written, progress)
    }

    /// Sends the next part of `lead` (all the rest with `--drip lines`, the next
    /// `bytes` with `--drip greeting`, then the ordinary close once it is all out).
    fn send_lead(&mut self, lead: &[u8], bytes: u32) -> Step {
        let Phase::Trapped { sent, bits, .. } = self.phase else {
            return Step::Wait;
        };
        let from = sent as usize;
        let until = if bits.lines() {
            lead.len()
        } else {
            from.saturating_add(bytes.max(1) as usize).min(lead.len())
        };
        let mut written = 0;
        let progress = write_greeting(&mut self.stream, &lead[from..until], &mut written);
        let step = self.after_drip(sent, bits, written, progress);
        if step == Step::Wait && !bits.lines() && from + written == lead.len() {
            return self.finish_writing(0);
        }
        step
    }

    /// Records a drip's `written` bytes (its phase was `sent` and `bits` before) and
    /// what the send said.
    fn after_drip(
        &mut self,
        sent: u32,
        bits: TrapBits,
        written: usize,
        progress: WriteProgress,
    ) -> Step {
        let sent = sent.saturating_add(u32::try_from(written).unwrap_or(u32::MAX));
        let blocked = matches!(progress, WriteProgress::WouldBlock);
        if let Phase::Trapped {
            sent: kept,
            bits: kept_bits,
            ..
        } = &mut self.phase
        {
            (*kept, *kept_bits) = (sent, bits.with_blocked(blocked));
        }
        match progress {
            WriteProgress::Failed(err) => Step::Close(trap_error(&err)),
            WriteProgress::Complete | WriteProgress::WouldBlock => Step::Wait,
        }
    }
}

/// Why a trap ends after a failed read or write: the peer's reset, or ours.
fn trap_error(err: &io::Error) -> CloseReason {
    if peer_went_away(err) {
        CloseReason::TrapReset
    } else {
        CloseReason::Error
    }
}
