//! Everything `greeter-server` does before it serves: the settings checked into a
//! [`Config`], the listening sockets (passed by systemd, or bound), the metrics
//! listener, and the start-up log lines. Every failure here is one [`Failure`]
//! and nothing is logged before it, so that the error is the only line on stderr.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::{info, warn};

use crate::config::{self, Config, ServerArgs, Settings};
use crate::error::Failure;
use crate::fdlimit::FdLimit;
use crate::listen_fds::{self, Handover};
use crate::listener;
use crate::metrics::MetricsServer;
use crate::reload::Reloader;
use crate::workers::Workers;

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::startup";

/// A server ready to run: bound, checked and announced in the log.
#[derive(Debug)]
pub struct Prepared {
    /// The worker loops, bound to their listeners.
    pub workers: Workers,
    /// What SIGHUP reloads.
    pub reloader: Reloader,
    /// The metrics listener, with `--metrics`.
    pub metrics: Option<MetricsServer>,
    /// Duplicates of the listening sockets, for an upgrade to hand on.
    pub handover: Handover,
    /// `--upgrade-timeout`.
    pub upgrade_timeout: Duration,
    /// `--drain-timeout`: also what a new process of an upgrade that is stopped has
    /// before it is killed.
    pub drain_timeout: Duration,
    /// `--shutdown-delay`: how long a stop signal lets the workers greet on, with
    /// `/healthz` answering 503, before the drain.
    pub shutdown_delay: Duration,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// The longest a held connection can live (header, write and linger timeouts).
    pub longest_held: Duration,
}

/// What [`check`] found: the settings checked into a [`Config`].
#[derive(Debug)]
pub struct Checked {
    /// The typed top-level settings (`workers`, `metrics`, `pid-file`, ...).
    pub args: ServerArgs,
    /// Every listener with its hosts resolved, greeting and lists loaded.
    pub config: Config,
}

/// Every start-up check that needs no socket, in one place so that `--check-config`
/// runs exactly what a start runs: the values parsed, host names resolved, greeting
/// and list files read, and the listeners' addresses refused if two would clash.
///
/// # Errors
/// The first [`Failure`].
pub fn check(settings: &Settings) -> Result<Checked, Failure> {
    let args = settings.server_args().clone();
    let config = config::build(settings, None)?;
    listener::check_addresses(&config)?;
    Ok(Checked { args, config })
}

/// Checks `settings` as [`check`] does, binds (or takes
/// systemd's sockets), binds the metrics listener and logs the start-up lines,
/// including what raising the fd limit gave (`fd_limit`, raised by the caller before
/// anything was created).
///
/// # Errors
/// The first [`Failure`]; nothing is logged before it.
pub fn prepare(settings: Settings, fd_limit: io::Result<FdLimit>) -> Result<Prepared, Failure> {
    let Checked { args, config } = check(&settings)?;
    let worker_count = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        n => n as usize,
    };
    let (sockets, passed_metrics, source) = match listen_fds::from_systemd()? {
        Some(passed) => {
            let mut sockets =
                listen_fds::assign_passed(passed.listeners, &config, passed.from_upgrade)?;
            let unserved = (0..config.listeners.len())
                .filter(|&index| !sockets.iter().any(|socket| socket.listener == index));
            for index in unserved.collect::<Vec<_>>() {
                let listener = &config.listeners[index];
                if passed.from_upgrade {
                    // New in this config: an upgrade is a restart for it.
                    let bound =
                        listener::listen_all(&listener.addrs, config.backlog, config.send_buffer)?;
                    sockets.extend(bound.into_iter().map(|socket| listener::ListeningSocket {
                        socket,
                        listener: index,
                    }));
                } else {
                    warn!(
                        target: LOG_TARGET,
                        "the listener {} has no socket from systemd and is not served (give it a ListenStream= in the .socket unit)",
                        listener.id.describe()
                    );
                }
            }
            let source = if passed.from_upgrade {
                "socket handed over by an upgrade"
            } else {
                "socket passed by systemd"
            };
            (sockets, passed.metrics, source)
        }
        None => (listener::listen_config(&config)?, None, "bound"),
    };
    let dup_fail = |err| {
        Failure::new(
            "cannot keep the listening sockets for an upgrade",
            err,
            None,
        )
    };
    let mut handover = Handover::default();
    for socket in &sockets {
        let copy = socket.socket.try_clone().map_err(dup_fail)?;
        let name = listen_fds::fd_name(&config.listeners[socket.listener].id);
        handover.listeners.push((copy, name));
    }
    let workers = Workers::from_sockets(sockets, &config, worker_count)?;
    let metrics = match (args.metrics, passed_metrics) {
        (Some(_), Some(passed)) => Some(MetricsServer::from_listener(passed)),
        (Some(addr), None) => Some(MetricsServer::bind(addr)?),
        (None, _) => None,
    };
    if let Some(metrics) = &metrics {
        handover.metrics = Some(metrics.try_clone_listener().map_err(dup_fail)?);
    }
    for warning in settings.warnings() {
        warn!(target: LOG_TARGET, "{warning}");
    }
    if let Some(warning) = shutdown_delay_warning(&args) {
        warn!(target: LOG_TARGET, "{warning}");
    }
    if let Some(path) = settings.config_path() {
        info!(target: LOG_TARGET, "config: {}", path.display());
    }
    log_serving(&config, &workers, source);
    let longest_held = config.proxy_timeout + config.write_timeout + config.linger_timeout;
    let drain_timeout = config.drain_timeout;
    match fd_limit {
        Ok(limit) => info!(
            target: LOG_TARGET,
            "fd limit: soft={} hard={} (was soft={})",
            limit.soft, limit.hard, limit.before
        ),
        Err(err) => warn!(target: LOG_TARGET, "fd limit: cannot raise the open-file limit: {err}"),
    }
    warn_if_descriptors_short(&config, workers.len());
    let reloader = Reloader::new(settings, config);
    Ok(Prepared {
        workers,
        reloader,
        metrics,
        handover,
        upgrade_timeout: args.upgrade_timeout,
        drain_timeout,
        shutdown_delay: args.shutdown_delay,
        pid_file: args.pid_file,
        longest_held,
    })
}

/// A warning when the workers could hold more connections than the open-file limit
/// allows: each holds up to `--max-connections`, plus `--max-delayed` (those in a
/// greet delay, counted apart) when a listener delays; plus, once for the whole
/// server, `--max-trapped` when a listener is a tarpit. Beyond the limit, accepting pauses (`accept_pauses`) until
/// a descriptor frees.
fn warn_if_descriptors_short(config: &Config, workers: usize) {
    let delays = config.listeners.iter().any(|listener| {
        listener
            .policy
            .as_ref()
            .is_some_and(|policy| !policy.greet_delay.is_zero())
    });
    let traps = config
        .listeners
        .iter()
        .any(|listener| listener.tarpit.is_some());
    let per_worker = config.max_connections + if delays { config.max_delayed } else { 0 };
    // --max-trapped is the whole server's, not each worker's.
    let trapped = if traps { config.max_trapped } else { 0 };
    let wanted = per_worker.saturating_mul(workers).saturating_add(trapped);
    let soft = crate::fdlimit::soft_limit();
    if wanted > soft {
        let delayed = if delays {
            format!(" + max-delayed {}", config.max_delayed)
        } else {
            String::new()
        };
        let trapped = if traps {
            format!(" + max-trapped {}", config.max_trapped)
        } else {
            String::new()
        };
        warn!(
            target: LOG_TARGET,
            "fd limit: {wanted} connections (workers {workers} x (max-connections {}{delayed}){trapped}) \
             may be held, above the open-file limit {soft}: accepting pauses when it runs \
             out (raise LimitNOFILE= or ulimit -n, or lower the limits)",
            config.max_connections
        );
    }
}

/// The warning for a `--shutdown-delay` that nothing could see: without `--metrics`
/// there is no `/healthz` to answer 503, so a load balancer learns of the stop only
/// when the drain closes the listener; the delay then only makes the stop slower.
pub fn shutdown_delay_warning(args: &ServerArgs) -> Option<String> {
    (!args.shutdown_delay.is_zero() && args.metrics.is_none()).then(|| {
        format!(
            "shutdown delay {} without --metrics: no /healthz can say that the server is stopping \
             (add --metrics for the load balancer's health check, or drop --shutdown-delay)",
            humantime::format_duration(args.shutdown_delay)
        )
    })
}

/// The `serving` line, and a warning for each limit the kernel capped.
fn log_serving(config: &Config, workers: &Workers, source: &str) {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    info!(
        target: LOG_TARGET,
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
        config
            .listeners
            .iter()
            .map(|listener| listener.greeting.len().to_string())
            .collect::<Vec<_>>()
            .join(","),
        config.max_connections,
        somaxconn.map_or(config.backlog, |cap| cap.min(config.backlog)),
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
    // The kernel silently caps the backlog at net.core.somaxconn.
    if let Some(cap) = somaxconn.filter(|&cap| cap < config.backlog) {
        warn!(
            target: LOG_TARGET,
            "listen backlog {} is capped by net.core.somaxconn={cap} \
             (raise it with sysctl -w net.core.somaxconn={})",
            config.backlog, config.backlog
        );
    }
    if let (Some(asked), Some(got)) = (config.send_buffer, workers.send_buffer()) {
        // Linux reports twice what it was asked for; less means net.core.wmem_max
        // capped the request.
        if got < 2 * asked {
            warn!(
                target: LOG_TARGET,
                "send buffer {asked} is capped by net.core.wmem_max: the kernel gives {got} \
                 (raise it with sysctl -w net.core.wmem_max={asked})"
            );
        }
    }
}
