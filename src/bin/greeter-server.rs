//! `greeter-server`: parse the flags (layered over the environment and config file),
//! set up logging, map signals to supervisor requests, and turn the outcome into an
//! exit code. The library does the rest: [`greeter::check_only`] the runs that only
//! check, [`greeter::startup`] checks and binds, [`greeter::supervisor`] runs.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;

use greeter::check_only::{self, Verdict};
use greeter::config::settings::Environment;
use greeter::config::{ServerCli, Settings};
use greeter::supervisor::{self, Request, Requests, Supervisor};
use greeter::upgrade::{Report, UpgradeCommand};
use greeter::{fdlimit, logging, startup, Failure};

/// The exit code of a bad flag, variable or config file (clap's for a bad flag).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    // First: the descriptor an upgrading process passed, before anything else could
    // take or close it.
    let mut report = Report::take();
    let matches = ServerCli::command()
        .try_get_matches()
        .unwrap_or_else(|err| {
            // A bad flag (not --help or --version): the upgrading process quotes the line.
            if err.use_stderr() {
                if let Some(report) = report.take() {
                    report.bad_flag(&err.to_string());
                }
            }
            err.exit()
        });
    let cli = ServerCli::from_arg_matches(&matches).ok();
    let settings = match Settings::load(&matches, &Environment::from_process()) {
        Ok(settings) => settings,
        Err(err) => return fail(&err, report, ExitCode::from(USAGE_ERROR)),
    };
    match cli {
        Some(cli) if cli.check_config => return exit_code(check_only::check_config(&settings)),
        Some(cli) if cli.health_check => return exit_code(check_only::check_health(&settings)),
        _ => {}
    }
    let log_format = settings.server_args().log_format;
    let log_sink = match logging::start(log_format) {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("greeter-server: cannot start the log writer thread: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = serve(settings, &mut report);
    log_sink.flush(logging::FLUSH_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A failure before the supervisor took the report (which then says it).
        Err(err) => fail(&err, report, ExitCode::FAILURE),
    }
}

/// Prints `err` as the one line on stderr, tells the upgrading process (if the report
/// is still here), and exits with `code`.
fn fail(err: &dyn std::fmt::Display, report: Option<Report>, code: ExitCode) -> ExitCode {
    eprintln!("greeter-server: {err}");
    if let Some(report) = report {
        report.failed(&err);
    }
    code
}

fn exit_code(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Passed => ExitCode::SUCCESS,
        Verdict::Failed => ExitCode::FAILURE,
        Verdict::BadConfig => ExitCode::from(USAGE_ERROR),
    }
}

/// Serves until the supervisor returns; the report goes to the supervisor once
/// everything before it has worked.
fn serve(settings: Settings, report: &mut Option<Report>) -> Result<(), Failure> {
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
    let upgrader = report.as_ref().map(Report::upgrader);
    // The supervisor says `ready` as soon as the workers run, or why it failed first.
    if let Some(report) = report.take() {
        supervisor.report_to(report);
    }
    // Installed before the listening lines are printed, so that a SIGTERM sent as soon
    // as they are seen is handled.
    map_signals(supervisor.requests(), upgrader)
        .map_err(|err| Failure::new("cannot install signal handlers", err, None))?;
    // The supervisor writes --pid-file (and removes it at exit unless it handed over).
    supervisor.run(server, |serving| supervisor::announce(serving.addrs))?;
    Ok(())
}

/// Starts the thread that turns each signal into a request (the handlers only queue
/// it); `upgrader` is the pid of the process upgrading to this one, if one is.
fn map_signals(requests: Requests, upgrader: Option<u32>) -> std::io::Result<()> {
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
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
        })?;
    Ok(())
}
