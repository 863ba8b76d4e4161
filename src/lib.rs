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
//! Every module, by the part of the house it belongs to (tests check that this list
//! and the `mod` lines agree).
//!
//! A connection's life, in the order it happens:
//! - [`listener`]: binding the listening sockets (with their backlog and send buffer,
//!   one port for all).
//! - [`server`]: the [`Server`]: the loop (`run`/`turn`), a fresh connection greeted,
//!   a reload handed over, the drain, and counting and logging every close; its
//!   `listeners` room: each loop's listening sockets and the accept rotation over the
//!   ones with connections queued.
//! - `accept` (internal): which accept errors are skipped and which pause accepting;
//!   the accept gate (ready, budget spent, at capacity, paused); the round's budget.
//! - `accept_set` (internal): the workers that share the listening sockets: which
//!   one an arrival wakes (`EPOLLEXCLUSIVE`), roles, standby, covering a stuck first
//!   worker.
//! - `held` (internal): the held connections: the slab keyed by mio `Token`, the
//!   fast path (a fresh connection advanced once, never held unless it must wait),
//!   applying each `Step` (one rule for a registration that fails), a PROXY header
//!   waiter's room and renaming, the `ACCEPT` line.
//! - [`admission`]: who is greeted, and with what: each listener's `Policy` (lists,
//!   rate, greet delay, pregreet action, deny message) in the loop's one per-listener
//!   table, whose `admit` chooses the greeting once.
//! - [`access`]: `--allow`/`--deny`, their files, the longest-prefix rule.
//! - [`rate`]: `--max-rate-per-ip`: each source's budget in a bounded LRU table.
//! - [`pass`]: the greet delay's pass table: sources that waited it out silently
//!   are greeted at once for `--pass-ttl`.
//! - `slots` (internal): the slots held connections take: `--max-per-ip`, the
//!   header waiters' share, `--max-delayed`; `per_ip` (internal): the per-address
//!   counts.
//! - `proxy` (internal): `--proxy-protocol`: the header that names the real client.
//! - `connection` (internal): one connection: its phase (PROXY header, greet delay,
//!   writing, flushing, lingering, trapped) and the one method that advances it and says what
//!   happens next (`Step`); `peer_addr` (internal): the client's address in the 24
//!   bytes a held connection keeps.
//! - [`peer_input`]: the class of what a peer sent first (`first=` of `CLOSE`).
//! - [`geoip`]: `--geoip-db`: a trapped client's country from a MaxMind DB file, read
//!   whole and shared; the trap counters by country.
//! - [`tarpit`]: `--tarpit`: what a trapped client is dripped (random lines or the
//!   greeting, a little at a time), the lines' generator, a trap's wall-clock start.
//! - `socket` (internal): the socket primitives (write, FIN, `TCP_INFO`, discard) and
//!   the kernel facts they rely on.
//! - `timers` (internal): the five deadline queues (header, write, linger, delay,
//!   drip);
//!   [`deadlines`]: the FIFO of fixed-duration deadlines each of them is.
//! - `close` (internal, [`CloseReason`] public): why a connection closed, with its
//!   names in one table, and the `ACCEPT`, `PREGREET` and `CLOSE` lines' formats.
//! - [`totals`]: the counters behind the `totals` log line, one per close reason.
//! - [`greeting`]: [`greeting::Greeting`], the bytes every connection is sent from
//!   (shared, one word to hold); the default greeting; greeting files read once,
//!   checked.
//!
//! The settings, from flags to what the loops run:
//! - [`parse`]: the values every binary's flags take (durations, sizes, hosts) and
//!   the default port.
//! - [`config`]: the server's settings: the flags ([`config::flags`]), their file
//!   keys and variables ([`config::keys`]), the TOML file ([`config::file`]), the
//!   layers and `[[listener]]` tables, the effective [`config::settings`], listener
//!   ids ([`config::listener_id`]), `--check-config`'s output, and the one build
//!   step ([`config::build`], at start and at every reload) into the checked
//!   [`Config`] the loops run.
//! - [`cli`]: the client's flags (the server to talk to).
//!
//! The process around the loops:
//! - [`startup`]: the checks, the sockets (passed or bound) and the start-up lines.
//! - [`listen_fds`]: the `LISTEN_FDS` protocol both ways: the sockets passed by
//!   systemd or an upgrade, assigned to their listeners by name or address, and what
//!   an upgrade passes on.
//! - [`supervisor`]: runs the workers, the reload thread and the metrics until every
//!   worker stops: its start, its answers to requests (drain, stop now, reload, log
//!   totals, upgrade), a stop's stages, systemd's and `/livez`'s pings, an upgrade
//!   followed.
//! - [`upgrade`]: SIGUSR2: what is started, the old process's side, the new
//!   process's report, and the trapped connections handed over (`handover`).
//! - [`reload`]: SIGHUP: the reload thread re-reads the config and every file and
//!   hands every worker the new config.
//! - [`workers`]: [`Workers`]: one server per thread (`--workers`); a running handle
//!   to stop them and sum their totals.
//! - [`handle`]: the [`ServerHandle`] other threads use to stop a server or read its
//!   totals.
//! - [`notify`]: systemd's notify protocol (`READY=1`, status, watchdog).
//! - [`pid_file`]: `--pid-file` and its guard.
//! - [`check_only`]: the runs that check and exit: `--check-config`,
//!   `--health-check`; [`health_check`]: whether a server greets.
//! - [`logging`]: the server's log set-up and a panic as one line; [`log_sink`]: the
//!   bounded log queue and its writer thread, so that no loop ever blocks on stderr;
//!   [`log_format`]: `--log-format`, text or JSON.
//! - [`metrics`]: `--metrics`, a folder: what is served, read from the snapshots the
//!   loops publish ([`metrics::registry`]); the two exposition formats and the
//!   `Accept` negotiation between them ([`metrics::format`], [`metrics::negotiate`]);
//!   the routes `/metrics`, `/healthz`, `/livez` ([`metrics::endpoint`]); and how they
//!   are served, from a small readiness loop of its own bounded in clients, time and
//!   bytes ([`metrics::http`]).
//! - [`fdlimit`]: raising the open-file limit at start-up.
//! - `files` (internal): opening the files the server reads, regular files only,
//!   refused if changed while read.
//! - `locking` (internal): a mutex locked whether or not a holder panicked.
//! - [`error`]: the one-line [`Failure`] that stops the program, saying what failed
//!   and how to fix it.
//! - [`client`]: the blocking client used by `greeter-client` and the tests.
//!
//! The binaries in `src/bin/` only parse flags, start logging and map signals to
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
pub mod geoip;
pub mod greeting;
pub mod handle;
pub mod health_check;
mod held;
pub mod listen_fds;
pub mod listener;
mod locking;
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
pub mod tarpit;
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
