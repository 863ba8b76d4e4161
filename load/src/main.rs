//! `greeter-load`: drive a greeter server with many concurrent connections, check
//! every byte, report the rate and the latency percentiles.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use greeter::error::describe_io_error;
use greeter_load::cli::LoadCli as Cli;
use greeter_load::{self as load, LoadOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match drive(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("greeter-load: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load; `Ok(false)` when some connection failed.
fn drive(cli: Cli) -> Result<bool, String> {
    let expected = cli.greeting.load().map_err(|err| err.to_string())?;
    let host = cli.target.host();
    let addr: SocketAddr = (host, cli.target.port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {host}: {}", describe_io_error(&err)))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no addresses"))?;
    // Each connection in flight is a descriptor; the default soft limit is often 1024.
    // Best effort: what it comes to is checked below.
    let raised = greeter::fdlimit::raise_to_hard_limit();
    if let Some(clients) = cli.hold {
        return hold_clients(&cli, addr, clients, raised.ok().map(|limit| limit.hard));
    }
    let fd_limit = greeter::fdlimit::soft_limit();
    // Room for stdio, the event loops and their wakers beside the connections.
    let needed = cli.connections as usize + 16 + 2 * cli.threads as usize;
    if needed > fd_limit {
        return Err(format!(
            "-c {} needs about {needed} descriptors but the open-file limit is {fd_limit} \
             (lower -c, or raise the limit: ulimit -n)",
            cli.connections
        ));
    }

    let options = LoadOptions {
        addr,
        connections: cli.connections as usize,
        total: cli.total,
        duration: cli.duration,
        expected,
        timeout: cli.timeout,
        threads: cli.threads as usize,
        send_proxy: cli.send_proxy,
        distinct_sources: cli.distinct_sources,
    };
    let finished = AtomicU64::new(0);
    let report = std::thread::scope(|scope| {
        let running = scope.spawn(|| load::run(&options, &finished));
        if std::io::stderr().is_terminal() {
            show_progress(&finished, &running, cli.total);
        }
        running.join().expect("load run panicked")
    })
    .map_err(|err| {
        format!(
            "load run against {addr} failed: {}",
            describe_io_error(&err)
        )
    })?;

    if cli.json {
        let json = serde_json::to_string(&report.to_json()).map_err(|err| err.to_string())?;
        println!("{json}");
    } else {
        println!(
            "target        {addr}, {} connections in flight, {} thread(s)",
            cli.connections, cli.threads
        );
        println!("{report}");
    }
    Ok(report.errors.total() == 0)
}

/// `--hold N`: holds N clients for `--duration`; `Ok(false)` unless every one
/// stayed connected to the end. `hard`: the hard open-file limit, if it was read.
fn hold_clients(
    cli: &Cli,
    addr: SocketAddr,
    clients: u32,
    hard: Option<u64>,
) -> Result<bool, String> {
    // Room for stdio and the event loop beside the clients.
    let needed = clients as usize + 16;
    if let Some(hard) = hard.filter(|&hard| needed as u64 > hard) {
        return Err(format!(
            "--hold {clients} needs about {needed} descriptors but the hard open-file limit is \
             {hard} (lower --hold, or raise the hard limit: ulimit -Hn as root, LimitNOFILE=)"
        ));
    }
    let soft = greeter::fdlimit::soft_limit();
    if needed > soft {
        return Err(format!(
            "--hold {clients} needs about {needed} descriptors but the open-file limit is \
             {soft} and could not be raised (raise it: ulimit -n)"
        ));
    }
    let options = load::hold::HoldOptions {
        addr,
        clients: clients as usize,
        duration: cli.duration,
    };
    let report = load::hold::hold(&options).map_err(|err| {
        format!(
            "hold run against {addr} failed: {}",
            describe_io_error(&err)
        )
    })?;
    if cli.json {
        let json = serde_json::to_string(&report).map_err(|err| err.to_string())?;
        println!("{json}");
    } else {
        println!(
            "target        {addr}, {clients} clients held for {:.3} s",
            cli.duration.as_secs_f64()
        );
        println!("{report}");
    }
    Ok(report.all_held())
}

/// Rate and elapsed time on stderr until the run ends (only on a terminal).
fn show_progress<T>(
    finished: &AtomicU64,
    running: &std::thread::ScopedJoinHandle<'_, T>,
    total: Option<u64>,
) {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} {pos} connections ({per_sec}) {wide_bar}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !running.is_finished() {
        bar.set_position(finished.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
