//! systemd socket activation: when started with `LISTEN_FDS`/`LISTEN_PID` (see
//! sd_listen_fds(3)), the server serves the listening socket passed as fd 3 instead of
//! binding one, so it can serve a privileged port without ever running as root.

use std::io;

use listenfd::ListenFd;
use socket2::SockRef;

use crate::error::StartupError;

const HINT: &str = "the .socket unit needs one ListenStream= with a TCP address";

/// The listening TCP socket systemd passed, or `None` when none was passed (then the
/// server binds its own).
///
/// # Errors
/// A [`StartupError`] when sockets were passed but the first is not a listening TCP
/// socket.
pub fn listener_from_systemd() -> Result<Option<std::net::TcpListener>, StartupError> {
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
