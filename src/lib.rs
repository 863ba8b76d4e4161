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
//! - [`listener`]: where the listening socket comes from (bound with its backlog and
//!   send buffer, or passed by systemd).
//! - `accept` (internal): which accept errors are skipped and which pause accepting;
//!   the accept gate (ready, budget spent, at capacity, paused).
//! - [`server`]: the [`Server`]: the loop (`run`/`turn`), the fast path that greets
//!   and closes at once, the drain.
//! - `proxy` (internal): `--proxy-protocol`: the header that names the real client,
//!   read before the greeting.
//! - `connection` (internal): a held connection's whole life: writing, flushing,
//!   lingering, deadlines, per-address accounting, close reasons.
//! - `tcp_state` (internal): the kernel's view of a connection (`TCP_INFO`): unsent
//!   bytes and input, which decide whether it can be closed at once.
//! - [`deadlines`]: the FIFO of fixed-duration deadlines, the loop's only timer.
//! - [`totals`]: the counters behind the `totals` log line.
//!
//! Around it:
//! - [`config`]: the server's flags and the checked [`Config`] they turn into.
//! - [`cli`]: flag groups the binaries share (the server to talk to, the greeting).
//! - [`handle`]: the [`ServerHandle`] other threads use to stop a server or read its
//!   totals.
//! - [`workers`]: [`Workers`]: one server per thread (`--workers`) on one shared
//!   listening socket; a running handle to stop them and sum their totals.
//! - `per_ip` (internal): the `--max-per-ip` accounting.
//! - [`metrics`]: `--metrics`: Prometheus metrics and `/healthz`, on a thread of
//!   their own, read from the snapshots the loops publish; `metrics_http` (internal)
//!   serves them from a small readiness loop bounded in clients, time and bytes.
//! - [`reload`]: SIGHUP: re-read the greeting file and hand it to every worker.
//! - [`client`]: the blocking client used by `greeter-client` and the tests.
//! - [`error`]: one-line start-up errors that say what failed and how to fix it.
//! - [`fdlimit`]: raising the open-file limit at start-up.
//! - [`log_sink`]: the bounded log queue and its writer thread, so that no loop ever
//!   blocks on stderr.
//!
//! The binaries in `src/bin/` only parse flags, wire signals and call into this
//! library, so tests and benchmarks drive the same code in-process. The load
//! generator is its own crate, `greeter-load`, in `load/`.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod accept;
pub mod cli;
pub mod client;
mod close;
pub mod config;
mod connection;
pub mod deadlines;
pub mod error;
pub mod fdlimit;
pub mod greeting;
pub mod handle;
mod held;
pub mod listener;
pub mod log_sink;
pub mod metrics;
pub mod metrics_http;
mod per_ip;
mod proxy;
pub mod reload;
pub mod server;
mod socket;
pub mod startup;
pub mod supervisor;
pub mod totals;
pub mod workers;

pub use close::{CloseReason, ReasonNames};
pub use config::{Config, ServerArgs, DEFAULT_GREETING, DEFAULT_PORT};
pub use error::StartupError;
pub use handle::{ServerHandle, Snapshot};
pub use server::Server;
pub use totals::Totals;
pub use workers::Workers;
