//! `greeter-client`: connect, read the greeting until EOF, print it exactly.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use greeter::cli::ClientCli as Cli;
use greeter::client::{fetch_greeting, ClientOptions};

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
