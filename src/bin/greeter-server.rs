//! `greeter-server`: parse the flags, set up logging and the fd limit, bind, run the
//! workers, and turn signals into requests to them.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use env_logger::{Target, WriteStyle};

use clap::Parser;
use log::{error, info, warn};

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use greeter::log_sink::LogSink;
use greeter::metrics::{self, MetricsSource};
use greeter::metrics_http::MetricsServer;
use greeter::reload::Reloader;
use greeter::{fdlimit, listener, ServerArgs, StartupError, Totals, Workers};

/// Serves a greeting over TCP to every client that connects, then closes.
///
/// The greeting is sent the moment a connection is accepted; closing never loses it
/// to a reset, and the server keeps serving through resets, stalls and floods.
#[derive(Parser)]
#[command(name = "greeter-server", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// The part of `--help` below the flags.
const AFTER_HELP: &str = "\
Prints `listening on ADDR` on stdout once it serves (the real port with --port 0).
Started by systemd with a socket (LISTEN_FDS), it serves that socket instead.

Signals:
  SIGINT, SIGTERM  stop accepting, greet what is queued, drain within --drain-timeout,
                   exit 0 (a second one closes what is in flight at once)
  SIGHUP           re-read --message-file for new connections (a failed reload
                   keeps the old greeting)
  SIGUSR1          log the totals so far

Exit codes: 0 stopped by a signal; 1 a start-up or worker error (one line on
stderr); 2 a bad flag.

Logs go to stderr; RUST_LOG sets the level (default info; RUST_LOG=debug adds a
line per connection).";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_sink = match start_logging() {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("greeter-server: cannot start the log writer thread: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A panic is a bug, never a user's doing: log where it happened as one error line
    // instead of a multi-line report; the failed worker then ends the process with
    // exit 1 and the one-line `worker N failed` error.
    std::panic::set_hook(Box::new(|info| {
        error!("internal error: {}", info.to_string().replace('\n', " "));
    }));
    let outcome = serve(cli.server);
    // Bounded: a stderr that nobody reads must not keep a stopped server alive.
    log_sink.flush(LOG_FLUSH_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// How long the process waits at exit for queued log lines to be written.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Logs through `env_logger` (level info, `RUST_LOG` overrides) into the bounded
/// queue of [`LogSink`], whose thread writes to stderr: no loop ever blocks on a log
/// line. Colours only when stderr is a terminal, as `env_logger` does by itself.
fn start_logging() -> io::Result<LogSink> {
    let (sink, queue) = LogSink::start(io::stderr())?;
    let style = if io::stderr().is_terminal() {
        WriteStyle::Always
    } else {
        WriteStyle::Never
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(Target::Pipe(Box::new(queue)))
        .write_style(style)
        .init();
    Ok(sink)
}

fn serve(args: ServerArgs) -> Result<(), StartupError> {
    let worker_count = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        n => n as usize,
    };
    let reloader = Reloader::new(&args.greeting);
    let metrics_addr = args.metrics;
    let config = args.into_config()?;
    // Before anything is bound or created: every worker and connection needs
    // descriptors, and the usual soft limit (1024) is far below what is allowed.
    let fd_limit = fdlimit::raise_to_hard_limit();
    let (workers, source) = match listener::from_systemd()? {
        Some(listeners) => (
            Workers::from_listeners(listeners, &config, worker_count)?,
            "socket passed by systemd",
        ),
        None => (Workers::bind(&config, worker_count)?, "bound"),
    };
    // Bound before anything is logged, so that its error is the only line.
    let metrics = match metrics_addr {
        Some(addr) => {
            let server = MetricsServer::bind(addr)?;
            Some((server, config.max_connections.saturating_mul(workers.len())))
        }
        None => None,
    };
    info!(
        "serving {} ({source}) workers={} greeting_bytes={} max_connections={} \
         backlog={} write_timeout={} drain_timeout={} linger_timeout={} max_per_ip={} \
         send_buffer={}",
        workers
            .local_addrs()
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        workers.len(),
        config.greeting.len(),
        config.max_connections,
        somaxconn().map_or(config.backlog, |cap| cap.min(config.backlog)),
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
    let totals = serve_until_stopped(workers, reloader, metrics)?;
    info!("totals in_flight=0 {totals}");
    Ok(())
}

const SIGNALS: Token = Token(0);
const WORKER_EXITED: Token = Token(1);

/// Runs the workers and handles signals on this thread until every worker has
/// stopped; returns their summed totals.
///
/// SIGINT or SIGTERM shut every worker down gracefully; a second one closes what is
/// still in flight at once. SIGUSR1 logs the summed totals so far. SIGHUP reloads the
/// greeting file (the workers never read files themselves). A worker that
/// stops on its own has failed: the others are shut down too, and the failure is
/// returned. The `listening on` line is printed only once the handlers are installed,
/// so that a SIGTERM sent as soon as it is seen is handled gracefully.
fn serve_until_stopped(
    workers: Workers,
    reloader: Reloader,
    metrics: Option<(MetricsServer, usize)>,
) -> Result<Totals, StartupError> {
    let fail = |err| StartupError::new("cannot install signal handlers", err, None);
    let mut poll = Poll::new().map_err(fail)?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP]).map_err(fail)?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(fail)?;
    let exited = Arc::new(Waker::new(poll.registry(), WORKER_EXITED).map_err(fail)?);
    let local_addrs = workers.local_addrs().to_vec();
    let running = workers.spawn(exited)?;
    let reload_counts = reloader.counts();
    let reloads = reloader.spawn(running.view())?;
    if let Some((server, max_connections)) = metrics {
        let addr = server.local_addr().map_err(fail)?;
        server.spawn(MetricsSource {
            workers: running.view(),
            reloads: reload_counts,
            max_connections,
        })?;
        metrics::announce(addr);
    }
    announce(&local_addrs);

    let mut events = Events::with_capacity(8);
    let mut stopping = false;
    while !running.all_stopped() {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            error!("signal loop failed: {err}; stopping the workers");
            running.stop_now();
            break;
        }
        for signal in signals.pending() {
            match signal {
                SIGINT | SIGTERM if !stopping => {
                    stopping = true;
                    running.shutdown();
                }
                SIGINT | SIGTERM => {
                    info!("shutdown: second stop signal, closing in-flight connections now");
                    running.stop_now();
                }
                // The file is read on the reload thread: this one stays free.
                SIGHUP => reloads.request(),
                SIGUSR1 => {
                    let snapshot = running.snapshot();
                    info!(
                        "totals in_flight={} {}",
                        snapshot.in_flight, snapshot.totals
                    );
                }
                _ => {}
            }
        }
        // A worker that stopped on its own failed: take the others down with it.
        if !stopping && running.stopped() > 0 {
            stopping = true;
            running.shutdown();
        }
    }
    running.join()
}

/// Prints one `listening on ADDR` line per listener, in the order given, and nothing
/// else on stdout, for scripts that start the server on --port 0.
fn announce(addrs: &[SocketAddr]) {
    let mut stdout = std::io::stdout().lock();
    let announced = addrs
        .iter()
        .try_for_each(|addr| writeln!(stdout, "listening on {addr}"))
        .and_then(|()| stdout.flush());
    if let Err(err) = announced {
        warn!("cannot write the listening lines to stdout: {err}");
    }
}

/// The kernel's cap on every listen backlog, if it can be read.
fn somaxconn() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
}

/// The kernel silently caps the backlog at net.core.somaxconn; say so when it does.
fn warn_if_backlog_capped(backlog: i32) {
    if let Some(cap) = somaxconn().filter(|&cap| cap < backlog) {
        warn!(
            "listen backlog {backlog} is capped by net.core.somaxconn={cap} \
             (raise it with sysctl -w net.core.somaxconn={backlog})"
        );
    }
}
