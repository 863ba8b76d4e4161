//! `greeter-server`'s logging: `env_logger` (level info, `RUST_LOG` overrides) in the
//! chosen format, writing into the bounded queue of [`LogSink`], whose thread writes to
//! stderr, so that no loop ever blocks on a log line; and a panic logged as one line.

use std::io::{self, IsTerminal};
use std::time::Duration;

use env_logger::{Target, WriteStyle};
use log::error;

use crate::log_format::{self, LogFormat};
use crate::log_sink::LogSink;

/// How long the process waits at exit for queued log lines to be written: bounded,
/// so that a stderr nobody reads cannot keep a stopped server alive.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts logging in `format` for the whole process, and logs a panic as one error
/// line; returns the sink to flush (for [`FLUSH_TIMEOUT`]) at exit. Colours only when
/// stderr is a terminal, as `env_logger` does by itself.
///
/// # Errors
/// If the log writer thread cannot be started.
pub fn start(format: LogFormat) -> io::Result<LogSink> {
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
    log_panics_as_one_line();
    Ok(sink)
}

/// A panic is a bug, never a user's doing: log where it happened as one error line
/// instead of a multi-line report; the failed worker then ends the process with exit
/// 1 and the one-line `worker N failed` error.
fn log_panics_as_one_line() {
    std::panic::set_hook(Box::new(|info| {
        // The target it has always had: the binary's crate name.
        error!(
            target: "greeter_server",
            "internal error: {}",
            info.to_string().replace('\n', " ")
        );
    }));
}
