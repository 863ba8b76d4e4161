//! `--max-per-ip`: how many connections each client address holds at once, so that
//! one address cannot take every slot (as xinetd's `per_source`).

use std::collections::HashMap;
use std::net::IpAddr;

/// Held connections per client address, against a limit.
#[derive(Debug)]
pub struct PerIpLimit {
    /// The most connections one address may hold at once.
    limit: u32,
    /// Addresses that hold at least one connection; an address leaves the map when
    /// its last connection closes, so the map never outgrows the held connections.
    held: HashMap<IpAddr, u32>,
}

impl PerIpLimit {
    /// No address holds anything yet.
    pub fn new(limit: u32) -> Self {
        PerIpLimit {
            limit,
            held: HashMap::new(),
        }
    }

    /// Changes the limit; what is held stays counted (an address above a lowered
    /// limit keeps its connections and gets no more until it is below).
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Whether `ip` may hold one more connection.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.held.get(&ip).copied().unwrap_or(0) < self.limit
    }

    /// Records that `ip` holds one more connection.
    pub fn hold(&mut self, ip: IpAddr) {
        *self.held.entry(ip).or_insert(0) += 1;
    }

    /// Records that one of `ip`'s connections closed.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(count) = self.held.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_admitted_up_to_its_limit_and_again_after_a_release() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let mut limit = PerIpLimit::new(2);
        limit.hold(a);
        limit.hold(a);
        assert!(!limit.admits(a));
        assert!(limit.admits(b), "limits are per address");
        limit.release(a);
        assert!(limit.admits(a));
        limit.release(a);
        assert!(
            limit.held.is_empty(),
            "an address with nothing held is forgotten"
        );
    }
}
