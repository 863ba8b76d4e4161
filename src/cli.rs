//! The client's flags: the server to talk to (`greeter-client`, and `greeter-load`,
//! which flattens it into its own) and `greeter-client`'s command line. The server's
//! flags are [`crate::config::flags`].

use std::time::Duration;

use crate::parse::{parse_positive_duration, parse_size, unbracket, DEFAULT_PORT};

/// The server a client connects to: `--host` and `--port`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Server host name or address (IPv6 with or without brackets: ::1 or [::1])
    // The text is clap's help too: `[::1]` is an address, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Server port (1 to 65535)
    #[arg(long, default_value_t = DEFAULT_PORT, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

impl TargetArgs {
    /// The host as the resolver takes it (`[::1]` becomes `::1`).
    pub fn host(&self) -> &str {
        unbracket(&self.host)
    }
}

/// Fetches a greeter server's greeting and prints it exactly as received.
///
/// Connects, reads until the server closes the connection, and writes the bytes to
/// stdout. Exits 1 with one line saying what failed if no whole greeting arrived.
#[derive(Debug, clap::Parser)]
#[command(name = "greeter-client", version)]
pub struct ClientCli {
    /// The server.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Limit for connecting, and for each read
    #[arg(long, value_name = "DUR", default_value = "10s", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Cut off a server that sends more than this many bytes
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_bytes: usize,
}
