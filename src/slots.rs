//! The slots held connections take, counted apart from the connections themselves:
//! `--max-per-ip` per client address, the PROXY header waiters (bounded apart from
//! the greeted ones, and per socket peer under `--max-per-ip`), and the greet delays
//! (`--max-delayed`). A connection is counted in as it is held in a phase and out as
//! it leaves it ([`Slots::count_in`], [`Slots::count_out`]); the holder asks here
//! whether one more fits.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::admission::ServerLimits;
use crate::config::Config;
use crate::connection::Phase;
use crate::per_ip::PerIpLimit;

#[cfg(test)]
mod tests;

/// What the held connections of one server take of its limits.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Held connections per client address, when `--max-per-ip` is set.
    per_ip: Option<PerIpLimit>,
    /// Connections waiting for their PROXY header, bounded apart from the greeted
    /// ones so that header-less connections cannot take every slot.
    header_waiters: usize,
    /// The most connections that may wait for their header at once.
    max_header_waiters: usize,
    /// Header waiters per socket peer (the client is not known yet), when
    /// `--max-per-ip` is set: its limit applies to them too.
    header_waiters_per_peer: Option<PerIpLimit>,
    /// Connections in their greet delay (held, but not counted against
    /// `--max-connections`).
    delayed: usize,
    /// `--max-delayed`: the most that may be in their greet delay at once.
    max_delayed: usize,
    /// Trapped connections (`--tarpit`: held, but not counted against
    /// `--max-connections` nor `--max-per-ip`) in this worker.
    trapped: usize,
    /// Trapped connections in the whole server: every worker's count, shared.
    server_trapped: Arc<AtomicUsize>,
    /// `--max-trapped`: the most that may be trapped at once in the whole server.
    max_trapped: usize,
    /// Trapped connections per client address, when `--max-trapped-per-ip` is set.
    trapped_per_ip: Option<PerIpLimit>,
}

impl Slots {
    /// Nothing held yet, under `config`'s limits.
    pub(crate) fn new(config: &Config) -> Self {
        Slots {
            per_ip: config.max_per_ip.map(PerIpLimit::new),
            header_waiters: 0,
            max_header_waiters: max_header_waiters(config.max_connections),
            header_waiters_per_peer: config.max_per_ip.map(PerIpLimit::new),
            delayed: 0,
            max_delayed: config.max_delayed,
            trapped: 0,
            server_trapped: Arc::default(),
            max_trapped: config.max_trapped,
            trapped_per_ip: config.max_trapped_per_ip.map(PerIpLimit::new),
        }
    }

    /// A reload's limits, for what is held from now on. A `--max-per-ip` set anew
    /// counts the connections already `held` (each one's phase and address).
    pub(crate) fn reconfigure(
        &mut self,
        config: &Config,
        held: impl Iterator<Item = (Phase, IpAddr)>,
    ) {
        let held: Vec<(Phase, IpAddr)> = held.collect();
        self.reconfigure_trapped(config, &held);
        let held = held.into_iter();
        match (
            config.max_per_ip,
            &mut self.per_ip,
            &mut self.header_waiters_per_peer,
        ) {
            (Some(limit), Some(per_ip), Some(per_peer)) => {
                per_ip.set_limit(limit);
                per_peer.set_limit(limit);
            }
            (Some(limit), _, _) => {
                let (mut per_ip, mut per_peer) = (PerIpLimit::new(limit), PerIpLimit::new(limit));
                for (phase, ip) in held {
                    match phase {
                        Phase::Header => per_peer.hold(ip),
                        Phase::Trapped { .. } => {}
                        _ => per_ip.hold(ip),
                    }
                }
                self.per_ip = Some(per_ip);
                self.header_waiters_per_peer = Some(per_peer);
            }
            (None, _, _) => {
                self.per_ip = None;
                self.header_waiters_per_peer = None;
            }
        }
        self.max_header_waiters = max_header_waiters(config.max_connections);
        self.max_delayed = config.max_delayed;
    }

    /// A reload's `--max-trapped` and `--max-trapped-per-ip`; a per-address limit
    /// set anew counts the trapped connections among `held`.
    fn reconfigure_trapped(&mut self, config: &Config, held: &[(Phase, IpAddr)]) {
        self.max_trapped = config.max_trapped;
        match (config.max_trapped_per_ip, &mut self.trapped_per_ip) {
            (Some(limit), Some(per_ip)) => per_ip.set_limit(limit),
            (Some(limit), None) => {
                let mut per_ip = PerIpLimit::new(limit);
                for (_, ip) in held.iter().filter(|(phase, _)| phase.is_trapped()) {
                    per_ip.hold(*ip);
                }
                self.trapped_per_ip = Some(per_ip);
            }
            (None, _) => self.trapped_per_ip = None,
        }
    }

    /// How many held connections are trapped.
    #[inline]
    pub(crate) fn trapped(&self) -> usize {
        self.trapped
    }

    /// Counts this worker's trapped connections in `server_trapped`, the count
    /// every worker of the server shares (before any is trapped), so that
    /// `--max-trapped` bounds the whole server. Two workers that trap at the same
    /// moment may each see the last slot free: the bound holds within workers - 1.
    pub(crate) fn share_trapped(&mut self, server_trapped: &Arc<AtomicUsize>) {
        server_trapped.fetch_add(self.trapped, Ordering::Relaxed);
        self.server_trapped = Arc::clone(server_trapped);
    }

    /// Whether `--max-trapped` connections are trapped in the whole server.
    pub(crate) fn trap_full(&self) -> bool {
        self.server_trapped.load(Ordering::Relaxed) >= self.max_trapped
    }

    /// Whether other workers share the trapped count: then a trap that ends in one
    /// of them frees a slot this one cannot see without looking.
    pub(crate) fn trapped_shared(&self) -> bool {
        Arc::strong_count(&self.server_trapped) > 1
    }

    /// How many held connections are in their greet delay.
    #[inline]
    pub(crate) fn delayed(&self) -> usize {
        self.delayed
    }

    /// Whether socket peer `ip` may have one more connection waiting for its PROXY
    /// header (`--max-per-ip`).
    pub(crate) fn admits_header_waiter(&self, ip: IpAddr) -> bool {
        self.header_waiters_per_peer
            .as_ref()
            .is_none_or(|limit| limit.admits(ip))
    }

    /// Whether the header waiters have every slot they may have: then the oldest
    /// makes room for a newcomer.
    pub(crate) fn header_waiters_full(&self) -> bool {
        self.header_waiters >= self.max_header_waiters
    }

    /// Counts a connection that is now held in `phase` from `ip`: a header waiter for
    /// its socket peer, any other for its client address.
    pub(crate) fn count_in(&mut self, phase: Phase, ip: IpAddr) {
        if is_delaying(phase) {
            self.delayed += 1;
        }
        if phase.is_trapped() {
            self.trapped += 1;
            self.server_trapped.fetch_add(1, Ordering::Relaxed);
            if let Some(per_ip) = &mut self.trapped_per_ip {
                per_ip.hold(ip);
            }
        } else if phase == Phase::Header {
            self.header_waiters += 1;
            if let Some(per_peer) = &mut self.header_waiters_per_peer {
                per_peer.hold(ip);
            }
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.hold(ip);
        }
    }

    /// Undoes [`Slots::count_in`] for a connection that leaves `phase`.
    pub(crate) fn count_out(&mut self, phase: Phase, ip: IpAddr) {
        if is_delaying(phase) {
            self.delayed -= 1;
        }
        if phase.is_trapped() {
            self.trapped -= 1;
            self.server_trapped.fetch_sub(1, Ordering::Relaxed);
            if let Some(per_ip) = &mut self.trapped_per_ip {
                per_ip.release(ip);
            }
        } else if phase == Phase::Header {
            self.header_waiters -= 1;
            if let Some(per_peer) = &mut self.header_waiters_per_peer {
                per_peer.release(ip);
            }
        } else if let Some(per_ip) = &mut self.per_ip {
            per_ip.release(ip);
        }
    }

    /// A held connection from `ip` moved from phase `before` to `after`: out of its
    /// delay, its delay slot is free; out of its trap (a dripped greeting all out,
    /// closed the ordinary way), its trap slot is, and it takes an ordinary one.
    pub(crate) fn moved(&mut self, before: Phase, after: Phase, ip: IpAddr) {
        if is_delaying(before) && !is_delaying(after) {
            self.delayed -= 1;
        }
        if before.is_trapped() && !after.is_trapped() {
            self.count_out(before, ip);
            self.count_in(after, ip);
        }
    }
}

impl ServerLimits for Slots {
    #[inline]
    fn admits_client(&self, client: SocketAddr) -> bool {
        // The address is taken only if there is a limit: not on the fast path.
        self.per_ip
            .as_ref()
            .is_none_or(|limit| limit.admits(client.ip()))
    }

    fn delay_full(&self) -> bool {
        self.delayed >= self.max_delayed
    }

    fn admits_trapped(&self, client: SocketAddr) -> bool {
        !self.trap_full()
            && self
                .trapped_per_ip
                .as_ref()
                .is_none_or(|limit| limit.admits(client.ip()))
    }
}

/// Whether `phase` is a greet delay's.
fn is_delaying(phase: Phase) -> bool {
    matches!(phase, Phase::Delaying { .. })
}

/// The most connections that may wait for their PROXY header at once: a quarter of
/// the connection limit (at least one), so that the rest stays for clients that are
/// being greeted. A header normally comes with the first segment and never waits.
fn max_header_waiters(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}
