//! `greeter-load`'s flags, in the library so that the man page and the completions
//! are generated from the same definition.

use std::time::Duration;

use greeter::cli::TargetArgs;
use greeter::config::GreetingArgs;
use greeter::parse::parse_positive_duration;

pub use crate::ProxyVersion;

/// Drives a greeter server with many concurrent connections and checks every byte.
///
/// Connections are nonblocking, on mio loops; each must receive exactly the greeting
/// and a clean EOF. Reports connections/s and connect-to-EOF latency percentiles, and
/// exits 1 if any connection failed.
#[derive(Debug, clap::Parser)]
#[command(name = "greeter-load", version)]
pub struct LoadCli {
    /// The server.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Connections in flight at once
    #[arg(short = 'c', long, value_name = "C", default_value_t = 64, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Stop after N connections (whichever of N and DUR comes first)
    #[arg(short = 'n', long, value_name = "N",
          allow_negative_numbers = true,
          // 1..=MAX, not 1..: clap words an open u64 range `1..18446744073709551615`.
          value_parser = clap::value_parser!(u64).range(1..=u64::MAX))]
    pub total: Option<u64>,

    /// Stop after this long (whichever of N and DUR comes first)
    #[arg(short = 'd', long, value_name = "DUR", default_value = "10s",
          allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub duration: Duration,

    /// The greeting every connection must receive, byte for byte
    #[command(flatten)]
    pub greeting: GreetingArgs,

    /// Per connection, from connect to EOF
    #[arg(long, value_name = "DUR", default_value = "5s", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Begin every connection with a PROXY protocol header (its own addresses), v1
    /// (text, the default) or v2 (binary), for a server run with --proxy-protocol
    #[arg(long, value_name = "VERSION", num_args = 0..=1, default_missing_value = "v1")]
    pub send_proxy: Option<ProxyVersion>,

    /// With --send-proxy, name a different IPv4 client in every header (10.0.0.0 and
    /// up), as a million clients behind a load balancer would be
    #[arg(long, requires = "send_proxy")]
    pub distinct_sources: bool,

    /// Event-loop threads sharing the connections
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,

    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,

    /// Hold N clients on a tarpit for --duration instead: each connects once, reads
    /// whatever arrives and records when; reports how many stayed connected to the
    /// end and the longest gap between two reads (exit 1 unless all did)
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub hold: Option<u32>,
}
