//! `greeter-server`: parse the flags, set up logging and the fd limit, serve.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use log::{error, info, warn};

use greeter::{activation, fdlimit, ServerArgs, StartupError, Workers};

/// A TCP greeting server: every client that connects is sent the greeting, then the
/// connection is closed. Logs go to stderr (RUST_LOG=debug for per-connection lines).
#[derive(Parser)]
#[command(name = "greeter-server", version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // A panic is a bug, never a user's doing: log where it happened as one error line
    // instead of a multi-line report; the failed worker then ends the process with
    // exit 1 and the one-line `worker N failed` error.
    std::panic::set_hook(Box::new(|info| {
        error!("internal error: {}", info.to_string().replace('\n', " "));
    }));
    match serve(cli.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServerArgs) -> Result<(), StartupError> {
    let worker_count = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        n => n as usize,
    };
    let config = args.into_config()?;
    // Before anything is bound or created: every worker and connection needs
    // descriptors, and the usual soft limit (1024) is far below what is allowed.
    let fd_limit = fdlimit::raise_to_hard_limit();
    let (workers, source) = match activation::listener_from_systemd()? {
        Some(listener) => (
            Workers::from_listener(listener, &config, worker_count)?,
            "socket passed by systemd",
        ),
        None => (Workers::bind(&config, worker_count)?, "bound"),
    };
    info!(
        "listening on {} ({source}) workers={} greeting_bytes={} max_connections={} \
         backlog={} write_timeout={} drain_timeout={} linger_timeout={} max_per_ip={} \
         send_buffer={}",
        workers.local_addr(),
        workers.len(),
        config.greeting.len(),
        config.max_connections,
        config.backlog,
        humantime::format_duration(config.write_timeout),
        humantime::format_duration(config.drain_timeout),
        humantime::format_duration(config.linger_timeout),
        config
            .max_per_ip
            .map_or_else(|| "off".to_owned(), |limit| limit.to_string()),
        workers
            .send_buffer()
            .map_or_else(|| "auto".to_owned(), |bytes| bytes.to_string()),
    );
    warn_if_backlog_capped(config.backlog);
    if let (Some(asked), Some(got)) = (config.send_buffer, workers.send_buffer()) {
        // Linux reports twice what it was asked for; less means net.core.wmem_max
        // capped the request.
        if got < 2 * asked {
            warn!(
                "send buffer {asked} is capped by net.core.wmem_max: the kernel gives {got} \
                 (raise it with sysctl -w net.core.wmem_max={asked})"
            );
        }
    }
    // Logged after binding, so that a start-up error stays the only line on stderr.
    match fd_limit {
        Ok(limit) => info!(
            "fd limit: soft={} hard={} (was soft={})",
            limit.soft, limit.hard, limit.before
        ),
        Err(err) => warn!("fd limit: cannot raise the open-file limit: {err}"),
    }
    workers.run_with_signals(announce)?;
    Ok(())
}

/// Prints the one line on stdout, for scripts that start the server on --port 0.
fn announce(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let announced = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
    if let Err(err) = announced {
        warn!("cannot write the listening line to stdout: {err}");
    }
}

/// The kernel silently caps the backlog at net.core.somaxconn; say so when it does.
fn warn_if_backlog_capped(backlog: i32) {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    if let Some(cap) = somaxconn.filter(|&cap| cap < backlog) {
        warn!(
            "listen backlog {backlog} is capped by net.core.somaxconn={cap} \
             (raise it with sysctl -w net.core.somaxconn={backlog})"
        );
    }
}
