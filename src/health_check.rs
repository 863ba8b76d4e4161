//! `greeter-server --health-check`: is the server these settings describe greeting?
//! For a container's `HEALTHCHECK`, which has no shell to expand variables: it reads
//! the same flags, environment and config file as the server, so the port, the
//! PROXY requirement and the greeting are the config's.
//!
//! It connects to the first listener's first address (a wildcard is reached through
//! loopback), sends a PROXY v2 `LOCAL` header when that listener takes one (served
//! as the socket's own peer, as a load balancer's own check is), reads the whole
//! greeting with the blocking client ([`crate::client`]) and compares it byte for
//! byte. Under socket activation the listeners' addresses are systemd's, not the
//! config's: check those with `greeter-client` instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::client::{fetch_greeting_from, ClientError, ClientOptions};
use crate::config::{Config, ListenerConfig};

/// How long the check waits to connect, and for each read, beyond the listener's
/// `--greet-delay`.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A PROXY protocol v2 header with the `LOCAL` command and no addresses: the
/// connection is the sender's own (a health check), served as its socket's peer.
pub const PROXY_V2_LOCAL: [u8; 16] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
    0x20, // version 2, LOCAL
    0x00, // AF_UNSPEC, UNSPEC
    0x00, 0x00, // no address block
];

/// Why the server is not healthy. Displays as one line naming the address.
#[derive(Debug)]
pub enum Unhealthy {
    /// No whole greeting came (nothing listens, a reset, a timeout, ...).
    Client(ClientError),
    /// Bytes came, but not the greeting.
    WrongGreeting {
        /// The address checked.
        addr: SocketAddr,
        /// What arrived (at most the greeting's length).
        received: Vec<u8>,
        /// The greeting's length.
        expected: usize,
        /// The first byte that differs.
        first_difference: usize,
    },
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Client(ClientError::TooLarge { addr, limit }) => {
                write!(f, "{addr} sent more than the {limit}-byte greeting")
            }
            Unhealthy::Client(err) => err.fmt(f),
            Unhealthy::WrongGreeting {
                addr,
                received,
                expected,
                first_difference,
            } if *first_difference == received.len() => write!(
                f,
                "{addr} sent {} bytes that are not the {expected}-byte greeting \
                 (only its beginning)",
                received.len()
            ),
            Unhealthy::WrongGreeting {
                addr,
                received,
                expected,
                first_difference,
            } => write!(
                f,
                "{addr} sent {} bytes that are not the {expected}-byte greeting \
                 (they differ from byte {first_difference} on)",
                received.len()
            ),
        }
    }
}

impl std::error::Error for Unhealthy {}

/// The address the check connects to for `listen`: loopback for a wildcard.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Checks the first listener of `config`; the address checked, if it greeted.
///
/// # Errors
/// [`Unhealthy`], saying what came instead of the greeting.
pub fn check(config: &Config) -> Result<SocketAddr, Unhealthy> {
    // A config always has a listener with an address (the settings refuse less).
    let Some(listener) = config.listeners.first() else {
        return Err(Unhealthy::Client(ClientError::Empty {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }));
    };
    let mut candidates: Vec<SocketAddr> = listener.addrs.iter().copied().map(target).collect();
    // `::` alone takes IPv4 too: a container may have no IPv6 loopback.
    if let Some(v6) = listener
        .addrs
        .iter()
        .find(|addr| addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    {
        candidates.push(SocketAddr::from((Ipv4Addr::LOCALHOST, v6.port())));
    }
    let mut outcome = None;
    for addr in candidates {
        match check_address(listener, addr) {
            // Only a failed connect tries the next address.
            Err(Unhealthy::Client(err @ ClientError::Connect { .. })) => {
                outcome = Some(Err(Unhealthy::Client(err)));
            }
            other => return other,
        }
    }
    outcome.unwrap_or_else(|| {
        Err(Unhealthy::Client(ClientError::Empty {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }))
    })
}

/// Fetches and compares the greeting of `listener` at `addr`.
fn check_address(listener: &ListenerConfig, addr: SocketAddr) -> Result<SocketAddr, Unhealthy> {
    let greeting: &[u8] = &listener.greeting;
    let greet_delay = listener
        .policy
        .as_ref()
        .map_or(Duration::ZERO, |policy| policy.greet_delay);
    let options = ClientOptions {
        timeout: TIMEOUT + greet_delay,
        // A longer answer is cut off as too large.
        max_bytes: greeting.len(),
    };
    let preamble: &[u8] = match listener.proxy_protocol {
        true => &PROXY_V2_LOCAL,
        false => &[],
    };
    let received = fetch_greeting_from(addr, preamble, &options).map_err(Unhealthy::Client)?;
    if received == greeting {
        return Ok(addr);
    }
    let first_difference = received
        .iter()
        .zip(greeting)
        .position(|(got, want)| got != want)
        .unwrap_or(received.len().min(greeting.len()));
    Err(Unhealthy::WrongGreeting {
        addr,
        received,
        expected: greeting.len(),
        first_difference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_checked_through_loopback() {
        let v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(target(v4), "127.0.0.1:8080".parse().unwrap());
        let v6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(target(v6), "[::1]:8080".parse().unwrap());
        let named: SocketAddr = "192.0.2.7:2222".parse().unwrap();
        assert_eq!(target(named), named);
    }

    #[test]
    fn the_local_header_is_what_the_server_parses_as_local() {
        let parsed = crate::proxy::inspect(&PROXY_V2_LOCAL, true);
        assert_eq!(
            parsed,
            crate::proxy::Header::Complete {
                len: 16,
                client: None
            }
        );
    }
}
