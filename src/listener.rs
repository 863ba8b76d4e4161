//! Where the listening socket comes from: bound here (socket2: backlog, `SO_REUSEADDR`,
//! `SO_SNDBUF`), or passed by systemd socket activation (see sd_listen_fds(3)), so the
//! server can serve a privileged port without ever running as root.

use std::io;
use std::net::SocketAddr;

use listenfd::ListenFd;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::error::StartupError;

/// Binds a listening TCP socket with an explicit backlog (`std` and mio use 128, which
/// drops SYNs under bursts) and `SO_REUSEADDR`, so a restart is not refused while old
/// connections sit in TIME_WAIT. Never `SO_REUSEPORT`: a second server on the same
/// address must fail, not silently take half the connections (workers share this one
/// socket instead). With `send_buffer`, `SO_SNDBUF` is set here once and every accepted
/// socket inherits it.
///
/// # Errors
/// A one-line [`StartupError`] naming the address, the cause and the likely fix.
pub fn listen(
    addr: SocketAddr,
    backlog: i32,
    send_buffer: Option<usize>,
) -> Result<std::net::TcpListener, StartupError> {
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
            _ => None,
        };
        StartupError::new(format!("cannot listen on {addr}"), err, hint)
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

const HINT: &str = "the .socket unit needs one ListenStream= with a TCP address";

/// The listening TCP socket systemd passed, or `None` when none was passed (then the
/// server binds its own).
///
/// # Errors
/// A [`StartupError`] when sockets were passed but the first is not a listening TCP
/// socket.
pub fn from_systemd() -> Result<Option<std::net::TcpListener>, StartupError> {
    let mut passed = ListenFd::from_env();
    if passed.len() == 0 {
        return Ok(None);
    }
    let fail = |err| {
        StartupError::new(
            "cannot serve the socket passed by systemd (fd 3)",
            err,
            Some(HINT),
        )
    };
    let listener = passed
        .take_tcp_listener(0)
        .map_err(fail)?
        .ok_or_else(|| fail(io::Error::other("it was already taken")))?;
    // listenfd checks that it is a TCP socket; it must also be listening.
    if !SockRef::from(&listener).is_listener().map_err(fail)? {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a TCP socket but not a listening one",
        )));
    }
    Ok(Some(listener))
}
