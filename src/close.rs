//! Why a connection closed, and the three per-connection log lines: `ACCEPT` when a
//! connection's client is known, `PREGREET` when it spoke before its greeting,
//! `CLOSE` when it ends. They are a documented, stable interface (fail2ban filters
//! read them), so they are written here and nowhere else.

use std::io;
use std::net::SocketAddr;

use log::{log, log_enabled, Level};

use crate::geoip::Country;
use crate::peer_input::FirstInput;
use crate::socket::peer_went_away;

/// Why a connection was closed; each is one counter of [`crate::Totals`] and one
/// `reason=` of the `CLOSE` log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
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
    /// `--allow`/`--deny` turned the client away: sent nothing, or the
    /// `--deny-message`.
    Denied,
    /// The client's source was over its `--max-rate-per-ip`; nothing was sent.
    Rate,
    /// `--pregreet drop`: the client sent data during its `--greet-delay`; nothing
    /// was sent.
    Pregreet,
    /// The client would have been delayed, but `--max-delayed` connections already
    /// were; nothing was sent (postscreen's 421 "all server ports are busy").
    DelayFull,
    /// `--tarpit`: the trapped client closed its side.
    TrapEof,
    /// `--tarpit`: the trapped client reset or went away.
    TrapReset,
    /// `--tarpit`: the trap lasted `--trap-timeout`.
    TrapTimeout,
    /// `--tarpit`: `--max-trapped` clients (or `--max-trapped-per-ip` of its
    /// address) were trapped already; nothing was sent.
    TrapFull,
}

/// The names of a close reason wherever it is shown.
#[derive(Debug, Clone, Copy)]
pub struct ReasonNames {
    /// The `reason=` of the `CLOSE` line.
    pub log: &'static str,
    /// Its key in the `totals` line (`None`: counted only within `greeted`).
    pub totals: Option<&'static str>,
    /// Whether the greeting was handed over: counted within `greeted` (and labelled
    /// `greeted` in the metrics) rather than as an early close.
    pub greeted: bool,
}

impl CloseReason {
    /// Every reason, with its names: one line per reason, and the totals line, the
    /// `CLOSE` line and the metrics all read it.
    pub const ALL: [(CloseReason, ReasonNames); 19] = {
        const fn names(
            log: &'static str,
            totals: Option<&'static str>,
            greeted: bool,
        ) -> ReasonNames {
            ReasonNames {
                log,
                totals,
                greeted,
            }
        }
        [
            (CloseReason::Greeted, names("greeted", None, true)),
            (CloseReason::PeerEof, names("eof", Some("eof"), true)),
            (
                CloseReason::LingerTimeout,
                names("linger-timeout", Some("linger_timeout"), true),
            ),
            (
                CloseReason::LingerBudget,
                names("linger-budget", Some("linger_budget"), true),
            ),
            (CloseReason::PeerReset, names("reset", Some("reset"), false)),
            (
                CloseReason::WriteTimeout,
                names("timeout", Some("timeout"), false),
            ),
            (
                CloseReason::DrainTimeout,
                names("drain", Some("drain"), false),
            ),
            (
                CloseReason::PerIpLimit,
                names("per-ip", Some("per_ip"), false),
            ),
            (CloseReason::Flood, names("flood", Some("flood"), false)),
            (
                CloseReason::ProxyHeader,
                names("proxy", Some("proxy"), false),
            ),
            (CloseReason::Error, names("error", Some("error"), false)),
            (CloseReason::Denied, names("denied", Some("denied"), false)),
            (CloseReason::Rate, names("rate", Some("rate"), false)),
            (
                CloseReason::Pregreet,
                names("pregreet", Some("pregreet"), false),
            ),
            (
                CloseReason::DelayFull,
                names("delay-full", Some("delay_full"), false),
            ),
            (
                CloseReason::TrapEof,
                names("trap-eof", Some("trap_eof"), false),
            ),
            (
                CloseReason::TrapReset,
                names("trap-reset", Some("trap_reset"), false),
            ),
            (
                CloseReason::TrapTimeout,
                names("trap-timeout", Some("trap_timeout"), false),
            ),
            (
                CloseReason::TrapFull,
                names("trap-full", Some("trap_full"), false),
            ),
        ]
    };

    /// How many reasons there are.
    pub const COUNT: usize = CloseReason::ALL.len();

    /// Its names (its line of [`CloseReason::ALL`]).
    pub fn names(self) -> ReasonNames {
        CloseReason::ALL[self as usize].1
    }

    /// The `reason=` value of the `CLOSE` log line.
    pub(crate) fn as_str(self) -> &'static str {
        self.names().log
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
    pub(crate) fn resets(self) -> bool {
        matches!(
            self,
            CloseReason::WriteTimeout
                | CloseReason::DrainTimeout
                | CloseReason::Flood
                | CloseReason::TrapTimeout
        )
    }
}

/// A closed connection, as the totals and the `CLOSE` log line need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    /// Who it was.
    pub(crate) peer: SocketAddr,
    /// When it was accepted, in milliseconds since the server started (wrapping), if
    /// it was held; 0 for one closed at once (its lifetime is taken from the round).
    pub(crate) accepted_ms: u32,
    /// Greeting bytes written to it.
    pub(crate) sent: u32,
    /// Why it closed.
    pub(crate) reason: CloseReason,
    /// Bytes read from the peer (0 for every connection closed at once).
    pub(crate) input: u32,
    /// The class of the peer's first bytes.
    pub(crate) first: FirstInput,
    /// Whether it sent data during its `--greet-delay`.
    pub(crate) pregreeted: bool,
    /// How long it was trapped, in milliseconds by the wall clock, at least 1
    /// (`--tarpit`; 0 for every other connection): its `ms=` instead of its lifetime.
    pub(crate) trapped_ms: u64,
    /// Where its client is from, if it was trapped and `--geoip-db` is set
    /// ([`Country::NONE`] else): the `country=` of a trap's `CLOSE` line.
    pub(crate) country: Country,
}

/// The log target of the per-connection lines (`ACCEPT`, `CLOSE`, `PREGREET`,
/// `PROXY_ERROR`), fixed so that filters and `RUST_LOG=greeter::connection=info` do
/// not depend on where the code lives.
pub(crate) const LOG_TARGET: &str = "greeter::connection";

/// Logs the `PROXY_ERROR` line (debug): a PROXY client closed because its header
/// did not come in time, was not a header, or could not wait.
pub(crate) fn log_proxy_error(peer: impl std::fmt::Display, why: impl std::fmt::Display) {
    log::debug!(target: LOG_TARGET, "PROXY_ERROR peer={peer} error=\"{why}\"");
}

/// Logs a close as the `CLOSE` line, at `level` (info with `--log-connections`);
/// `lifetime_ms` (from accept to now) is asked only if the line is logged. Its form is
/// documented as stable: fail2ban filters read it.
#[inline(always)]
pub(crate) fn log_close(closed: &Closed, level: Level, lifetime_ms: impl FnOnce() -> u32) {
    // The check is inlined into the fast path; the formatting stays out of it.
    if log_enabled!(target: LOG_TARGET, level) {
        write_close_line(closed, level, u64::from(lifetime_ms()));
    }
}

#[cold]
#[inline(never)]
fn write_close_line(closed: &Closed, level: Level, lifetime_ms: u64) {
    // A trap's time is counted by the wall clock, from when it began.
    let lifetime_ms = match closed.trapped_ms {
        0 => lifetime_ms,
        trapped => trapped,
    };
    if closed.trapped_ms > 0 && closed.country.looked_up() {
        return write_trap_close_line(closed, level, lifetime_ms);
    }
    // The fields again as key-values, for --log-format json (the text is the same).
    log!(
        target: LOG_TARGET,
        level,
        event = "CLOSE",
        peer:% = closed.peer,
        bytes = closed.sent,
        ms = lifetime_ms,
        reason = closed.reason.as_str(),
        input = closed.input,
        first = closed.first.as_str();
        "CLOSE peer={} bytes={} ms={lifetime_ms} reason={} input={} first={}",
        closed.peer,
        closed.sent,
        closed.reason.as_str(),
        closed.input,
        closed.first.as_str()
    );
}

/// The `CLOSE` line of a trap with `--geoip-db`: the line of every close, then the
/// client's `country=`.
#[cold]
#[inline(never)]
fn write_trap_close_line(closed: &Closed, level: Level, lifetime_ms: u64) {
    log!(
        target: LOG_TARGET,
        level,
        event = "CLOSE",
        peer:% = closed.peer,
        bytes = closed.sent,
        ms = lifetime_ms,
        reason = closed.reason.as_str(),
        input = closed.input,
        first = closed.first.as_str(),
        country = closed.country.as_str();
        "CLOSE peer={} bytes={} ms={lifetime_ms} reason={} input={} first={} country={}",
        closed.peer,
        closed.sent,
        closed.reason.as_str(),
        closed.input,
        closed.first.as_str(),
        closed.country
    );
}

/// Logs the `PREGREET` line of a client that sent data during its `--greet-delay`,
/// at `level` (info with `--log-connections`), just before its `CLOSE` line; its
/// `action` is what `--pregreet` did with it.
#[cold]
#[inline(never)]
pub(crate) fn log_pregreet(closed: &Closed, level: Level) {
    let action = if closed.reason == CloseReason::Pregreet {
        "drop"
    } else if closed.trapped_ms > 0 {
        "tarpit"
    } else {
        "greet"
    };
    log!(
        target: LOG_TARGET,
        level,
        event = "PREGREET",
        peer:% = closed.peer,
        input = closed.input,
        first = closed.first.as_str(),
        action = action;
        "PREGREET peer={} input={} first={} action={action}",
        closed.peer,
        closed.input,
        closed.first.as_str()
    );
}

/// Logs the `TRAP` line of a client trapped (`why`: by a tarpit listener, or its
/// listener's policy: `deny`, `rate`, `pregreet`) by listener `listener` (its name
/// or first address), at `level` (info with `--log-connections`), after its
/// `ACCEPT` line; with `--geoip-db`, its client's `country=` last.
#[cold]
#[inline(never)]
pub(crate) fn log_trap(
    peer: SocketAddr,
    listener: &str,
    why: &str,
    country: Country,
    level: Level,
) {
    if !country.looked_up() {
        log!(
            target: LOG_TARGET,
            level,
            event = "TRAP",
            peer:% = peer,
            listener = listener,
            why = why;
            "TRAP peer={peer} listener={listener} why={why}"
        );
        return;
    }
    log!(
        target: LOG_TARGET,
        level,
        event = "TRAP",
        peer:% = peer,
        listener = listener,
        why = why,
        country = country.as_str();
        "TRAP peer={peer} listener={listener} why={why} country={country}"
    );
}

/// Logs the `ACCEPT` line of a connection whose client is known, at `level` (info
/// with `--log-connections`): `held` connections were held before it, of `max`.
#[inline(always)]
pub(crate) fn log_accept(peer: SocketAddr, held: usize, max: usize, level: Level) {
    if log_enabled!(target: LOG_TARGET, level) {
        write_accept_line(peer, held, max, level);
    }
}

#[cold]
#[inline(never)]
fn write_accept_line(peer: SocketAddr, held: usize, max: usize, level: Level) {
    log!(
        target: LOG_TARGET,
        level,
        event = "ACCEPT",
        peer:% = peer,
        held = held,
        max = max;
        "ACCEPT peer={peer} held={held}/{max}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_reason_at_its_own_index() {
        for (index, (reason, _)) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason:?}");
        }
    }
}
