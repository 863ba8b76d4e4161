//! The counters of what the held connections did on their way ([`HeldCounts`]): the
//! totals take them from here.

use crate::connection::Phase;

/// Counters of what happens to connections on their way through here (the close
/// reasons are counted by the server, from the closes handed back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeldCounts {
    /// Greeting bytes written.
    pub(crate) bytes_sent: u64,
    /// Connections whose first write was partial, so they waited for writability.
    pub(crate) partial_writes: u64,
    /// Connections held after their whole greeting was written (flushing or
    /// lingering).
    pub(crate) lingered: u64,
    /// Clients greeted without their greet delay: their source had passed.
    pub(crate) passed: u64,
    /// Clients trapped (`--tarpit`).
    pub(crate) trapped: u64,
    /// Bytes dripped to trapped clients (within `bytes_sent`).
    pub(crate) dripped: u64,
    /// Time trapped clients spent trapped, in milliseconds, counted an interval
    /// at each drip.
    pub(crate) trapped_ms: u64,
}

impl HeldCounts {
    /// Counts a connection that waits in `phase`, coming from `before` (`None`: just
    /// accepted): a partial write when it starts waiting to write, lingered when it
    /// starts waiting after its whole greeting was written.
    pub(super) fn progress(&mut self, before: Option<Phase>, phase: Phase) {
        let greeted = |phase: Phase| matches!(phase, Phase::Flushing | Phase::Lingering);
        let writing = |phase: Phase| matches!(phase, Phase::Writing { .. });
        if greeted(phase) && !before.is_some_and(greeted) {
            self.lingered += 1;
        } else if writing(phase) && !before.is_some_and(writing) {
            self.partial_writes += 1;
        }
    }
}
