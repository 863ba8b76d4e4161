//! Where the listening sockets come from: bound here (socket2: backlog, `SO_REUSEADDR`,
//! `SO_SNDBUF`, `IPV6_V6ONLY`), or passed by systemd socket activation or an upgrade
//! (taken and assigned to their listeners in [`crate::listen_fds`]), so the server can
//! serve a privileged port without ever running as root.
//!
//! The `IPV6_V6ONLY` rule, set explicitly so that `net.ipv6.bindv6only` does not
//! decide: an IPv6 wildcard (`::`) is dual-stack (it also takes IPv4 clients) unless an
//! IPv4 address is listened on too (`--host 0.0.0.0 --host ::`), where it takes IPv6
//! only and the two do not conflict; any other IPv6 address takes IPv6 only.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::error::Failure;

/// A listening socket and the listener it serves (its index in
/// [`Config::listeners`]), which decides what its connections get.
#[derive(Debug)]
pub struct ListeningSocket {
    /// The bound, listening socket.
    pub socket: std::net::TcpListener,
    /// The index of its listener in [`Config::listeners`].
    pub listener: usize,
}

/// Binds every listener of `config`, in order, each as [`listen_all`] does.
///
/// # Errors
/// As [`listen_all`]; and before binding anything, as [`check_addresses`].
pub fn listen_config(config: &Config) -> Result<Vec<ListeningSocket>, Failure> {
    check_addresses(config)?;
    let mut sockets = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        for socket in listen_all(&listener.addrs, config.backlog, config.send_buffer)? {
            sockets.push(ListeningSocket {
                socket,
                listener: index,
            });
        }
    }
    Ok(sockets)
}

/// Refuses, with no socket yet (start-up and `--check-config` run it), addresses of
/// `config` that cannot all be listened on: two listeners naming the same address and
/// port, or overlapping (a wildcard and an address of its family on one port), and the
/// same within one listener (see [`listen_all`]). Port 0 differs between listeners.
///
/// # Errors
/// A [`Failure`] naming the address and the fix.
pub fn check_addresses(config: &Config) -> Result<(), Failure> {
    let fixed: Vec<SocketAddr> = config
        .listeners
        .iter()
        .flat_map(|listener| listener.addrs.iter().copied())
        .filter(|addr| addr.port() != 0)
        .collect();
    refuse_overlaps(&fixed)?;
    for listener in &config.listeners {
        refuse_overlaps(&listener.addrs)?;
    }
    Ok(())
}

/// Binds a listening TCP socket with an explicit backlog (`std` and mio use 128, which
/// drops SYNs under bursts) and `SO_REUSEADDR`, so a restart is not refused while old
/// connections sit in TIME_WAIT. Never `SO_REUSEPORT`: a second server on the same
/// address must fail, not silently take half the connections (workers share this one
/// socket instead). With `send_buffer`, `SO_SNDBUF` is set here once and every accepted
/// socket inherits it.
///
/// # Errors
/// A one-line [`Failure`] naming the address, the cause and the likely fix.
pub fn listen(
    addr: SocketAddr,
    backlog: i32,
    send_buffer: Option<usize>,
) -> Result<std::net::TcpListener, Failure> {
    listen_with(addr, backlog, send_buffer, addr.ip().is_unspecified())
}

/// How many times [`listen_all`] tries a port for several addresses with port 0 (a
/// port found free can be taken by someone else before it is bound).
const PORT_ATTEMPTS: usize = 32;

/// Binds every address of `addrs`, in order, as [`listen`] does. With several
/// addresses and port 0, one port free on every address is found first (see
/// `port_free_everywhere`) and all bind it (`--port` applies to all); if it is taken
/// meanwhile, all are released and another is tried, up to `PORT_ATTEMPTS` times.
/// IPv6 sockets follow the `IPV6_V6ONLY` rule of this module.
///
/// # Errors
/// As [`listen`], for the first address that fails; and before binding anything, if
/// two of the addresses overlap (a wildcard and an address of its family), which the
/// kernel would refuse as "address in use".
pub fn listen_all(
    addrs: &[SocketAddr],
    backlog: i32,
    send_buffer: Option<usize>,
) -> Result<Vec<std::net::TcpListener>, Failure> {
    refuse_overlaps(addrs)?;
    let picks_port = addrs.len() > 1 && addrs.iter().all(|addr| addr.port() == 0);
    let mut attempt = 1;
    loop {
        let mut chosen = addrs.to_vec();
        if picks_port {
            if let Some(port) = port_free_everywhere(addrs) {
                chosen.iter_mut().for_each(|addr| addr.set_port(port));
            }
        }
        match bind_each(&chosen, backlog, send_buffer) {
            Err((index, err)) if picks_port && index > 0 && attempt < PORT_ATTEMPTS => {
                log::debug!(target: "greeter::listener", "listen: port taken on another address ({err}); trying another");
                attempt += 1;
            }
            Err((_, err)) => return Err(err),
            Ok(listeners) => return Ok(listeners),
        }
    }
}

/// A port that no socket of any address uses now, or `None` if the kernel cannot be
/// asked (then the first address picks one, as with a single address).
///
/// Asking for port 0 on one address is not enough: Linux then prefers a port that is
/// already bound on *other* addresses (it keeps unused ports for outgoing
/// connections), so the port the first address gets is often taken on the next one.
/// A wildcard socket without `SO_REUSEADDR` (dual-stack when IPv6 is listened on)
/// conflicts with every binding of its port, so the port it gets is free everywhere.
/// It is closed at once, before the listeners bind.
fn port_free_everywhere(addrs: &[SocketAddr]) -> Option<u16> {
    let wildcard: SocketAddr = if addrs.iter().any(SocketAddr::is_ipv6) {
        "[::]:0".parse().ok()?
    } else {
        "0.0.0.0:0".parse().ok()?
    };
    let probe = Socket::new(
        Domain::for_address(wildcard),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .ok()?;
    if wildcard.is_ipv6() {
        probe.set_only_v6(false).ok()?;
    }
    probe.bind(&wildcard.into()).ok()?;
    probe
        .local_addr()
        .ok()?
        .as_socket()
        .map(|bound| bound.port())
}

/// One try of [`listen_all`]: the listeners, or the index of the address that failed.
fn bind_each(
    addrs: &[SocketAddr],
    backlog: i32,
    send_buffer: Option<usize>,
) -> Result<Vec<std::net::TcpListener>, (usize, Failure)> {
    let with_ipv4 = addrs.iter().any(SocketAddr::is_ipv4);
    let mut port = None;
    let mut listeners = Vec::with_capacity(addrs.len());
    for (index, &addr) in addrs.iter().enumerate() {
        let mut addr = addr;
        if addr.port() == 0 {
            if let Some(port) = port {
                addr.set_port(port);
            }
        }
        let dual_stack = addr.ip().is_unspecified() && !with_ipv4;
        let listener =
            listen_with(addr, backlog, send_buffer, dual_stack).map_err(|err| (index, err))?;
        if port.is_none() {
            port = listener.local_addr().ok().map(|bound| bound.port());
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Refuses two addresses of this server that the kernel would not bind together: the
/// same port, and a wildcard beside an address of its family (an IPv6 wildcard alone
/// is dual-stack, so it also covers IPv4, but then no IPv4 address is listed).
fn refuse_overlaps(addrs: &[SocketAddr]) -> Result<(), Failure> {
    for (index, later) in addrs.iter().enumerate() {
        for earlier in &addrs[..index] {
            if earlier == later {
                return Err(Failure::new(
                    format!("cannot listen on {later}"),
                    io::Error::new(io::ErrorKind::AddrInUse, "two listeners name it"),
                    Some("give each [[listener]] its own host and port"),
                ));
            }
            let same_family = earlier.is_ipv4() == later.is_ipv4();
            let one_wildcard = earlier.ip().is_unspecified() || later.ip().is_unspecified();
            if earlier.port() == later.port() && same_family && one_wildcard {
                return Err(Failure::new(
                    format!("cannot listen on {later}"),
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("it overlaps {earlier}, which this server listens on too"),
                    ),
                    Some("the wildcard already takes every address of its family: drop one of the two --host"),
                ));
            }
        }
    }
    Ok(())
}

/// [`listen`], with `IPV6_V6ONLY` off (`dual_stack`) or on for an IPv6 address.
fn listen_with(
    addr: SocketAddr,
    backlog: i32,
    send_buffer: Option<usize>,
    dual_stack: bool,
) -> Result<std::net::TcpListener, Failure> {
    let fail = |err: io::Error| {
        let hint = match err.kind() {
            io::ErrorKind::AddrInUse => Some(
                "another process is listening on this port: stop it, or choose another \
                 --port (0 picks a free one)",
            ),
            io::ErrorKind::PermissionDenied => {
                Some("ports below 1024 need privileges: use a higher --port")
            }
            io::ErrorKind::AddrNotAvailable => {
                Some("no local interface has this address: check --host")
            }
            io::ErrorKind::InvalidInput => match addr.ip() {
                IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some() => {
                    Some("an IPv4-mapped IPv6 address: give --host its IPv4 form, e.g. 127.0.0.1")
                }
                // fe80::/10 (`Ipv6Addr::is_unicast_link_local` is newer than the MSRV).
                IpAddr::V6(ip) if ip.segments()[0] & 0xffc0 == 0xfe80 => Some(
                    "a link-local address needs its interface: add %IFACE, e.g. --host fe80::1%eth0",
                ),
                _ => None,
            },
            _ => None,
        };
        Failure::new(format!("cannot listen on {addr}"), err, hint)
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack).map_err(fail)?;
    }
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

/// How long the kernel keeps a new connection on a PROXY listener to itself, waiting
/// for its first bytes, before it is accepted anyway (`TCP_DEFER_ACCEPT`, in seconds:
/// the kernel rounds it up to its SYN-ACK retransmissions, about 1 s).
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

/// Sets `TCP_DEFER_ACCEPT` on a listening socket whose connections begin with a
/// PROXY header (as nginx's `deferred` and HAProxy's `defer-accept` do): the kernel
/// hands a connection to `accept` only once its first bytes (the header, from a load
/// balancer) are there, so it is greeted by one `recv` and a `write` instead of being
/// held until its header comes. A client that sends nothing is still accepted, about
/// a second later, and `--proxy-timeout` runs from then; a half-open scan never
/// reaches the server. Best effort: on failure connections are accepted at once, as
/// before, and the header waited for.
pub(crate) fn defer_accept(socket: &impl AsFd) {
    let fd = socket.as_fd().as_raw_fd();
    let seconds = DEFER_ACCEPT_SECONDS;
    // SAFETY: `fd` is a live descriptor borrowed for this call, and the option value
    // is a c_int the kernel only reads, of exactly the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!(
            target: "greeter::listener",
            "cannot set TCP_DEFER_ACCEPT on a PROXY listener: {}",
            io::Error::last_os_error()
        );
    }
}
