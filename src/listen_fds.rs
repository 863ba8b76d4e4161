//! The `LISTEN_FDS` protocol (sd_listen_fds(3)), both ways: the listening sockets
//! passed to this process, by systemd or by the process upgrading to this one, taken
//! and assigned to their listeners; and what an upgrade passes on to the new process
//! (each socket named so that the new process finds its listener, the metrics
//! endpoint's, and the report channel). Binding is `listener.rs`'s job, starting and
//! watching the new process `upgrade/`'s.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::process::Command;

use command_fds::{CommandFdExt, FdMapping};
use listenfd::ListenFd;
use socket2::SockRef;

use crate::config::{Config, ListenerId};
use crate::error::Failure;
use crate::listener::ListeningSocket;

/// The `LISTEN_FDNAMES` name of the metrics endpoint's listening socket.
pub const METRICS_FD_NAME: &str = "metrics";

/// The `LISTEN_FDNAMES` name of the report channel of an upgrade (see
/// [`crate::upgrade`]).
pub const REPORT_FD_NAME: &str = "upgrade-report";

/// How [`fd_name`] names the sockets of port-0 listeners.
pub use crate::config::listener_id::PORT_ZERO_FD_PREFIX;

// Taking what was passed.

/// Sockets passed by the `LISTEN_FDS` protocol: by systemd, or by the process this
/// one upgrades (see [`crate::upgrade`]), which names each (`LISTEN_FDNAMES`).
#[derive(Debug, Default)]
pub struct PassedSockets {
    /// The listening sockets, each with its name (empty if it has none).
    pub listeners: Vec<(std::net::TcpListener, String)>,
    /// The one named `metrics`: the metrics endpoint's listener.
    pub metrics: Option<std::net::TcpListener>,
    /// Whether they came from an upgrading process (an `upgrade-report` was passed
    /// beside them), not from systemd.
    pub from_upgrade: bool,
}

/// How to fix a descriptor systemd passed that is not a listening TCP socket.
const HINT: &str = "each ListenStream= of the .socket unit must be a TCP address";

/// The listening TCP sockets systemd passed (one per `ListenStream=`, in order), or
/// `None` when none was passed (then the server binds its own).
///
/// # Errors
/// A [`Failure`] naming the descriptor when one passed is not a listening TCP
/// socket.
pub fn from_systemd() -> Result<Option<PassedSockets>, Failure> {
    let mut passed = ListenFd::from_env();
    if passed.len() == 0 {
        return Ok(None);
    }
    let names = fd_names();
    let mut sockets = PassedSockets::default();
    for index in 0..passed.len() {
        let name = names.get(index).map(String::as_str).unwrap_or_default();
        if name == REPORT_FD_NAME {
            // Taken already, by the binary's first step.
            sockets.from_upgrade = true;
            continue;
        }
        let fail = |err| {
            Failure::new(
                format!(
                    "cannot serve the socket passed by systemd (fd {})",
                    3 + index
                ),
                err,
                Some(HINT),
            )
        };
        let listener = passed
            .take_tcp_listener(index)
            .map_err(fail)?
            .ok_or_else(|| fail(io::Error::other("it was already taken")))?;
        // listenfd checks that it is a TCP socket; it must also be listening.
        if !SockRef::from(&listener).is_listener().map_err(fail)? {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a TCP socket but not a listening one",
            )));
        }
        if name == METRICS_FD_NAME {
            sockets.metrics = Some(listener);
        } else {
            sockets.listeners.push((listener, name.to_owned()));
        }
    }
    if sockets.listeners.is_empty() {
        return Ok(None);
    }
    Ok(Some(sockets))
}

/// The names of the passed descriptors (`LISTEN_FDNAMES`, colon-separated), in order.
pub fn fd_names() -> Vec<String> {
    std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Assigns passed sockets to the listeners of `config`, each to the listener it is
/// (never by position): the one whose `name` is the socket's name (systemd's
/// `FileDescriptorName=`, or an upgrade's), else the one whose address and port it
/// has, else (a port-0 listener handed over by an upgrade) the port-0 listener of its
/// host at the place its name gives. Sockets that none of these finds go to the one
/// listener of a config that has one unnamed listener.
///
/// # Errors
/// A [`Failure`] naming a socket that no listener is.
pub fn assign_passed(
    sockets: Vec<(std::net::TcpListener, String)>,
    config: &Config,
    from_upgrade: bool,
) -> Result<Vec<ListeningSocket>, Failure> {
    let from = if from_upgrade {
        "handed over by the upgrade"
    } else {
        "passed by systemd"
    };
    let mut assigned = Vec::with_capacity(sockets.len());
    for (socket, name) in sockets {
        let local = socket.local_addr().map_err(|err| {
            Failure::new(
                format!("cannot read the address of a socket {from}"),
                err,
                None,
            )
        })?;
        let has = |addr: &SocketAddr, port: u16| {
            addr.port() == port && (addr.ip() == local.ip() || addr.ip().is_unspecified())
        };
        let listeners = &config.listeners;
        let named = listeners
            .iter()
            .position(|listener| listener.id.name.as_deref() == Some(name.as_str()));
        let by_address = || {
            listeners
                .iter()
                .position(|listener| listener.addrs.iter().any(|addr| has(addr, local.port())))
        };
        let port_zero = || {
            let nth: usize = name.strip_prefix(PORT_ZERO_FD_PREFIX)?.parse().ok()?;
            listeners.iter().position(|listener| {
                listener.id.name.is_none()
                    && listener.id.port == 0
                    && listener.id.nth == nth
                    && listener.addrs.iter().any(|addr| has(addr, 0))
            })
        };
        // The one unnamed listener of a config is every socket's (its host or port
        // changes only at a restart: a reload says the same).
        let only = || (listeners.len() == 1 && listeners[0].id.name.is_none()).then_some(0);
        let listener = named.or_else(by_address).or_else(port_zero).or_else(only);
        let Some(listener) = listener else {
            let hint = if from_upgrade {
                "its table is gone or names another host or port: restore it, or restart to apply that"
            } else {
                "give each ListenStream= of the .socket unit a [[listener]] with its host and port, or FileDescriptorName= and a listener of that name"
            };
            return Err(Failure::new(
                format!("cannot serve the socket on {local} {from}"),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no listener has its name, or its address and port",
                ),
                Some(hint),
            ));
        };
        assigned.push(ListeningSocket { socket, listener });
    }
    Ok(assigned)
}

// Passing on, at an upgrade.

/// The `LISTEN_FDNAMES` name an upgrade hands the sockets of listener `id` on with:
/// its name; for a port-0 listener its place among those of its hosts
/// (`port0-N`: its port was picked at bind, so no table names it); else
/// `listener` (its table names its address and port).
pub fn fd_name(id: &ListenerId) -> String {
    match (&id.name, id.port) {
        (Some(name), _) => name.clone(),
        (None, 0) => format!("{PORT_ZERO_FD_PREFIX}{}", id.nth),
        (None, _) => "listener".to_owned(),
    }
}

/// The sockets an upgrade hands on: duplicates, kept while this process lives.
#[derive(Debug, Default)]
pub struct Handover {
    /// Each listening socket with the name it is handed on with, which tells the new
    /// process which of its listeners it is ([`fd_name`]).
    pub listeners: Vec<(std::net::TcpListener, String)>,
    /// The metrics endpoint's listening socket, with `--metrics`.
    pub metrics: Option<std::net::TcpListener>,
}

impl Handover {
    /// Passes duplicates of the sockets, and `report` (the new process's end of the
    /// report channel) last, to the process `command` starts: at fd 3 and up, counted
    /// in `LISTEN_FDS` and named in `LISTEN_FDNAMES`. `LISTEN_PID` is left for the
    /// process that execs the new binary to set to its own pid.
    ///
    /// # Errors
    /// If a socket cannot be duplicated, or the descriptors cannot be mapped.
    pub fn pass_to(&self, command: &mut Command, report: OwnedFd) -> io::Result<()> {
        let mut passed = Vec::new();
        let mut names = Vec::new();
        for (socket, name) in &self.listeners {
            passed.push(OwnedFd::from(socket.try_clone()?));
            names.push(name.clone());
        }
        if let Some(metrics) = &self.metrics {
            passed.push(OwnedFd::from(metrics.try_clone()?));
            names.push(METRICS_FD_NAME.to_owned());
        }
        passed.push(report);
        names.push(REPORT_FD_NAME.to_owned());
        let count = passed.len();
        let mappings = passed
            .into_iter()
            .zip(3..)
            .map(|(parent_fd, child_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        command
            .env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .fd_mappings(mappings)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        Ok(())
    }
}

/// The descriptor of the report channel a process upgrading to this one passed, if
/// it did and the descriptors are this process's (`LISTEN_PID`).
pub fn report_fd() -> Option<RawFd> {
    let passed: usize = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let index = fd_names().iter().position(|name| name == REPORT_FD_NAME)?;
    if !ours || index >= passed {
        return None;
    }
    Some(3 + RawFd::try_from(index).ok()?)
}
