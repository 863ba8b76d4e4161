//! greeter: a TCP greeting server built to serve very many clients from one small
//! event loop.
//!
//! A client connects; the server sends the greeting (by default the 38 bytes
//! `Hello there! This is the hosted server`) and closes the connection. The server is
//! one thread running a mio readiness loop; it writes the greeting the moment a
//! connection is accepted, and only a connection whose write was partial, whose
//! greeting still waits in the kernel, or whose peer sent data is kept in a slab and
//! registered with the poll.
//!
//! # Layout
//! A connection's life, in the order it happens:
//! - [`listener`]: binding the listening sockets (with their backlog and send buffer,
//!   one port for all).
//! - [`listen_fds`]: the `LISTEN_FDS` protocol both ways: the sockets passed by
//!   systemd or an upgrade, assigned to their listeners by name or address, and what
//!   an upgrade passes on (the sockets, their names, the report channel).
//! - `accept` (internal): which accept errors are skipped and which pause accepting;
//!   the accept gate (ready, budget spent, at capacity, paused).
//! - [`server`]: the [`Server`]: the loop (`run`/`turn`), accepting, the drain, and
//!   counting and logging every close.
//! - `connection` (internal): one connection: its phase (PROXY header, writing,
//!   greet delay, flushing, lingering) and the one method that advances it and says what happens
//!   next (`Step`); `peer_addr` (internal): the client's address in the 24 bytes a
//!   held connection keeps.
//! - `held` (internal): the connections that must wait: the slab, one deadline queue
//!   per timer, per-address and header-waiter accounting; it applies each `Step`, and
//!   advances a fresh connection once (the fast path, never held).
//! - `proxy` (internal): `--proxy-protocol`: the header that names the real client.
//! - [`access`]: a listener's access policy: `--allow`/`--deny` by longest prefix,
//!   and what the checks after it need (the rate table, the greet delay).
//! - [`rate`]: `--max-rate-per-ip`: each source's budget in a bounded LRU table.
//! - [`pass`]: the greet delay's pass table: sources that waited it out silently
//!   are greeted at once for `--pass-ttl`.
//! - [`peer_input`]: the class of what a peer sent first (`first=` of `CLOSE`).
//! - `socket` (internal): the socket primitives (write, FIN, `TCP_INFO`, discard) and
//!   the kernel facts they rely on.
//! - `close` (internal, [`CloseReason`] public): why a connection closed, with its
//!   names in one table, and the `ACCEPT` and `CLOSE` lines.
//! - [`deadlines`]: the FIFO of fixed-duration deadlines, the loop's only timer.
//! - [`totals`]: the counters behind the `totals` log line, one per close reason.
//!
//! Around it:
//! - [`config`]: the settings: every flag ([`config::flags`]), its file key and variable
//!   ([`config::keys`]), the TOML file ([`config::file`]), the layers and `[[listener]]`
//!   tables ([`config::settings`]), and the checked [`Config`] they turn into.
//! - [`cli`]: flag groups the binaries share (the server to talk to, the greeting).
//! - [`greeting`]: [`greeting::Greeting`], the bytes every connection is sent from
//!   (shared, one word to hold); the default greeting; greeting files read once,
//!   checked.
//! - [`startup`]: the checks, the binding and the start-up lines before serving.
//! - [`supervisor`]: runs the workers, the reload thread and the metrics until every
//!   worker stops, answering requests (drain, stop now, reload, log totals).
//! - [`handle`]: the [`ServerHandle`] other threads use to stop a server or read its
//!   totals.
//! - [`workers`]: [`Workers`]: one server per thread (`--workers`) on one shared
//!   listening socket; a running handle to stop them and sum their totals.
//! - `wake_one` (internal): the shared listening socket registered with
//!   `EPOLLEXCLUSIVE`, so that an arrival wakes one worker, not all.
//! - `per_ip` (internal): the `--max-per-ip` accounting.
//! - [`metrics`]: `--metrics`, a folder: what is served, read from the snapshots the
//!   loops publish ([`metrics::registry`]); the two exposition formats and the
//!   `Accept` negotiation between them ([`metrics::format`], [`metrics::negotiate`]);
//!   the routes `/metrics`, `/healthz`, `/livez` ([`metrics::endpoint`]); and how they
//!   are served, from a small readiness loop of its own bounded in clients, time and
//!   bytes ([`metrics::http`]).
//! - [`reload`]: SIGHUP: the reload thread re-reads the config and greeting files and
//!   hands every worker the new config.
//! - [`log_sink`]: the bounded log queue and its writer thread, so that no loop ever
//!   blocks on stderr.
//! - [`client`]: the blocking client used by `greeter-client` and the tests.
//! - [`error`]: the one-line [`Failure`] that stops the program, saying what failed
//!   and how to fix it.
//! - [`fdlimit`]: raising the open-file limit at start-up.
//! - `files` (internal): opening the files the server reads, regular files only.
//!
//! The binaries in `src/bin/` only parse flags, set up logging and map signals to
//! supervisor requests, so tests and benchmarks drive the same code in-process. The
//! load generator is its own crate, `greeter-load`, in `load/`.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod accept;
mod accept_set;
pub mod access;
pub mod admission;
pub mod check_only;
pub mod cli;
pub mod client;
mod close;
pub mod config;
mod connection;
pub mod deadlines;
pub mod error;
pub mod fdlimit;
mod files;
pub mod greeting;
pub mod handle;
pub mod health_check;
mod held;
pub mod listen_fds;
pub mod listener;
pub mod log_format;
pub mod log_sink;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod pass;
mod peer_addr;
pub mod peer_input;
mod per_ip;
pub mod pid_file;
mod proxy;
pub mod rate;
pub mod reload;
pub mod server;
mod slots;
mod socket;
pub mod startup;
pub mod supervisor;
mod timers;
pub mod totals;
pub mod upgrade;
pub mod workers;

pub use close::{CloseReason, ReasonNames};
pub use config::{Config, ServerArgs, DEFAULT_GREETING, DEFAULT_PORT};
pub use error::Failure;
pub use handle::{ServerHandle, Snapshot};
pub use server::Server;
pub use totals::Totals;
pub use workers::Workers;
