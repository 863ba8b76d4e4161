//! The runs of `greeter-server` that check and exit without serving:
//! `--check-config` (the start-up checks, then the effective settings as a config
//! file) and `--health-check` (whether the server the settings describe greets).
//! Each says what it found on stdout or stderr and returns a [`Verdict`], which the
//! binary turns into its exit code.

use std::io::{self, Write};

use crate::config::Settings;
use crate::health_check;
use crate::startup;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// All is well (exit 0).
    Passed,
    /// The check failed (exit 1).
    Failed,
    /// The configuration is bad (exit 2, as for a bad flag).
    BadConfig,
}

/// `--check-config`: every start-up check that needs no socket, then the effective
/// settings on stdout as a config file, or the problem on stderr.
pub fn check_config(settings: &Settings) -> Verdict {
    let checked = match checked(settings) {
        Ok(checked) => checked,
        Err(verdict) => return verdict,
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
        Ok(()) => Verdict::Passed,
        Err(err) => {
            eprintln!("greeter-server: cannot write the configuration to stdout: {err}");
            Verdict::Failed
        }
    }
}

/// `--health-check`: whether the server these settings describe greets (one line on
/// stdout), or not (one line on stderr).
pub fn check_health(settings: &Settings) -> Verdict {
    let checked = match checked(settings) {
        Ok(checked) => checked,
        Err(verdict) => return verdict,
    };
    match health_check::check(&checked.config) {
        Ok(addr) => {
            println!("greeter-server: healthy: {addr} sent the greeting");
            Verdict::Passed
        }
        Err(why) => {
            eprintln!("greeter-server: unhealthy: {why}");
            Verdict::Failed
        }
    }
}

/// The start-up checks that need no socket, or the problem said on stderr.
fn checked(settings: &Settings) -> Result<startup::Checked, Verdict> {
    startup::check(settings).map_err(|err| {
        eprintln!("greeter-server: {err}");
        Verdict::BadConfig
    })
}
