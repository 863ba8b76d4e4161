//! A client's address as a held connection keeps it: 24 bytes where a `SocketAddr`
//! takes 32, since every held connection pays for it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A `SocketAddr` without the IPv6 flow label (which a peer's address never carries
/// any use for): an IPv4 address is kept in its IPv4-mapped form and marked as such,
/// so that it comes back as it went in, and an IPv6 one keeps its scope.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr {
    ip: Ipv6Addr,
    scope_id: u32,
    port: u16,
    v4: bool,
}

impl From<SocketAddr> for PeerAddr {
    #[inline]
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => PeerAddr {
                ip: v4.ip().to_ipv6_mapped(),
                scope_id: 0,
                port: v4.port(),
                v4: true,
            },
            SocketAddr::V6(v6) => PeerAddr {
                ip: *v6.ip(),
                scope_id: v6.scope_id(),
                port: v6.port(),
                v4: false,
            },
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    #[inline]
    fn from(peer: PeerAddr) -> Self {
        if peer.v4 {
            let [.., a, b, c, d] = peer.ip.octets();
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), peer.port))
        } else {
            SocketAddr::V6(SocketAddrV6::new(peer.ip, peer.port, 0, peer.scope_id))
        }
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", SocketAddr::from(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_back_as_they_went_in_in_24_bytes() {
        assert_eq!(std::mem::size_of::<PeerAddr>(), 24);
        for text in [
            "127.0.0.1:1",
            "203.0.113.9:65535",
            "0.0.0.0:0",
            "[::1]:17",
            // An IPv4-mapped IPv6 peer (a dual-stack socket's) stays IPv6.
            "[::ffff:127.0.0.1]:4000",
            "[2001:db8::7]:443",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(SocketAddr::from(PeerAddr::from(addr)), addr, "{text}");
        }
        let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 22, 0, 3));
        assert_eq!(SocketAddr::from(PeerAddr::from(scoped)), scoped);
        assert_eq!(
            SocketAddr::from(PeerAddr::from(scoped)).to_string(),
            "[fe80::1%3]:22"
        );
    }
}
