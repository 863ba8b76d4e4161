//! `greeter-client`: connect, read the greeting until EOF, print it exactly.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use greeter::cli::TargetArgs;
use greeter::client::{fetch_greeting, ClientOptions};
use greeter::config::{parse_positive_duration, parse_size};

/// Fetches a greeter server's greeting and prints it exactly as received.
///
/// Connects, reads until the server closes the connection, and writes the bytes to
/// stdout. Exits 1 with one line saying what failed if no whole greeting arrived.
#[derive(Parser)]
#[command(name = "greeter-client", version)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,

    /// Limit for connecting, and for each read
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,

    /// Cut off a server that sends more than this many bytes
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    max_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = ClientOptions {
        timeout: cli.timeout,
        max_bytes: cli.max_bytes,
    };
    let greeting = match fetch_greeting(cli.target.host(), cli.target.port, &options) {
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
