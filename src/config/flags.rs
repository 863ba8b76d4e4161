//! `greeter-server`'s flags, as clap parses them: their names, defaults, help and
//! value parsers. The config file and the environment take the same names (see
//! [`crate::config::keys`]) and their values are checked by these same parsers, so a
//! value means the same wherever it is written. The greeting's flags
//! ([`GreetingArgs`]) are a group of their own, which `greeter-load` shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::{Action, Pregreet};
use crate::config::values::{parse_metrics_addr, parse_name};
use crate::log_format::LogFormat;
use crate::parse::{parse_duration, parse_positive_duration, parse_size, DEFAULT_PORT};
use crate::rate::{parse_rate, Rate};
use crate::tarpit::Drip;

/// The server's settings as flags. [`crate::config::Settings`] layers them over the
/// environment, the config file and the defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address or host name to listen on; repeat it for several. A name is listened on
    /// at every address it resolves to (localhost: what the hosts file gives it,
    /// usually 127.0.0.1 and ::1). :: alone also takes IPv4; beside an IPv4 address it
    /// takes IPv6 only
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: Vec<String>,

    /// Port to listen on, for every --host; 0 picks a free one (the real port is printed)
    #[arg(long, default_value_t = DEFAULT_PORT, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16))]
    pub port: u16,

    /// A name for the listener (letters, digits, '.', '_' and '-', at most 64): a
    /// reload and an upgrade match it to its sockets by this name, and systemd's
    /// sockets by FileDescriptorName= (default: matched by host and port)
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// The greeting: `--message` or `--message-file`.
    #[command(flatten)]
    pub greeting: GreetingArgs,

    /// Connections held at once, besides those in a --greet-delay (see
    /// --max-delayed); the rest wait in the kernel's listen backlog
    #[arg(long, value_name = "N", default_value_t = 10_000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections held in their --greet-delay at once, apart from --max-connections;
    /// a client that would be delayed beyond it is closed at once without the
    /// greeting (reason delay-full) (default: --max-connections)
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_delayed: Option<u32>,

    /// Close a peer that has not taken the whole greeting within this time
    #[arg(long, value_name = "DUR", default_value = "30s", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Listen backlog (the kernel caps it at net.core.somaxconn)
    #[arg(long, value_name = "N", default_value_t = 1024, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub backlog: u32,

    /// On SIGINT/SIGTERM, wait this long for in-flight greetings before closing them
    #[arg(long, value_name = "DUR", default_value = "10s", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGINT/SIGTERM, first greet on for this long with /healthz answering 503
    /// (stopping), so that load balancers stop sending new connections, then drain; a
    /// second signal ends the delay at once (default: 0s, off)
    #[arg(long, value_name = "DUR", default_value = "0s", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After the greeting, wait at most this long for a peer that sent data to close
    /// its side, so that closing never resets the connection under the greeting
    #[arg(long, value_name = "DUR", default_value = "2s", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub linger_timeout: Duration,

    /// At most N connections held at once from one client address; more are closed
    /// at once without the greeting (default: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_ip: Option<u32>,

    /// Event loops, each on its own thread, sharing the listening socket; 0 means one
    /// per available core. Limits apply per worker
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub workers: u32,

    /// Every connection must begin with a PROXY protocol header (v1 or v2, as HAProxy's
    /// send-proxy sends); its client is the one limits and logs see. The greeting
    /// waits for the header; a missing or bad one closes the connection
    #[arg(long)]
    pub proxy_protocol: bool,

    /// With --proxy-protocol, how long a connection has to send its header, counted
    /// from the accept: the kernel accepts once the first bytes are there, or after
    /// about 1s if none come (TCP_DEFER_ACCEPT), so a silent client is closed about
    /// 1s + DUR after it connects
    #[arg(long, value_name = "DUR", default_value = "3s", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub proxy_timeout: Duration,

    /// Greet only clients in this address or CIDR block; repeat it for several. With
    /// allow entries an address none contains is denied; the most specific entry of
    /// --allow and --deny decides (a tie: deny). With --proxy-protocol the client is
    /// the one the header names
    #[arg(long, value_name = "CIDR", value_parser = crate::access::parse_entry_flag)]
    pub allow: Vec<String>,

    /// Do not greet clients in this address or CIDR block (closed at once, reason
    /// denied); repeat it for several
    #[arg(long, value_name = "CIDR", value_parser = crate::access::parse_entry_flag)]
    pub deny: Vec<String>,

    /// As --allow, for every entry of this file (one address or CIDR block a line,
    /// # comments); repeat it for several
    #[arg(long, value_name = "PATH")]
    pub allow_file: Vec<PathBuf>,

    /// As --deny, for every entry of this file (one address or CIDR block a line,
    /// # comments); repeat it for several
    #[arg(long, value_name = "PATH")]
    pub deny_file: Vec<PathBuf>,

    /// Send denied clients this text instead of nothing, closed as a greeting is
    /// (default: nothing)
    #[arg(long, value_name = "TEXT")]
    pub deny_message: Option<String>,

    /// What a denied client gets: close (closed, sent --deny-message if set) or
    /// tarpit (trapped with this listener's --drip settings, why=deny; when the
    /// tarpit is full, closed at once, reason trap-full)
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = Action::Close)]
    pub deny_action: Action,

    /// At most RATE new connections from one source, e.g. 20/s, 600/m or 3600/h, with
    /// a burst of one second's worth; more are closed at once without the greeting
    /// (reason rate). A source is an address cut to --rate-prefix-v4/-v6 bits
    /// (default: no limit)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_rate_per_ip: Option<Rate>,

    /// --max-rate-per-ip counts IPv4 clients by their first BITS bits (32: each
    /// address is a source)
    #[arg(long, value_name = "BITS", default_value_t = 32, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u8).range(0..=32))]
    pub rate_prefix_v4: u8,

    /// --max-rate-per-ip counts IPv6 clients by their first BITS bits (64: one host
    /// usually owns a /64)
    #[arg(long, value_name = "BITS", default_value_t = 64, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u8).range(0..=128))]
    pub rate_prefix_v6: u8,

    /// --max-rate-per-ip remembers at most N sources (about 88 bytes each, measured),
    /// forgetting the least recently seen first
    #[arg(long, value_name = "N", default_value_t = 100_000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub rate_table_size: u32,

    /// Listeners with the same rate group share one --max-rate-per-ip table (a
    /// source's connections to any of them count together; their rate settings must be
    /// the same) (default: each listener counts its own sources)
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub rate_group: Option<String>,

    /// What a client over --max-rate-per-ip gets: close (closed at once, reason rate)
    /// or tarpit (trapped with this listener's --drip settings, why=rate; when the
    /// tarpit is full, closed at once, reason trap-full)
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = Action::Close)]
    pub rate_action: Action,

    /// Hold the greeting this long once the client is known (after its PROXY header
    /// with --proxy-protocol); a client that sends anything meanwhile is a pregreeter
    /// (see --pregreet). Shorter than --write-timeout, which it counts against
    /// (default: 0s, off)
    #[arg(long, value_name = "DUR", default_value = "0s", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub greet_delay: Duration,

    /// What a pregreeter gets: greet (its greeting after the delay; logged and
    /// counted), drop (closed at once without it, reason pregreet) or tarpit (trapped
    /// at once with this listener's --drip settings, why=pregreet; when the tarpit is
    /// full, closed at once, reason trap-full)
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = Pregreet::Greet)]
    pub pregreet: Pregreet,

    /// A client that waited out its --greet-delay without sending anything is greeted
    /// at once for this long after (its source, cut to --rate-prefix-v4/-v6 bits);
    /// 0s: every connection is delayed
    #[arg(long, value_name = "DUR", default_value = "24h", allow_hyphen_values = true,
          value_parser = parse_duration)]
    pub pass_ttl: Duration,

    /// --pass-ttl remembers at most N sources (as a --rate-table-size entry each),
    /// forgetting the least recently seen first
    #[arg(long, value_name = "N", default_value_t = 100_000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub pass_table_size: u32,

    /// Trap clients instead of greeting them: each is sent a drip every
    /// --drip-interval (see --drip) and held until it closes, resets or reaches
    /// --trap-timeout, outside --max-connections (see --max-trapped)
    #[arg(long)]
    pub tarpit: bool,

    /// What a --tarpit listener drips: lines (a line of --drip-line-length random
    /// printable bytes, never starting with SSH-, forever; the greeting first if
    /// --message or --message-file is set) or greeting (the greeting, --drip-bytes at
    /// a time, then the ordinary close)
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Drip::Lines)]
    pub drip: Drip,

    /// The length of a --drip lines line, its CRLF included (3 to 255)
    #[arg(long, value_name = "N", default_value_t = 32, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u8).range(3..=255))]
    pub drip_line_length: u8,

    /// The time between two drips of a --tarpit listener (at least 10ms, the timers'
    /// resolution)
    #[arg(long, value_name = "DUR", default_value = "10s", allow_hyphen_values = true,
          value_parser = parse_drip_interval)]
    pub drip_interval: Duration,

    /// The greeting's bytes sent each --drip-interval with --drip greeting
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub drip_bytes: u32,

    /// A MaxMind DB country or city database (GeoLite2-Country, GeoLite2-City, DB-IP's
    /// country lite): each trapped client's country is looked up once, for the TRAP
    /// and CLOSE lines (country=) and the trap metrics' country label; read again on
    /// SIGHUP (default: no lookup)
    #[arg(long, value_name = "PATH")]
    pub geoip_db: Option<PathBuf>,

    /// End a trap that has lasted this long (reason trap-timeout; checked at each
    /// drip) (default: never)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub trap_timeout: Option<Duration>,

    /// Clients trapped at once by the --tarpit listeners in the whole server (all
    /// workers), apart from --max-connections; at it, the tarpit listeners are not
    /// accepted from (new clients wait in the backlog) until a trap ends
    #[arg(long, value_name = "N", default_value_t = 4096, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_trapped: u32,

    /// At most N clients trapped at once from one address, per worker; more are
    /// closed at once (reason trap-full) (default: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_trapped_per_ip: Option<u32>,

    /// Serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP on
    /// this address and port, e.g. 127.0.0.1:9464 or localhost:9464 (a name: the first
    /// address it resolves to) (default: off)
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_addr)]
    pub metrics: Option<SocketAddr>,

    /// Log one ACCEPT and one CLOSE line per connection at info level (key=value, for
    /// fail2ban and the like); without it they are debug lines
    #[arg(long)]
    pub log_connections: bool,

    /// On SIGUSR2, how long the new binary has to report that it serves before it is
    /// stopped (SIGTERM, SIGKILL --drain-timeout later) and this process goes on
    /// serving
    #[arg(long, value_name = "DUR", default_value = "10s", allow_hyphen_values = true,
          value_parser = parse_positive_duration)]
    pub upgrade_timeout: Duration,

    /// Write the server's pid to this file once it serves (atomically; rewritten by
    /// the new process after an upgrade; removed at exit by the process it names)
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    /// How log lines are written: text (as documented) or json (one object a line:
    /// ts, level, target, msg, and the connection lines' fields as typed keys)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Send buffer of every connection (SO_SNDBUF, set once on the listening socket);
    /// bounds the kernel memory a peer that does not read can hold (default: the
    /// kernel's autotuning, up to net.ipv4.tcp_wmem's maximum)
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub send_buffer: Option<usize>,
}

/// The greeting: `--message` or `--message-file`, or the default. A flag group of its
/// own, as `greeter-load` takes it too (to check what it receives).
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

/// Serves a greeting over TCP to every client that connects, then closes.
///
/// The greeting is sent the moment a connection is accepted; closing never loses it
/// to a reset, and the server keeps serving through resets, stalls and floods.
#[derive(Debug, clap::Parser)]
#[command(name = "greeter-server", version, after_help = SERVER_AFTER_HELP)]
pub struct ServerCli {
    /// Read settings from this TOML file (also GREETER_CONFIG); flags and GREETER_*
    /// variables override what it sets
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Check the configuration (flags, environment and --config) without serving:
    /// print the effective settings as a config file and exit 0, or print the problem
    /// and exit 2
    #[arg(long)]
    pub check_config: bool,

    /// Check that the server these settings describe greets, for a container's
    /// HEALTHCHECK: connect to the first listener (through loopback for 0.0.0.0 or
    /// ::), send a PROXY header if it takes one, and compare what arrives with its
    /// greeting; exit 0 if it is exactly that, 1 (one line on stderr) if not, 2 for a
    /// bad configuration
    #[arg(long, conflicts_with = "check_config")]
    pub health_check: bool,

    /// The server's settings.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The part of `--help` below the flags.
const SERVER_AFTER_HELP: &str = "\
Prints `listening on ADDR` on stdout once it serves (the real port with --port 0).
Started by systemd with a socket (LISTEN_FDS), it serves that socket instead.

Every flag is also a config-file key (max-connections = 100) and an environment
variable (GREETER_MAX_CONNECTIONS=100): flags win over the environment, which wins
over the file, which wins over the defaults. [[listener]] tables in the file serve
several ports, each with its own host, port, message or message-file and
proxy-protocol.

Signals:
  SIGINT, SIGTERM  stop accepting, greet what is queued, drain within --drain-timeout,
                   exit 0 (a second one closes what is in flight at once); with
                   --shutdown-delay, first greet on for that long with /healthz
                   answering 503 (a second signal ends the delay, a third closes
                   what is in flight)
  SIGHUP           re-read --config (or --message-file and the --allow-file and
                   --deny-file lists) for new connections; settings that need new
                   sockets or threads wait for a restart (a failed reload keeps
                   everything as it was). Write the files by rename (a new file
                   in the same directory, then mv): a file caught being rewritten
                   in place can be read half-written
  SIGUSR1          log the totals so far
  SIGUSR2          upgrade: start the binary again with the listening sockets, and
                   drain once it serves (a new binary that fails changes nothing)

Exit codes: 0 stopped by a signal (or --check-config found no problem); 1 a
start-up or worker error (one line on stderr); 2 a bad flag, variable or config file.

Logs go to stderr; RUST_LOG sets the level (default info; RUST_LOG=debug adds a
line per connection).";

/// Checks `text` as the value of `--NAME` with that flag's own parser, so that a value
/// from the config file or the environment means what it would as a flag.
///
/// # Errors
/// What the parser says is wrong, as a phrase (`0 is not in 1..=4294967295`).
pub fn check_value(name: &str, text: &str) -> Result<(), String> {
    use clap::CommandFactory;
    if let Some(cause) = empty_value(name, text) {
        return Err(cause.to_owned());
    }
    let flag = format!("--{name}={text}");
    match ServerCli::command().try_get_matches_from(["greeter-server", flag.as_str()]) {
        Ok(_) => Ok(()),
        Err(err) => Err(parse_error_cause(&err)),
    }
}

/// What is wrong with `text` as the value of `--NAME` if it is empty and may not be
/// (`--message`, `--deny-message`). clap lets an empty value through for those, so
/// that the error is greeter's one line rather than clap's usage text.
pub fn empty_value(name: &str, text: &str) -> Option<&'static str> {
    match (name, text) {
        ("message", "") => Some("the greeting is empty (give a non-empty greeting)"),
        ("deny-message", "") => {
            Some("the deny message is empty (give a text, or leave it out to send nothing)")
        }
        _ => None,
    }
}

/// What a clap error says is wrong with a value, without clap's framing (`error:`,
/// the flag, the usage).
pub fn parse_error_cause(err: &clap::Error) -> String {
    if let Some(cause) = std::error::Error::source(err) {
        return cause.to_string();
    }
    let mut text = err.to_string();
    // clap quotes a bad value whole: cut and escape it as every greeter error does.
    if let Some(clap::error::ContextValue::String(value)) =
        err.get(clap::error::ContextKind::InvalidValue)
    {
        let shown = crate::error::bare_or_quoted(value);
        if shown != value.as_str() {
            text = text.replacen(&format!("'{value}'"), &shown, 1);
        }
    }
    let first = text.lines().next().unwrap_or_default();
    let cause = first.strip_prefix("error: ").unwrap_or(first);
    // A choice's values (`[possible values: greet, drop]`) say how to fix it.
    match text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("[possible values:"))
    {
        Some(values) => format!("{cause} {values}"),
        None => cause.to_owned(),
    }
}

/// `--drip-interval`: a duration of at least 10 ms, the deadline queues' tick (a
/// shorter one would silently become a tick).
fn parse_drip_interval(text: &str) -> Result<Duration, String> {
    match parse_positive_duration(text)? {
        interval if interval < Duration::from_millis(10) => Err(format!(
            "{text} is shorter than 10ms, the timers' resolution (write 10ms or more)"
        )),
        interval => Ok(interval),
    }
}

#[cfg(test)]
mod tests;
