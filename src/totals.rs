//! What the server has done so far: the counters behind the `totals` log line.

use std::fmt;

/// Counters of a server's work, returned by [`crate::Server::run`] and logged at exit
/// and on SIGUSR1.
///
/// Every accepted connection ends in exactly one of `greeted`, `reset`, `timed_out`,
/// `drained` or `failed`, so once the server has stopped,
/// `accepted == greeted + closed_early()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections whose whole greeting was written.
    pub greeted: u64,
    /// Closed early because the peer reset or went away before taking the greeting.
    pub reset: u64,
    /// Closed early because the peer did not take the greeting within the write timeout.
    pub timed_out: u64,
    /// Closed early because a shutdown's drain timeout ran out.
    pub drained: u64,
    /// Closed early because of an error on the server's side (e.g. registration failed).
    pub failed: u64,
    /// Greeting bytes written, in all.
    pub bytes_sent: u64,
    /// Failed accepts that concerned one connection only (aborted, reset, EPROTO, ...).
    pub accept_errors: u64,
    /// Connections whose first write was partial, so they waited for writability.
    pub partial_writes: u64,
    /// Connections closed with a lingering close because the peer had sent data or
    /// the greeting was still in flight.
    pub lingered: u64,
}

impl Totals {
    /// Connections closed before their whole greeting was written.
    pub fn closed_early(&self) -> u64 {
        self.reset + self.timed_out + self.drained + self.failed
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} greeted={} closed_early={} reset={} timeout={} drain={} error={} \
             bytes={} accept_errors={} partial_writes={} lingered={}",
            self.accepted,
            self.greeted,
            self.closed_early(),
            self.reset,
            self.timed_out,
            self.drained,
            self.failed,
            self.bytes_sent,
            self.accept_errors,
            self.partial_writes,
            self.lingered,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
             bytes=120 accept_errors=0 partial_writes=0 lingered=0"
        );
    }
}
