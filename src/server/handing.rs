//! A loop's part in handing trapped connections across an upgrade: every stop's
//! drain begins here, and an upgrade's sends the old process's trapped connections
//! to the new process first; the new one's loops adopt what their supervisor gives
//! them (see [`crate::upgrade`]).

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Instant;

use log::{debug, info, warn};

use super::{Server, LOG_TARGET};
use crate::upgrade::handover::Handed;

impl Server {
    /// Begins the drain a stop asked for. An upgrade's hands the trapped connections
    /// to the new process first, so that the drain never closes them, and leaves
    /// what waits in the backlog to it (it has the same listening sockets: accepted
    /// here, a tarpit's clients would find it full, or be trapped only to be handed).
    pub(super) fn begin_stop(&mut self, now: Instant) {
        let Some(channel) = self.handle.take_handover() else {
            return self.begin_drain(now, true);
        };
        // Read while the listening sockets are still here.
        let listeners = self.listener_addrs();
        self.begin_drain(now, false);
        self.hand_over_trapped(&channel, &listeners, now);
        // Dropped here: the last worker's drop closes the channel, and the new
        // process knows it has everything.
    }

    /// Each listener's address (by its index in the config), from the listening
    /// sockets while this loop still has them: what names a handed connection's
    /// listener.
    fn listener_addrs(&self) -> Vec<Option<SocketAddr>> {
        let mut addrs = vec![None; self.config.listeners.len()];
        for listening in &self.listeners {
            if let (Some(slot), Ok(addr)) = (
                addrs.get_mut(usize::from(listening.listener)),
                listening.socket.local_addr(),
            ) {
                slot.get_or_insert(addr);
            }
        }
        addrs
    }

    /// Hands every trapped connection to the new process over `channel`
    /// (`listeners`: from [`Server::listener_addrs`]); those it cannot are left to
    /// the drain.
    fn hand_over_trapped(
        &mut self,
        channel: &Mutex<UnixStream>,
        listeners: &[Option<SocketAddr>],
        now: Instant,
    ) {
        let trapped = self.held.trapped();
        if trapped == 0 {
            return;
        }
        match self.held.hand_over_trapped(channel, listeners, now) {
            (handed, None) => info!(
                target: LOG_TARGET,
                "upgrade: handed {handed} trapped connections to the new process"
            ),
            (handed, Some(err)) => warn!(
                target: LOG_TARGET,
                "upgrade: handed {handed} of {trapped} trapped connections to the new process, \
                 then could not send more ({err}); the rest are closed with the drain"
            ),
        }
    }

    /// Adopts trapped connections the process that upgraded to this one handed over,
    /// each under the listener whose socket it came through (else the first tarpit
    /// listener, else the first).
    pub(super) fn adopt_handed(&mut self, handed: Vec<Handed>, now: Instant) {
        let count = handed.len();
        let mut adopted = 0;
        for handed in handed {
            let listener = self.listener_of(handed.record.listener);
            adopted += usize::from(self.held.adopt(handed, listener, now));
        }
        debug!(
            target: LOG_TARGET,
            "upgrade: adopted {adopted} of {count} handed trapped connections"
        );
    }

    /// The index of the listener whose socket is bound to `addr`; else the first
    /// tarpit listener's, else the first's.
    fn listener_of(&self, addr: SocketAddr) -> u16 {
        let bound = self
            .listeners
            .iter()
            .find(|listening| listening.socket.local_addr().ok() == Some(addr))
            .map(|listening| listening.listener);
        bound.unwrap_or_else(|| {
            let tarpit = self
                .config
                .listeners
                .iter()
                .position(|listener| listener.tarpit.is_some());
            tarpit
                .and_then(|index| u16::try_from(index).ok())
                .unwrap_or(0)
        })
    }
}
