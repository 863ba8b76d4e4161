//! Flag groups the binaries share, as clap argument structs each binary flattens into
//! its own: the server to talk to (`greeter-client`, `greeter-load`) and the greeting
//! (`greeter-server`, `greeter-load`).

use std::path::PathBuf;
use std::time::Duration;

use crate::client::unbracket;
use crate::config::{parse_positive_duration, parse_size};
use crate::error::Failure;
use crate::greeting::{read_greeting_file, Greeting, DEFAULT_GREETING};

/// The port both the server and the client use by default.
pub const DEFAULT_PORT: u16 = 8080;

/// The server a client connects to: `--host` and `--port`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Server host name or address (IPv6 with or without brackets: ::1 or [::1])
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Server port (1 to 65535)
    #[arg(long, default_value_t = DEFAULT_PORT, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

impl TargetArgs {
    /// The host as the resolver takes it (`[::1]` becomes `::1`).
    pub fn host(&self) -> &str {
        unbracket(&self.host)
    }
}

/// The greeting: `--message` or `--message-file`, or the default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GreetingArgs {
    /// The greeting: exactly these bytes (UTF-8), no newline added [default: "Hello
    /// there! This is the hosted server"]
    // An empty one is let through, to be refused with greeter's one-line error
    // (`GreetingArgs::load`, and the server's settings), not clap's usage text.
    #[arg(long, value_name = "TEXT", conflicts_with = "message_file")]
    pub message: Option<String>,

    /// The greeting is this file's bytes (any bytes; a regular file of at most 1GiB,
    /// read once)
    #[arg(long, value_name = "PATH")]
    pub message_file: Option<PathBuf>,
}

impl GreetingArgs {
    /// Loads the greeting once: the file's bytes, the text's, or the default.
    ///
    /// # Errors
    /// A [`Failure`] naming the file and the cause when it cannot be read, or
    /// saying that the greeting is empty.
    pub fn load(&self) -> Result<Greeting, Failure> {
        let greeting = match (&self.message_file, &self.message) {
            (Some(path), _) => read_greeting_file(path)?,
            (None, Some(text)) => Greeting::from(text.as_str()),
            (None, None) => Greeting::from(DEFAULT_GREETING),
        };
        if greeting.is_empty() {
            let what = match &self.message_file {
                Some(path) => format!("greeting file {}", path.display()),
                None => "--message".to_owned(),
            };
            return Err(Failure::new(
                format!("cannot use {what}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the greeting is empty"),
                Some("give a non-empty greeting"),
            ));
        }
        Ok(greeting)
    }
}

/// Fetches a greeter server's greeting and prints it exactly as received.
///
/// Connects, reads until the server closes the connection, and writes the bytes to
/// stdout. Exits 1 with one line saying what failed if no whole greeting arrived.
#[derive(Debug, clap::Parser)]
#[command(name = "greeter-client", version)]
pub struct ClientCli {
    /// The server.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Limit for connecting, and for each read
    #[arg(long, value_name = "DUR", default_value = "10s", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Cut off a server that sends more than this many bytes
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_bytes: usize,
}
