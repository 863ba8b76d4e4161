//! What the server has done so far: the counters behind the `totals` log line.

use std::fmt;

use crate::close::CloseReason;

/// Counters of a server's work, returned by [`crate::Server::run`] and logged at exit
/// and on SIGUSR1.
///
/// Every accepted connection ends in exactly one of `greeted`, `reset`, `timed_out`,
/// `drained`, `failed`, `per_ip_rejected` or `flooded`, so once the server has stopped,
/// `accepted == greeted + closed_early()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections whose whole greeting was handed over: written, and sent by the
    /// kernel or left to it for a peer that closed its side. Includes `eof`,
    /// `linger_timeout` and `linger_budget`, which say how a held one ended.
    pub greeted: u64,
    /// Closed early because the peer reset or went away before taking the greeting.
    pub reset: u64,
    /// Closed early because the peer did not take the greeting within the write timeout.
    pub timed_out: u64,
    /// Closed early because a shutdown's drain timeout ran out.
    pub drained: u64,
    /// Closed early because of an error on the server's side (e.g. registration failed).
    pub failed: u64,
    /// Closed at once, without the greeting, because the client's address already
    /// held `--max-per-ip` connections.
    pub per_ip_rejected: u64,
    /// Closed early, with a reset, because the peer sent more than the discard budget
    /// while its greeting was still waiting in the kernel.
    pub flooded: u64,
    /// Closed early, without the greeting, because the PROXY protocol header was
    /// missing, malformed, too long or too late (`--proxy-protocol`).
    pub proxy_rejected: u64,
    /// Times accepting paused for lack of descriptors or memory (episodes, not
    /// failed accepts).
    pub accept_pauses: u64,
    /// Greeted connections that were held and closed when the peer closed its side.
    pub eof: u64,
    /// Greeted connections whose peer had sent data and did not close its side within
    /// the linger timeout (or a drain's).
    pub linger_timeout: u64,
    /// Greeted connections whose peer sent more than the discard budget while they
    /// lingered.
    pub linger_budget: u64,
    /// Greeting bytes written, in all.
    pub bytes_sent: u64,
    /// Failed accepts that concerned one connection only (aborted, reset, EPROTO, ...).
    pub accept_errors: u64,
    /// Connections whose first write was partial, so they waited for writability.
    pub partial_writes: u64,
    /// Connections held after their whole greeting was written, because the peer had
    /// sent data or part of the greeting was still unsent in the kernel.
    pub lingered: u64,
}

impl Totals {
    /// Connections closed before their whole greeting was written.
    pub fn closed_early(&self) -> u64 {
        self.reset
            + self.timed_out
            + self.drained
            + self.failed
            + self.per_ip_rejected
            + self.flooded
            + self.proxy_rejected
    }

    /// Counts a closed connection under its reason.
    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::Greeted => &mut self.greeted,
            CloseReason::PeerEof => {
                self.greeted += 1;
                &mut self.eof
            }
            CloseReason::LingerTimeout => {
                self.greeted += 1;
                &mut self.linger_timeout
            }
            CloseReason::LingerBudget => {
                self.greeted += 1;
                &mut self.linger_budget
            }
            CloseReason::PeerReset => &mut self.reset,
            CloseReason::WriteTimeout => &mut self.timed_out,
            CloseReason::DrainTimeout => &mut self.drained,
            CloseReason::PerIpLimit => &mut self.per_ip_rejected,
            CloseReason::Flood => &mut self.flooded,
            CloseReason::ProxyHeader => &mut self.proxy_rejected,
            CloseReason::Error => &mut self.failed,
        };
        *counter += 1;
    }

    /// Adds `other`'s counts to these (to sum the workers' totals).
    pub fn add(&mut self, other: &Totals) {
        self.accepted += other.accepted;
        self.greeted += other.greeted;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.drained += other.drained;
        self.failed += other.failed;
        self.per_ip_rejected += other.per_ip_rejected;
        self.flooded += other.flooded;
        self.eof += other.eof;
        self.linger_timeout += other.linger_timeout;
        self.linger_budget += other.linger_budget;
        self.accept_pauses += other.accept_pauses;
        self.proxy_rejected += other.proxy_rejected;
        self.bytes_sent += other.bytes_sent;
        self.accept_errors += other.accept_errors;
        self.partial_writes += other.partial_writes;
        self.lingered += other.lingered;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} greeted={} closed_early={} reset={} timeout={} drain={} error={} \
             per_ip={} bytes={} accept_errors={} partial_writes={} lingered={} flood={} \
             eof={} linger_timeout={} linger_budget={} accept_pauses={} proxy={}",
            self.accepted,
            self.greeted,
            self.closed_early(),
            self.reset,
            self.timed_out,
            self.drained,
            self.failed,
            self.per_ip_rejected,
            self.bytes_sent,
            self.accept_errors,
            self.partial_writes,
            self.lingered,
            self.flooded,
            self.eof,
            self.linger_timeout,
            self.linger_budget,
            self.accept_pauses,
            self.proxy_rejected,
        )
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
        assert_eq!(totals.greeted, 4);
        assert_eq!(
            (totals.eof, totals.linger_timeout, totals.linger_budget),
            (1, 1, 1)
        );
        assert_eq!(totals.closed_early(), 1);
    }

    #[test]
    fn displays_as_greppable_key_value_pairs() {
        let totals = Totals {
            accepted: 5,
            greeted: 3,
            reset: 1,
            timed_out: 1,
            bytes_sent: 120,
            ..Totals::default()
        };
        assert_eq!(
            totals.to_string(),
            "accepted=5 greeted=3 closed_early=2 reset=1 timeout=1 drain=0 error=0 \
             per_ip=0 bytes=120 accept_errors=0 partial_writes=0 lingered=0 flood=0 \
             eof=0 linger_timeout=0 linger_budget=0 accept_pauses=0 proxy=0"
        );
    }
}
