//! `greeter-client`: connect, read the greeting until EOF, print it exactly.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use greeter::client::{fetch_greeting, ClientOptions};
use greeter::config::{parse_positive_duration, DEFAULT_PORT};

/// Connects to a greeter server, reads the whole greeting until the server closes the
/// connection, and writes the bytes to stdout exactly as received.
#[derive(Parser)]
#[command(name = "greeter-client", version, about)]
struct Cli {
    /// Server host name or address (IPv6 with or without brackets)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Server port
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,

    /// Limit for connecting, and for each read
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,

    /// Cut off a server that sends more than this many bytes
    #[arg(long, value_name = "N", default_value_t = 64 * 1024 * 1024)]
    max_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = ClientOptions {
        timeout: cli.timeout,
        max_bytes: cli.max_bytes,
    };
    let greeting = match fetch_greeting(&cli.host, cli.port, &options) {
        Ok(greeting) => greeting,
        Err(err) => {
            eprintln!("greeter-client: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut written = stdout.write_all(&greeting);
    // A terminal prompt would otherwise land at the end of a greeting without newline;
    // pipes get the bytes exactly.
    if stdout.is_terminal() && !greeting.ends_with(b"\n") {
        written = written.and_then(|()| stdout.write_all(b"\n"));
    }
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("greeter-client: cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}
