//! `greeter-server`: layer the flags, environment and config file, set up logging and
//! the fd limit, map signals to requests, and hand everything else to the library
//! ([`greeter::startup`] checks and binds, [`greeter::supervisor`] runs).

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use env_logger::{Target, WriteStyle};
use log::{error, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;

use greeter::config::settings::Environment;
use greeter::config::{ServerCli, Settings};
use greeter::log_format::{self, LogFormat};
use greeter::log_sink::LogSink;
use greeter::supervisor::{Request, Supervisor};
use greeter::upgrade::{Report, UpgradeCommand};
use greeter::{fdlimit, health_check, startup, Failure};

/// The exit code of a bad flag, variable or config file (clap's for a bad flag).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    // First: the descriptor an upgrading process passed, before anything else could
    // take or close it.
    let mut report = Report::take();
    // The process upgrading to this one, which started it (the `/bin/sh -c` that set
    // LISTEN_PID exec'd into this one): read now, before it may exit.
    let upgrader = report.as_ref().map(|_| std::os::unix::process::parent_id());
    let matches = match ServerCli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => {
            // A bad flag (not --help or --version): the process upgrading to this one
            // quotes the line.
            if err.use_stderr() {
                if let Some(report) = report.take() {
                    let text = err.to_string();
                    let first = text.lines().next().unwrap_or_default();
                    let line = first.strip_prefix("error: ").unwrap_or(first);
                    report.failed(&line);
                }
            }
            err.exit()
        }
    };
    let cli = ServerCli::from_arg_matches(&matches).ok();
    let check_only = cli.as_ref().is_some_and(|cli| cli.check_config);
    let health_check = cli.as_ref().is_some_and(|cli| cli.health_check);
    let settings = match Settings::load(&matches, &Environment::from_process()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            if let Some(report) = report.take() {
                report.failed(&err);
            }
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if check_only {
        return check_config(&settings);
    }
    if health_check {
        return check_health(&settings);
    }
    let log_format = settings.server_args().log_format;
    let log_sink = match start_logging(log_format) {
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
        // The target it has always had: this binary's crate name.
        error!(
            target: "greeter_server",
            "internal error: {}",
            info.to_string().replace('\n', " ")
        );
    }));
    let outcome = serve(settings, &mut report, upgrader);
    // Bounded: a stderr that nobody reads must not keep a stopped server alive.
    log_sink.flush(LOG_FLUSH_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            // A failure before the supervisor took the report (which then says it).
            if let Some(report) = report.take() {
                report.failed(&err);
            }
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: every start-up check that needs no socket, then the effective
/// settings on stdout as a config file (exit 0), or the problem on stderr (exit 2).
fn check_config(settings: &Settings) -> ExitCode {
    let checked = match startup::check(settings) {
        Ok(checked) => checked,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    for warning in settings.warnings() {
        eprintln!("greeter-server: warning: {warning}");
    }
    if let Some(warning) = startup::shutdown_delay_warning(&checked.args) {
        eprintln!("greeter-server: warning: {warning}");
    }
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(settings.to_toml().as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("greeter-server: cannot write the configuration to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--health-check`: whether the server these settings describe greets (exit 0),
/// or not (exit 1, one line on stderr); exit 2 for a bad configuration.
fn check_health(settings: &Settings) -> ExitCode {
    let checked = match startup::check(settings) {
        Ok(checked) => checked,
        Err(err) => {
            eprintln!("greeter-server: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match health_check::check(&checked.config) {
        Ok(addr) => {
            println!("greeter-server: healthy: {addr} sent the greeting");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("greeter-server: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Serves; `upgrader` is the pid of the process upgrading to this one, if one is.
fn serve(
    settings: Settings,
    report: &mut Option<Report>,
    upgrader: Option<u32>,
) -> Result<(), Failure> {
    // Read before anything could replace the file: an upgrade starts what is there
    // then.
    let upgrade = UpgradeCommand::of_this_process()
        .map_err(|err| Failure::new("cannot read the path of the running binary", err, None))?;
    // Before anything is bound or created: every worker and connection needs
    // descriptors, and the usual soft limit (1024) is far below what is allowed.
    let fd_limit = fdlimit::raise_to_hard_limit();
    let server = startup::prepare(settings, fd_limit)?;
    let mut supervisor = Supervisor::new()?;
    supervisor.enable_upgrades(upgrade);
    // The supervisor says `ready` as soon as the workers run, or why it failed first.
    if let Some(report) = report.take() {
        supervisor.report_to(report);
    }
    let requests = supervisor.requests();
    // Installed before the listening lines are printed, so that a SIGTERM sent as soon
    // as they are seen is handled; the handlers only queue a request.
    let fail = |err| Failure::new("cannot install signal handlers", err, None);
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
        .map_err(fail)?;
    std::thread::Builder::new()
        .name("greeter-signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                let sender = signal
                    .process
                    .and_then(|process| u32::try_from(process.pid).ok());
                requests.send(match signal.signal {
                    SIGHUP => Request::Reload,
                    SIGUSR1 => Request::LogTotals,
                    SIGUSR2 => Request::Upgrade,
                    // The upgrade to this process was stopped or timed out.
                    SIGTERM if sender.is_some() && sender == upgrader => Request::Withdraw,
                    _ => Request::Drain,
                });
            }
        })
        .map_err(fail)?;
    // The supervisor writes --pid-file (and removes it at exit unless it handed over).
    supervisor.run(server, |serving| announce(serving.addrs))?;
    Ok(())
}

/// How long the process waits at exit for queued log lines to be written.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Logs through `env_logger` (level info, `RUST_LOG` overrides) into the bounded
/// queue of [`LogSink`], whose thread writes to stderr: no loop ever blocks on a log
/// line. Colours only when stderr is a terminal, as `env_logger` does by itself.
fn start_logging(format: LogFormat) -> io::Result<LogSink> {
    let (sink, queue) = LogSink::start(io::stderr())?;
    let style = if io::stderr().is_terminal() && format == LogFormat::Text {
        WriteStyle::Always
    } else {
        WriteStyle::Never
    };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder
        .target(Target::Pipe(Box::new(queue)))
        .write_style(style);
    if format == LogFormat::Json {
        builder.format(|out, record| {
            let timestamp = out.timestamp();
            log_format::write_json(out, &timestamp, record)
        });
    }
    builder.init();
    Ok(sink)
}

/// Prints one `listening on ADDR` line per listener, in the order given, and nothing
/// else on stdout, for scripts that start the server on --port 0. On a thread of its
/// own: a stdout nobody reads blocks the print, and must not block the supervisor
/// thread that answers signals.
fn announce(addrs: Vec<SocketAddr>) {
    let print = |addrs: &[SocketAddr]| {
        let mut stdout = std::io::stdout().lock();
        let announced = addrs
            .iter()
            .try_for_each(|addr| writeln!(stdout, "listening on {addr}"))
            .and_then(|()| stdout.flush());
        if let Err(err) = announced {
            warn!("cannot write the listening lines to stdout: {err}");
        }
    };
    let on_thread = addrs.clone();
    let spawned = std::thread::Builder::new()
        .name("greeter-stdout".to_owned())
        .spawn(move || print(&on_thread));
    if spawned.is_err() {
        print(&addrs);
    }
}
