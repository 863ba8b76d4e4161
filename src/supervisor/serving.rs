//! What the caller of [`Supervisor::run`](super::Supervisor::run) is told once this
//! process serves, and the listening lines `greeter-server` prints from it.

use std::io::Write;
use std::net::SocketAddr;

use log::warn;

use crate::workers::WorkersView;

/// The log target of the listening lines' warning: the binary's crate name, where it
/// was logged before it had a room here.
const LOG_TARGET: &str = "greeter_server";

/// What is serving once [`Supervisor::run`](super::Supervisor::run) has started
/// everything.
#[derive(Debug)]
pub struct Serving {
    /// The addresses the workers listen on, in order, with the real ports.
    pub addrs: Vec<SocketAddr>,
    /// The metrics endpoint's address, with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// The workers' published state.
    pub view: WorkersView,
}

/// Prints one `listening on ADDR` line per listener, in the order given, and nothing
/// else on stdout, for scripts that start the server on --port 0. On a thread of its
/// own: a stdout nobody reads blocks the print, and must not block the supervisor
/// thread that answers signals.
pub fn announce(addrs: Vec<SocketAddr>) {
    let print = |addrs: &[SocketAddr]| {
        let mut stdout = std::io::stdout().lock();
        let announced = addrs
            .iter()
            .try_for_each(|addr| writeln!(stdout, "listening on {addr}"))
            .and_then(|()| stdout.flush());
        if let Err(err) = announced {
            warn!(target: LOG_TARGET, "cannot write the listening lines to stdout: {err}");
        }
    };
    let on_thread = addrs.clone();
    let spawned = std::thread::Builder::new()
        .name("greeter-stdout".to_owned())
        .spawn(move || print(&on_thread));
    if spawned.is_err() {
        print(&addrs);
    }
}
