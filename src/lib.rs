//! greeter: a TCP greeting server built to serve very many clients from one small
//! event loop.
//!
//! A client connects; the server sends the greeting (by default the 38 bytes
//! `Hello there! This is the hosted server`) and closes the connection. The server is
//! one thread running a mio readiness loop; it writes the greeting the moment a
//! connection is accepted, and only a connection whose write was partial, or whose
//! peer sent data, is kept in a slab and registered with the poll.
//!
//! # Layout
//! - [`config`]: the server's flags and the checked [`Config`] they turn into.
//! - [`server`]: the [`Server`]: the mio loop, the accept policy, limits, shutdown.
//! - [`handle`]: the [`ServerHandle`] other threads use to stop a server or read its
//!   totals.
//! - [`workers`]: [`Workers`]: one server per thread (`--workers`), SO_REUSEPORT or a
//!   socket passed by systemd, signals on the main thread, totals summed.
//! - [`per_ip`]: the `--max-per-ip` accounting.
//! - [`activation`]: taking the listener from systemd socket activation.
//! - [`connection`]: the write state of a held connection and the nonblocking write
//!   and discard steps.
//! - [`accept`]: which accept errors are skipped and which pause accepting.
//! - [`tcp_state`]: the kernel's view of a connection (`TCP_INFO`): unsent bytes and
//!   input, which decide whether it can be closed at once.
//! - [`deadlines`]: the FIFO of fixed-duration deadlines, the loop's only timer.
//! - [`totals`]: the counters behind the `totals` log line.
//! - [`client`]: the blocking client used by `greeter-client` and the tests.
//! - [`load`]: the load generator behind `greeter-load`: mio loops, byte checks,
//!   latency histograms.
//! - [`error`]: one-line start-up errors that say what failed and how to fix it.
//! - [`fdlimit`]: raising the open-file limit at start-up.
//!
//! The binaries in `src/bin/` only parse flags and call into this library, so tests
//! and benchmarks drive the same code in-process.
#![deny(missing_docs)]

pub mod accept;
pub mod activation;
pub mod client;
pub mod config;
pub mod connection;
pub mod deadlines;
pub mod error;
pub mod fdlimit;
pub mod handle;
pub mod load;
pub mod per_ip;
pub mod server;
pub mod tcp_state;
pub mod totals;
pub mod workers;

pub use config::{Config, ServerArgs, DEFAULT_GREETING, DEFAULT_PORT};
pub use error::StartupError;
pub use handle::{ServerHandle, Snapshot};
pub use server::Server;
pub use totals::Totals;
pub use workers::Workers;
