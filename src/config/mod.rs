//! The server's settings: the checked [`Config`] the loops run with, and how it is
//! made. [`flags`] defines every setting as a flag, [`keys`] names each in the file
//! and the environment, [`file`](mod@file) reads the TOML config file, and [`Settings`] layers
//! flags over environment over file over defaults, prints the result
//! (`--check-config`) and turns it into a [`Config`]: checked and loaded once, so that
//! the event loop never re-validates anything.

pub mod file;
pub mod flags;
pub mod keys;
pub mod listener_id;
pub mod settings;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access::{AccessList, Sources};
use crate::admission::Policy;
pub use crate::cli::DEFAULT_PORT;
use crate::client::unbracket;
use crate::config::keys::{FileType, Key};
use crate::error::{bare_or_quoted, quote, Failure};
pub use crate::greeting::{read_greeting_file, Greeting, DEFAULT_GREETING, MAX_GREETING_BYTES};
use crate::pass::{PassSettings, PassTable};
use crate::rate::{RateSettings, RateTable};
pub use flags::{ServerArgs, ServerCli};
pub use listener_id::ListenerId;
pub use settings::{Settings, SettingsError, Source};

/// The longest duration any flag takes. Far beyond any useful timeout, and far enough
/// from the clock's range that adding it to the time now can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a human-friendly duration such as `250ms`, `10s` or `1m`, at most
/// [`MAX_DURATION`].
///
/// # Errors
/// Returns a message fit for clap's usage error when `text` is not a duration or is
/// longer than a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // The duration flags take values that begin with '-' (clap would otherwise read
    // `-1s` as a flag), so these are said here, in the words of the other errors.
    if let Some(rest) = text.strip_prefix('-') {
        return Err(
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                format!(
                    "{text:?} is negative: a duration is 0 or more \
                 (write durations like 250ms, 10s or 1m)"
                )
            } else {
                format!("a duration is missing: {text} is a flag (write durations like 250ms, 10s or 1m)")
            },
        );
    }
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (write durations like 250ms, 10s or 1m)"))?;
    if duration > MAX_DURATION {
        return Err("durations above 365 days are not supported".to_owned());
    }
    Ok(duration)
}

/// As [`parse_duration`], but zero is refused too: for timeouts and run lengths, where
/// zero could only mean "fail at once".
///
/// # Errors
/// As [`parse_duration`], or when the duration is zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".to_owned()),
        duration => Ok(duration),
    }
}

/// Parses a byte size: `65536`, or a number with a binary unit, `64KiB`, `4MiB`,
/// `1GiB` (`K`, `M`, `G` mean the same).
///
/// # Errors
/// Returns a message fit for clap's usage error when `text` is not such a size or is
/// larger than 1 GiB.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let usage = || {
        format!(
            "{} is not a size (write sizes like 65536, 64KiB or 4MiB)",
            quote(text.as_bytes())
        )
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| usage())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(usage()),
    };
    match number.checked_mul(scale) {
        Some(bytes) if bytes <= 1 << 30 => Ok(bytes as usize),
        _ => Err("sizes above 1GiB are not supported".to_owned()),
    }
}

/// A checked value of `key` in the one form the server runs with and `--check-config`
/// prints, wherever it was written: an integer in decimal (`0100`, `+100`: `100`), a
/// path absolute and normalised (relative to `relative_to`, itself relative to the
/// current directory; see [`normalise_path`]); anything else as it is.
///
/// # Errors
/// A phrase saying why a path cannot be used: it is empty, the current directory
/// cannot be read, or the absolute path is not UTF-8.
pub fn canonical_value(key: &Key, text: &str, relative_to: &Path) -> Result<String, String> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let integer =
        key.file_type == FileType::Integer || (key.file_type == FileType::Size && all_digits);
    if integer {
        // Checked by the flag's parser already, so it parses; kept as it is if not.
        return Ok(text
            .parse::<i128>()
            .map_or_else(|_| text.to_owned(), |n| n.to_string()));
    }
    if !key.is_path() {
        return Ok(text.to_owned());
    }
    if text.is_empty() {
        return Err("the path is empty (give a file's path)".to_owned());
    }
    let mut joined = relative_to.join(text);
    if joined.is_relative() {
        let here = std::env::current_dir().map_err(|err| {
            format!(
                "cannot make {text} absolute: cannot read the current directory: {} (give an absolute path)",
                crate::error::describe_io_error(&err)
            )
        })?;
        joined = here.join(joined);
    }
    normalise_path(&joined)
        .into_os_string()
        .into_string()
        .map_err(|_| format!("the absolute path of {text} is not UTF-8 (give an absolute path)"))
}

/// `path` normalised lexically, as the file need not exist: `.` and repeated or
/// trailing `/` dropped, each `..` taking off the component before it (never above
/// the root). Symbolic links are not followed, so `link/..` is the directory that holds
/// `link`, here and when the server opens the path (it opens this one).
pub fn normalise_path(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => {
                normal.push(component);
            }
        }
    }
    normal
}

/// Parses `--metrics`: an address with its port (`127.0.0.1:9464`, `[::1]:9464`), or a
/// host name with one (`localhost:9464`: the first address it resolves to).
///
/// # Errors
/// A message fit for clap's usage error saying what is missing or what did not
/// resolve.
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if unbracket(text).parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{} has no port: write ADDRESS:PORT, e.g. 127.0.0.1:9464",
            bare_or_quoted(text)
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{} has no port: write HOST:PORT, e.g. 127.0.0.1:9464 or localhost:9464",
            bare_or_quoted(text)
        ));
    };
    let port: u16 = port.parse().map_err(|_| {
        format!(
            "{} is not a port (write HOST:PORT, e.g. localhost:9464)",
            quote(port.as_bytes())
        )
    })?;
    let resolved = (unbracket(host), port).to_socket_addrs().map_err(|err| {
        format!(
            "cannot resolve {}: {err} (give an address, e.g. 127.0.0.1:{port})",
            bare_or_quoted(host)
        )
    })?;
    resolved.into_iter().next().ok_or_else(|| {
        format!(
            "{} has no address (give one, e.g. 127.0.0.1:{port})",
            bare_or_quoted(host)
        )
    })
}

/// Everything the server needs, checked: the listeners with their greetings, and the
/// limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to listen on, in the order given (at least one listener).
    pub listeners: Vec<ListenerConfig>,
    /// How many connections may be held at once (writing or lingering), besides the
    /// delayed ones.
    pub max_connections: usize,
    /// How many connections may wait out their `--greet-delay` at once (not counted
    /// in `max_connections`); a client that would be delayed beyond it is closed at
    /// once (`delay-full`).
    pub max_delayed: usize,
    /// How long a peer has, from accept, to take the whole greeting.
    pub write_timeout: Duration,
    /// The listen backlog passed to `listen(2)`.
    pub backlog: i32,
    /// How long a shutdown waits for in-flight greetings.
    pub drain_timeout: Duration,
    /// How long a lingering close waits for the peer's EOF.
    pub linger_timeout: Duration,
    /// How many connections one client address may hold at once; `None`: no limit.
    pub max_per_ip: Option<u32>,
    /// `SO_SNDBUF` for the listening sockets, inherited by every accepted one; `None`:
    /// the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// How long a connection has, from accept, to send its PROXY header.
    pub proxy_timeout: Duration,
    /// The level of the per-connection `ACCEPT` and `CLOSE` lines: info with
    /// `--log-connections`, else debug.
    pub connection_log_level: log::Level,
}

/// One listener: its addresses (a host name gives all of its own) and what the
/// connections it accepts get.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Which listener it is, across reloads and upgrades (its name, or its hosts and
    /// port): how a new config's table is matched to the sockets that serve it.
    pub id: ListenerId,
    /// Where to listen, in the order given (at least one address, one port).
    pub addrs: Vec<SocketAddr>,
    /// The greeting, loaded once and shared by every connection (never copied).
    pub greeting: Greeting,
    /// Whether every connection starts with a PROXY protocol header to read first.
    pub proxy_protocol: bool,
    /// Who is greeted (`--allow`, `--deny`); `None`: everyone.
    pub policy: Option<Arc<Policy>>,
}

impl Config {
    /// The defaults of `greeter-server`, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listeners: vec![ListenerConfig {
                id: ListenerId::new(None, &[listen.ip().to_string()], listen.port()),
                addrs: vec![listen],
                greeting: Greeting::from(DEFAULT_GREETING),
                proxy_protocol: false,
                policy: None,
            }],
            max_connections: 10_000,
            max_delayed: 10_000,
            write_timeout: Duration::from_secs(30),
            backlog: 1024,
            drain_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            max_per_ip: None,
            send_buffer: None,
            proxy_timeout: Duration::from_secs(3),
            connection_log_level: log::Level::Debug,
        }
    }

    /// Gives every listener this greeting.
    pub fn with_greeting(mut self, greeting: impl Into<Greeting>) -> Self {
        let greeting = greeting.into();
        for listener in &mut self.listeners {
            listener.greeting = greeting.clone();
        }
        self
    }

    /// Makes every listener expect a PROXY protocol header first.
    pub fn with_proxy_protocol(mut self) -> Self {
        for listener in &mut self.listeners {
            listener.proxy_protocol = true;
        }
        self
    }

    /// Whether any listener expects PROXY protocol headers.
    pub fn any_proxy_protocol(&self) -> bool {
        self.listeners
            .iter()
            .any(|listener| listener.proxy_protocol)
    }
}

impl ServerArgs {
    /// The config of these flags alone: one listener (every `--host` on `--port`),
    /// its greeting loaded.
    ///
    /// # Errors
    /// A [`Failure`] naming the host that does not resolve, or the greeting file and
    /// the cause when it cannot be read, or saying that the greeting is empty.
    pub fn into_config(self) -> Result<Config, Failure> {
        self.check_combination().map_err(|cause| {
            Failure::new(
                "cannot use these settings",
                io::Error::new(io::ErrorKind::InvalidInput, cause),
                None,
            )
        })?;
        let policy = self.policy(None)?;
        self.into_config_with(policy)
    }

    /// As [`ServerArgs::into_config`], with the access policy already built (shared
    /// by listeners with the same entries).
    ///
    /// # Errors
    /// As [`ServerArgs::into_config`].
    pub fn into_config_with(self, policy: Option<Arc<Policy>>) -> Result<Config, Failure> {
        let listener = ListenerConfig {
            id: ListenerId::new(self.name.clone(), &self.host, self.port),
            addrs: resolve_hosts(&self.host, self.port)?,
            greeting: self.greeting.load()?,
            proxy_protocol: self.proxy_protocol,
            policy,
        };
        let mut config = Config::new(listener.addrs[0]);
        config.listeners = vec![listener];
        config.backlog = self.backlog as i32;
        config.send_buffer = self.send_buffer;
        self.apply_reloadable(&mut config);
        Ok(config)
    }

    /// The access policy these flags give (`None` if it would change nothing): the
    /// lists read and built, the deny message loaded, a new rate table and pass table
    /// (unless `running` has one of the same settings: a reload keeps what it
    /// counted and who passed).
    ///
    /// # Errors
    /// A [`Failure`] naming the list file, and its line, that cannot be used.
    pub fn policy(&self, running: Option<&Policy>) -> Result<Option<Arc<Policy>>, Failure> {
        let list = Arc::new(self.access_list(running.map(|policy| &*policy.list))?);
        let rate = self.rate_settings().map(|settings| {
            running
                .and_then(|policy| policy.rate_table_if(&settings))
                .unwrap_or_else(|| Arc::new(RateTable::new(settings)))
        });
        Ok(self.policy_with(list, rate, self.pass_table(running)))
    }

    /// The greet delay's pass table these flags give, if any: the one of `running`
    /// (the policy it replaces, at a reload) if its settings are the same, so that a
    /// reload keeps who passed; else a new one. Each listener has its own.
    pub fn pass_table(&self, running: Option<&Policy>) -> Option<Arc<PassTable>> {
        self.pass_settings().map(|settings| {
            running
                .and_then(|policy| policy.pass_table_if(&settings))
                .unwrap_or_else(|| Arc::new(PassTable::new(settings)))
        })
    }

    /// The access lists these flags name (`--allow`, `--deny` and their files), read
    /// and built, replacing `running` at a reload (see [`AccessList::reload`]).
    ///
    /// # Errors
    /// A [`Failure`] naming the list file, and its line, that cannot be used.
    pub fn access_list(&self, running: Option<&AccessList>) -> Result<AccessList, Failure> {
        AccessList::reload(
            Sources {
                allow: &self.allow,
                deny: &self.deny,
                allow_files: &self.allow_file,
                deny_files: &self.deny_file,
            },
            running,
        )
    }

    /// The access policy of these flags with its list, rate table and pass table
    /// already built (`None` if it would change nothing).
    pub fn policy_with(
        &self,
        list: Arc<AccessList>,
        rate: Option<Arc<RateTable>>,
        pass: Option<Arc<PassTable>>,
    ) -> Option<Arc<Policy>> {
        let policy = Policy {
            list,
            deny_message: self
                .deny_message
                .as_ref()
                .map(|text| Greeting::from(text.as_str())),
            rate,
            greet_delay: self.greet_delay,
            pregreet: self.pregreet,
            pass,
        };
        (!policy.is_open()).then(|| Arc::new(policy))
    }

    /// What `--max-rate-per-ip`'s table is made of, if it is set.
    pub fn rate_settings(&self) -> Option<RateSettings> {
        self.max_rate_per_ip.map(|rate| RateSettings {
            rate,
            prefix_v4: self.rate_prefix_v4,
            prefix_v6: self.rate_prefix_v6,
            table_size: self.rate_table_size,
        })
    }

    /// What the greet delay's pass table is made of, if there is one: with a
    /// `--greet-delay` and a `--pass-ttl` above zero.
    pub fn pass_settings(&self) -> Option<PassSettings> {
        let delayed = !self.greet_delay.is_zero() && !self.pass_ttl.is_zero();
        delayed.then_some(PassSettings {
            ttl: self.pass_ttl,
            prefix_v4: self.rate_prefix_v4,
            prefix_v6: self.rate_prefix_v6,
            table_size: self.pass_table_size,
        })
    }

    /// Checks what no single flag's parser can: that a greet delay leaves time to
    /// write the greeting.
    ///
    /// # Errors
    /// A phrase saying which values clash and how to fix them.
    pub fn check_combination(&self) -> Result<(), String> {
        if !self.greet_delay.is_zero() && self.greet_delay >= self.write_timeout {
            return Err(format!(
                "greet-delay {} is not shorter than write-timeout {}, which counts from \
                 accept (lower greet-delay or raise write-timeout)",
                humantime::format_duration(self.greet_delay),
                humantime::format_duration(self.write_timeout)
            ));
        }
        Ok(())
    }

    /// Sets in `config` what a reload may change besides the greetings: the limits,
    /// timeouts and logging these flags give.
    pub fn apply_reloadable(&self, config: &mut Config) {
        config.max_connections = self.max_connections as usize;
        // As postscreen's pre-queue limit defaults to the process limit of the
        // smtpd processes it hands clients to.
        config.max_delayed = self.max_delayed.unwrap_or(self.max_connections) as usize;
        config.max_per_ip = self.max_per_ip;
        config.write_timeout = self.write_timeout;
        config.linger_timeout = self.linger_timeout;
        config.drain_timeout = self.drain_timeout;
        config.proxy_timeout = self.proxy_timeout;
        config.connection_log_level = if self.log_connections {
            log::Level::Info
        } else {
            log::Level::Debug
        };
    }
}

/// The addresses to listen on: every `--host`, in order, a name resolved to every
/// address it has (duplicates dropped).
///
/// # Errors
/// A [`Failure`] naming the host when it does not resolve, resolves to nothing,
/// or is a multicast or broadcast address.
pub fn resolve_hosts(hosts: &[String], port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for host in hosts {
        let name = unbracket(host);
        // As the error names it: a config file's value may be anything.
        let shown = bare_or_quoted(host);
        let resolved: Vec<SocketAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (name, port)
                .to_socket_addrs()
                .map_err(|err| {
                    Failure::new(
                        format!("cannot resolve --host {shown}"),
                        err,
                        Some("give a name this host can resolve, or an address"),
                    )
                })?
                .collect(),
        };
        if resolved.is_empty() {
            return Err(Failure::new(
                format!("cannot resolve --host {shown}"),
                io::Error::new(io::ErrorKind::NotFound, "it has no IPv4 or IPv6 address"),
                Some("give a name this host can resolve, or an address"),
            ));
        }
        for addr in resolved {
            if addr.ip().is_multicast() || addr.ip() == IpAddr::V4(Ipv4Addr::BROADCAST) {
                return Err(Failure::new(
                    format!("cannot listen on {addr} (--host {host})"),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a multicast or broadcast address cannot accept connections",
                    ),
                    Some("give --host a unicast address, such as 127.0.0.1, 0.0.0.0 or ::"),
                ));
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse(argv: &[&str]) -> Result<ServerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = parse(&[]).unwrap().into_config().unwrap();
        assert_eq!(
            config.listeners[0].addrs,
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            &*config.listeners[0].greeting,
            b"Hello there! This is the hosted server"
        );
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.write_timeout, Duration::from_secs(30));
        assert_eq!(config.backlog, 1024);
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_negative_duration_or_a_flag_in_its_place_is_named() {
        for (text, said) in [
            ("-1s", "\"-1s\" is negative: a duration is 0 or more"),
            ("-.5s", "\"-.5s\" is negative"),
            ("-h", "a duration is missing: -h is a flag"),
            ("--port", "a duration is missing: --port is a flag"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.starts_with(said), "{text}: {err}");
            assert!(
                err.ends_with("(write durations like 250ms, 10s or 1m)"),
                "{err}"
            );
        }
    }

    #[test]
    fn durations_take_human_units() {
        let args = parse(&["--write-timeout", "250ms", "--drain-timeout", "1m"]).unwrap();
        assert_eq!(args.write_timeout, Duration::from_millis(250));
        assert_eq!(args.drain_timeout, Duration::from_secs(60));
        assert!(parse(&["--write-timeout", "soon"]).is_err());
    }

    #[test]
    fn ipv6_hosts_parse() {
        let config = parse(&["--host", "::1", "--port", "0"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.listeners[0].addrs, ["[::1]:0".parse().unwrap()]);
    }

    #[test]
    fn workers_and_per_ip_limit_parse() {
        let args = parse(&["--workers", "0", "--max-per-ip", "3"]).unwrap();
        assert_eq!(args.workers, 0);
        assert_eq!(args.into_config().unwrap().max_per_ip, Some(3));
        assert_eq!(parse(&[]).unwrap().workers, 1);
        assert!(parse(&["--max-per-ip", "0"]).is_err());
    }

    #[test]
    fn message_and_message_file_conflict() {
        let err = parse(&["--message", "hi", "--message-file", "/tmp/x"])
            .err()
            .unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn sizes_take_binary_units_and_stay_in_range() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in [
            "",
            "KiB",
            "64 parsecs",
            "-1",
            "2GiB",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        let args = parse(&["--send-buffer", "64KiB"]).unwrap();
        assert_eq!(args.into_config().unwrap().send_buffer, Some(65536));
    }

    #[test]
    fn values_take_one_form_wherever_they_are_written() {
        let key = |name| keys::find(name).unwrap();
        let here = Path::new("/etc/greeter");
        let canonical = |name, text| canonical_value(key(name), text, here);
        assert_eq!(canonical("max-connections", "0100"), Ok("100".into()));
        assert_eq!(canonical("rate-prefix-v6", "+048"), Ok("48".into()));
        assert_eq!(canonical("send-buffer", "065536"), Ok("65536".into()));
        assert_eq!(canonical("send-buffer", "064KiB"), Ok("064KiB".into()));
        assert_eq!(canonical("write-timeout", "030s"), Ok("030s".into()));
        assert_eq!(
            canonical("deny-file", "./lists//../deny.list"),
            Ok("/etc/greeter/deny.list".into())
        );
        assert_eq!(
            canonical("pid-file", "/run/./x/../../../greeter.pid"),
            Ok("/greeter.pid".into())
        );
        assert!(canonical("message-file", "").unwrap_err().contains("empty"));
        let relative = canonical_value(key("allow-file"), "a/./b", Path::new("")).unwrap();
        assert_eq!(
            Path::new(&relative),
            std::env::current_dir().unwrap().join("a/b")
        );
    }

    #[test]
    fn durations_are_bounded() {
        assert!(parse_duration("365days").is_ok());
        assert!(parse_duration("366days").is_err());
        assert!(parse_duration("9223372036854775807s").is_err());
    }

    #[test]
    fn metrics_takes_an_address_or_a_name_with_a_port() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9464"),
            Ok("[::1]:9464".parse().unwrap())
        );
        let named = parse_metrics_addr("localhost:9464").unwrap();
        assert!(named.ip().is_loopback() && named.port() == 9464, "{named}");
        for (text, says) in [
            ("127.0.0.1", "127.0.0.1 has no port: write ADDRESS:PORT"),
            ("::1", "::1 has no port"),
            ("localhost", "localhost has no port: write HOST:PORT"),
            ("localhost:http", "\"http\" is not a port"),
        ] {
            let err = parse_metrics_addr(text).unwrap_err();
            assert!(err.starts_with(says), "{text}: {err}");
        }
    }

    #[test]
    fn negative_numbers_are_out_of_range_not_unknown_flags() {
        for flag in [
            "--max-connections",
            "--backlog",
            "--max-per-ip",
            "--workers",
            "--port",
        ] {
            let err = parse(&[flag, "-1"]).err().unwrap();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag}: {err}"
            );
            assert!(
                err.to_string().contains("'-1'") || err.to_string().contains("-1 is not"),
                "{flag}: {err}"
            );
        }
    }

    #[test]
    fn an_empty_message_is_refused_in_greeters_words() {
        // clap lets it through, for the settings (a usage error, exit 2) or the
        // greeting's load to refuse in one line.
        let err = parse(&["--message", ""])
            .unwrap()
            .into_config()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot use --message: the greeting is empty (give a non-empty greeting)"
        );
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--backlog", "0"]).is_err());
        assert!(parse(&["--max-delayed", "0"]).is_err());
        assert!(parse(&["--pass-table-size", "0"]).is_err());
    }

    #[test]
    fn max_delayed_defaults_to_max_connections() {
        let config = parse(&["--max-connections", "300"]).unwrap().into_config();
        assert_eq!(config.unwrap().max_delayed, 300);
        let config = parse(&["--max-connections", "300", "--max-delayed", "40"]).unwrap();
        assert_eq!(config.into_config().unwrap().max_delayed, 40);
    }

    #[test]
    fn the_pass_table_comes_with_a_delay_and_a_reload_keeps_it_if_unchanged() {
        let policy =
            |argv: &[&str], running: Option<&Policy>| parse(argv).unwrap().policy(running).unwrap();
        assert!(policy(&["--deny", "192.0.2.0/24"], None)
            .unwrap()
            .pass
            .is_none());
        assert!(policy(&["--greet-delay", "1s", "--pass-ttl", "0s"], None)
            .unwrap()
            .pass
            .is_none());
        let running = policy(&["--greet-delay", "1s"], None).unwrap();
        let kept = policy(
            &["--greet-delay", "2s", "--pregreet", "drop"],
            Some(&running),
        );
        let (old, new) = (
            running.pass.as_ref().unwrap(),
            kept.unwrap().pass.clone().unwrap(),
        );
        assert!(Arc::ptr_eq(old, &new), "same pass settings: the same table");
        for changed in [
            ["--pass-ttl", "1h"],
            ["--pass-table-size", "5"],
            ["--rate-prefix-v4", "24"],
        ] {
            let argv = [&["--greet-delay", "1s"][..], &changed[..]].concat();
            let new = policy(&argv, Some(&running)).unwrap().pass.clone().unwrap();
            assert!(!Arc::ptr_eq(old, &new), "{changed:?}: a new table");
        }
    }

    #[test]
    fn message_is_taken_byte_for_byte() {
        let config = parse(&["--message", "héllo\n"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(&*config.listeners[0].greeting, "héllo\n".as_bytes());
    }

    #[test]
    fn missing_message_file_names_the_path_and_cause() {
        let err = parse(&["--message-file", "/nonexistent/greeting.txt"])
            .unwrap()
            .into_config()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read greeting file /nonexistent/greeting.txt: no such file or directory \
             (check the --message-file path and its permissions)"
        );
    }
}
