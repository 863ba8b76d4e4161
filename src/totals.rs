//! What the server has done so far: the counters behind the `totals` log line.

use std::fmt;

use crate::close::CloseReason;
use crate::peer_input::FirstInput;

/// Counters of a server's work, returned by [`crate::Server::run`] and logged at exit
/// and on SIGUSR1.
///
/// Every accepted connection ends in exactly one [`CloseReason`], counted by
/// [`Totals::closes`]; those that handed the greeting over count within
/// [`Totals::greeted`], the others within [`Totals::closed_early`], so once the server
/// has stopped, `accepted == greeted() + closed_early()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: u64,
    /// Closes, one counter per [`CloseReason`] (indexed by it).
    closes: [u64; CloseReason::COUNT],
    /// Greeting bytes written, in all.
    pub bytes_sent: u64,
    /// Failed accepts that concerned one connection only (aborted, reset, EPROTO, ...).
    pub accept_errors: u64,
    /// Connections whose first write was partial, so they waited for writability.
    pub partial_writes: u64,
    /// Connections held after their whole greeting was written, because the peer had
    /// sent data or part of the greeting was still unsent in the kernel.
    pub lingered: u64,
    /// Times accepting paused for lack of descriptors or memory (episodes, not
    /// failed accepts).
    pub accept_pauses: u64,
    /// Clients that sent data during their `--greet-delay` (dropped or greeted).
    pub pregreeted: u64,
    /// Clients greeted at once, without their `--greet-delay`, because their source
    /// had waited it out silently within `--pass-ttl`.
    pub passed: u64,
    /// Clients trapped by a `--tarpit` listener.
    pub trapped: u64,
    /// Bytes dripped to trapped clients (within `bytes_sent`).
    pub dripped: u64,
    /// Time spent trapped by trapped clients, in milliseconds (an interval counted at
    /// each drip).
    pub trapped_ms: u64,
    /// Connections whose peer sent data, by the class of its first bytes (indexed by
    /// [`FirstInput`]; `none` stays 0: it is every other close).
    peer_input: [u64; FirstInput::COUNT],
    /// Held connections by lifetime, from accept to close: one count per
    /// [`LIFETIME_BOUNDS`] bucket (not cumulative), the last beyond them all.
    held_lifetimes: [u64; LIFETIME_BOUNDS.len() + 1],
    /// The sum of those lifetimes, in milliseconds.
    held_lifetime_ms: u64,
    /// Traps by duration, from trapped to close by the wall clock (their `ms=`): one
    /// count per [`TRAP_DURATION_BOUNDS`] bucket (not cumulative), the last beyond
    /// them all.
    trap_durations: [u64; TRAP_DURATION_BOUNDS.len() + 1],
    /// The sum of those durations, in milliseconds.
    trap_duration_ms: u64,
}

/// The upper bounds, in seconds, of the held-lifetime histogram's buckets: 1 ms to
/// 500 s in steps of 1, 2.5 and 5 (the metric stops at the one that covers the
/// longest timeout).
pub const LIFETIME_BOUNDS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0,
    100.0, 250.0, 500.0,
];

/// The upper bounds, in seconds, of the trap-duration histogram's buckets: 1 s to a
/// day (a scanner leaves within seconds, a real SSH client stays for hours).
pub const TRAP_DURATION_BOUNDS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// The `totals` line's fields, in their documented order (an interface: new ones are
/// only ever appended).
#[derive(Debug, Clone, Copy)]
enum Field {
    Accepted,
    Greeted,
    ClosedEarly,
    Closes(CloseReason),
    Bytes,
    AcceptErrors,
    PartialWrites,
    Lingered,
    AcceptPauses,
    Pregreeted,
    Passed,
    Trapped,
    Dripped,
    TrappedSeconds,
}

const LINE: [Field; 31] = [
    Field::Accepted,
    Field::Greeted,
    Field::ClosedEarly,
    Field::Closes(CloseReason::PeerReset),
    Field::Closes(CloseReason::WriteTimeout),
    Field::Closes(CloseReason::DrainTimeout),
    Field::Closes(CloseReason::Error),
    Field::Closes(CloseReason::PerIpLimit),
    Field::Bytes,
    Field::AcceptErrors,
    Field::PartialWrites,
    Field::Lingered,
    Field::Closes(CloseReason::Flood),
    Field::Closes(CloseReason::PeerEof),
    Field::Closes(CloseReason::LingerTimeout),
    Field::Closes(CloseReason::LingerBudget),
    Field::AcceptPauses,
    Field::Closes(CloseReason::ProxyHeader),
    Field::Closes(CloseReason::Denied),
    Field::Closes(CloseReason::Rate),
    Field::Closes(CloseReason::Pregreet),
    Field::Pregreeted,
    Field::Closes(CloseReason::DelayFull),
    Field::Passed,
    Field::Trapped,
    Field::Closes(CloseReason::TrapEof),
    Field::Closes(CloseReason::TrapReset),
    Field::Closes(CloseReason::TrapTimeout),
    Field::Closes(CloseReason::TrapFull),
    Field::Dripped,
    Field::TrappedSeconds,
];

impl Totals {
    /// Connections closed for `reason`.
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason as usize]
    }

    /// Connections whose whole greeting was handed over: written, and sent by the
    /// kernel or left to it for a peer that closed its side (however a held one
    /// ended: `eof`, `linger_timeout`, `linger_budget`).
    pub fn greeted(&self) -> u64 {
        self.sum_where(|greeted| greeted)
    }

    /// Connections closed before their whole greeting was handed over.
    pub fn closed_early(&self) -> u64 {
        self.sum_where(|greeted| !greeted)
    }

    fn sum_where(&self, greeted: impl Fn(bool) -> bool) -> u64 {
        CloseReason::ALL
            .iter()
            .filter(|(_, names)| greeted(names.greeted))
            .map(|&(reason, _)| self.closes(reason))
            .sum()
    }

    /// Counts a closed connection under its reason.
    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason as usize] += 1;
    }

    /// Connections whose peer's first bytes were of class `first`; for
    /// [`FirstInput::None`], those whose peer sent nothing that was read.
    pub fn peer_input(&self, first: FirstInput) -> u64 {
        match first {
            FirstInput::None => {
                let closed = self.greeted() + self.closed_early();
                closed.saturating_sub(self.peer_input.iter().sum())
            }
            first => self.peer_input[first as usize],
        }
    }

    /// Counts a held connection that lived `ms` milliseconds.
    pub(crate) fn observe_held_lifetime(&mut self, ms: u32) {
        let seconds = f64::from(ms) / 1000.0;
        let bucket = LIFETIME_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LIFETIME_BOUNDS.len());
        self.held_lifetimes[bucket] += 1;
        self.held_lifetime_ms += u64::from(ms);
    }

    /// Held connections by lifetime (per bucket of [`LIFETIME_BOUNDS`], the last
    /// beyond them) and the sum of their lifetimes in milliseconds.
    pub fn held_lifetimes(&self) -> (&[u64], u64) {
        (&self.held_lifetimes, self.held_lifetime_ms)
    }

    /// Counts a trap that lasted `ms` milliseconds by the wall clock.
    pub(crate) fn observe_trap_duration(&mut self, ms: u64) {
        let seconds = ms as f64 / 1000.0;
        let bucket = TRAP_DURATION_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(TRAP_DURATION_BOUNDS.len());
        self.trap_durations[bucket] += 1;
        self.trap_duration_ms += ms;
    }

    /// Traps by duration (per bucket of [`TRAP_DURATION_BOUNDS`], the last beyond
    /// them) and the sum of their durations in milliseconds.
    pub fn trap_durations(&self) -> (&[u64], u64) {
        (&self.trap_durations, self.trap_duration_ms)
    }

    /// Counts a connection whose peer sent data first of class `first`.
    pub(crate) fn count_peer_input(&mut self, first: FirstInput) {
        self.peer_input[first as usize] += 1;
    }

    /// Adds `other`'s counts to these (to sum the workers' totals).
    pub fn add(&mut self, other: &Totals) {
        self.accepted += other.accepted;
        for (mine, theirs) in self.closes.iter_mut().zip(other.closes) {
            *mine += theirs;
        }
        self.bytes_sent += other.bytes_sent;
        self.accept_errors += other.accept_errors;
        self.partial_writes += other.partial_writes;
        self.lingered += other.lingered;
        self.accept_pauses += other.accept_pauses;
        self.pregreeted += other.pregreeted;
        self.passed += other.passed;
        self.trapped += other.trapped;
        self.dripped += other.dripped;
        self.trapped_ms += other.trapped_ms;
        for (mine, theirs) in self.peer_input.iter_mut().zip(other.peer_input) {
            *mine += theirs;
        }
        for (mine, theirs) in self.held_lifetimes.iter_mut().zip(other.held_lifetimes) {
            *mine += theirs;
        }
        self.held_lifetime_ms += other.held_lifetime_ms;
        for (mine, theirs) in self.trap_durations.iter_mut().zip(other.trap_durations) {
            *mine += theirs;
        }
        self.trap_duration_ms += other.trap_duration_ms;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, field) in LINE.iter().enumerate() {
            let (key, value) = match *field {
                Field::Accepted => ("accepted", self.accepted),
                Field::Greeted => ("greeted", self.greeted()),
                Field::ClosedEarly => ("closed_early", self.closed_early()),
                Field::Closes(reason) => {
                    (reason.names().totals.unwrap_or("?"), self.closes(reason))
                }
                Field::Bytes => ("bytes", self.bytes_sent),
                Field::AcceptErrors => ("accept_errors", self.accept_errors),
                Field::PartialWrites => ("partial_writes", self.partial_writes),
                Field::Lingered => ("lingered", self.lingered),
                Field::AcceptPauses => ("accept_pauses", self.accept_pauses),
                Field::Pregreeted => ("pregreeted", self.pregreeted),
                Field::Passed => ("passed", self.passed),
                Field::Trapped => ("trapped", self.trapped),
                Field::Dripped => ("dripped", self.dripped),
                Field::TrappedSeconds => ("trapped_seconds", self.trapped_ms / 1000),
            };
            let separator = if index == 0 { "" } else { " " };
            write!(f, "{separator}{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_a_held_greeting_ended_is_counted_within_greeted() {
        let mut totals = Totals::default();
        for reason in [
            CloseReason::Greeted,
            CloseReason::PeerEof,
            CloseReason::LingerTimeout,
            CloseReason::LingerBudget,
            CloseReason::Flood,
        ] {
            totals.count_close(reason);
        }
        assert_eq!(totals.greeted(), 4);
        assert_eq!(totals.closes(CloseReason::PeerEof), 1);
        assert_eq!(totals.closed_early(), 1);
    }

    #[test]
    fn displays_as_greppable_key_value_pairs() {
        let mut totals = Totals {
            accepted: 5,
            bytes_sent: 120,
            ..Totals::default()
        };
        for reason in [
            CloseReason::Greeted,
            CloseReason::Greeted,
            CloseReason::PeerEof,
            CloseReason::PeerReset,
            CloseReason::WriteTimeout,
        ] {
            totals.count_close(reason);
        }
        assert_eq!(
            totals.to_string(),
            "accepted=5 greeted=3 closed_early=2 reset=1 timeout=1 drain=0 error=0 \
             per_ip=0 bytes=120 accept_errors=0 partial_writes=0 lingered=0 flood=0 \
             eof=1 linger_timeout=0 linger_budget=0 accept_pauses=0 proxy=0 denied=0 \
             rate=0 pregreet=0 pregreeted=0 delay_full=0 passed=0 trapped=0 trap_eof=0 \
             trap_reset=0 trap_timeout=0 trap_full=0 dripped=0 trapped_seconds=0"
        );
    }

    #[test]
    fn trap_durations_fall_in_buckets_up_to_a_day_and_beyond() {
        let mut totals = Totals::default();
        for ms in [
            1,
            1000,
            1001,
            45_000,
            86_400_000,
            86_400_001,
            100 * 86_400_000,
        ] {
            totals.observe_trap_duration(ms);
        }
        let (counts, sum_ms) = totals.trap_durations();
        assert_eq!(counts, [2, 1, 0, 1, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            sum_ms,
            1 + 1000 + 1001 + 45_000 + 86_400_000 + 86_400_001 + 100 * 86_400_000
        );
        let mut summed = Totals::default();
        summed.add(&totals);
        summed.add(&totals);
        assert_eq!(summed.trap_durations().0[10], 4);
        // Not a held lifetime.
        assert_eq!(totals.held_lifetimes().0.iter().sum::<u64>(), 0);
    }

    #[test]
    fn the_totals_line_shows_every_reason_that_has_a_key() {
        let shown: Vec<CloseReason> = LINE
            .iter()
            .filter_map(|field| match field {
                Field::Closes(reason) => Some(*reason),
                _ => None,
            })
            .collect();
        for (reason, names) in CloseReason::ALL {
            assert_eq!(
                names.totals.is_some(),
                shown.contains(&reason),
                "{reason:?}"
            );
        }
    }
}
