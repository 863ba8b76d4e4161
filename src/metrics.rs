//! `--metrics ADDR`: Prometheus metrics and a health endpoint, served off the greeting
//! path. The loops only publish the snapshots they already publish once per round;
//! this thread reads them at scrape time and encodes them with `prometheus-client`.
//!
//! The HTTP side answers one client at a time, each within [`CLIENT_BUDGET`] and
//! [`MAX_REQUEST_BYTES`]: a slow or malicious client can delay a scrape by that much,
//! but can never hold more than one descriptor or one thread, so it cannot touch the
//! greeting loops. (A thread-per-client HTTP server has no such bound.)
//!
//! `/healthz` must answer "paused" exactly when the greeting loops are out of
//! descriptors. A blocked `accept` already holds its descriptor number (Linux reserves
//! it before waiting); a spare descriptor covers the moment between two clients, when
//! a greeting loop could take the number first.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::{describe_io_error, StartupError};
use crate::handle::Snapshot;
use crate::reload::ReloadCounts;
use crate::workers::WorkersView;

/// The most time one HTTP client gets, from accept to the end of the response.
pub const CLIENT_BUDGET: Duration = Duration::from_secs(2);

/// The largest request head read; a longer one is answered 431 and closed.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Where the numbers come from: the workers' published snapshots, the reload counts,
/// and the fixed limits.
#[derive(Debug)]
pub struct MetricsSource {
    /// The running workers' handles.
    pub workers: WorkersView,
    /// Reloads by outcome.
    pub reloads: Arc<ReloadCounts>,
    /// `--max-connections` times the number of workers.
    pub max_connections: usize,
}

impl Collector for MetricsSource {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.workers.snapshot();
        let totals = &snapshot.totals;
        single(
            &mut encoder,
            "greeter_connections_accepted",
            "Connections accepted.",
            ConstCounter::new(totals.accepted),
        )?;
        let closed = [
            ("greeted", totals.greeted),
            ("reset", totals.reset),
            ("timeout", totals.timed_out),
            ("drain", totals.drained),
            ("error", totals.failed),
            ("per_ip", totals.per_ip_rejected),
            ("flood", totals.flooded),
            ("proxy", totals.proxy_rejected),
        ];
        let mut family = encoder.encode_descriptor(
            "greeter_connections_closed",
            "Connections closed, by how they ended (the totals line's reasons).",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in closed {
            ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        single(
            &mut encoder,
            "greeter_bytes_sent",
            "Greeting bytes written.",
            ConstCounter::new(totals.bytes_sent),
        )?;
        single(
            &mut encoder,
            "greeter_accept_errors",
            "Accepts that failed for one connection only.",
            ConstCounter::new(totals.accept_errors),
        )?;
        single(
            &mut encoder,
            "greeter_accept_pauses",
            "Times accepting paused for lack of descriptors or memory.",
            ConstCounter::new(totals.accept_pauses),
        )?;
        single(
            &mut encoder,
            "greeter_accept_paused",
            "1 while accepting is paused for lack of descriptors or memory.",
            ConstGauge::new(i64::from(snapshot.accept_paused)),
        )?;
        single(
            &mut encoder,
            "greeter_connections_held",
            "Connections held now (being written, flushed or lingering).",
            ConstGauge::new(saturate(snapshot.in_flight)),
        )?;
        single(
            &mut encoder,
            "greeter_connections_max",
            "The most connections that may be held (--max-connections times the workers).",
            ConstGauge::new(saturate(self.max_connections)),
        )?;
        single(
            &mut encoder,
            "greeter_greeting_bytes",
            "The size of the greeting new connections get.",
            ConstGauge::new(saturate(snapshot.greeting_bytes)),
        )?;
        let mut family = encoder.encode_descriptor(
            "greeter_greeting_reloads",
            "SIGHUP reloads of the greeting file, by result.",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in [
            ("ok", self.reloads.ok.load(Ordering::Relaxed)),
            ("failed", self.reloads.failed.load(Ordering::Relaxed)),
        ] {
            ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
        }
        single(
            &mut encoder,
            "greeter_log_lines_dropped",
            "Log lines dropped because stderr was not being read fast enough.",
            ConstCounter::new(crate::log_sink::dropped_lines()),
        )?;
        let build = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        build.encode(encoder.encode_descriptor(
            "greeter_build",
            "The running greeter's version.",
            None,
            build.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Encodes one metric without labels under `name`.
fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn saturate(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What `/healthz` says: ok while accepting, else why not.
pub fn health(snapshot: &Snapshot) -> Result<(), &'static str> {
    if snapshot.draining {
        Err("draining")
    } else if snapshot.accept_paused {
        Err("paused")
    } else {
        Ok(())
    }
}

/// The metrics listener, bound at start-up so that a bad address is a start-up error.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound listener (blocking; one client at a time).
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` for the metrics and health endpoints.
    ///
    /// # Errors
    /// A one-line [`StartupError`] naming the address.
    pub fn bind(addr: SocketAddr) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(addr).map_err(|err| {
            StartupError::new(
                format!("cannot listen for metrics on {addr}"),
                err,
                Some("check --metrics: a free port on an address of this host"),
            )
        })?;
        Ok(MetricsServer { listener })
    }

    /// The address bound, with the real port.
    ///
    /// # Errors
    /// If the socket cannot say.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves on a thread of its own until the process ends.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(self, source: MetricsSource) -> Result<JoinHandle<()>, StartupError> {
        let mut registry = Registry::default();
        let source = Arc::new(source);
        registry.register_collector(Box::new(Arc::clone(&source)));
        thread::Builder::new()
            .name("greeter-metrics".to_owned())
            .spawn(move || self.serve(&registry, &source))
            .map_err(|err| StartupError::new("cannot start the metrics thread", err, None))
    }

    fn serve(self, registry: &Registry, source: &MetricsSource) {
        // Given up for one accept if a greeting loop took the last free number while
        // this thread was between clients.
        let mut spare = File::open("/dev/null").ok();
        loop {
            let client = match self.listener.accept() {
                Ok((client, _)) => client,
                Err(err) if err.raw_os_error() == Some(libc::EMFILE) && spare.is_some() => {
                    drop(spare.take());
                    let accepted = self.listener.accept();
                    spare = File::open("/dev/null").ok();
                    match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    }
                }
                Err(err) => {
                    debug!("metrics: accept failed: {}", describe_io_error(&err));
                    // Out of descriptors without a spare: do not spin.
                    thread::sleep(Duration::from_millis(100));
                    spare = spare.or_else(|| File::open("/dev/null").ok());
                    continue;
                }
            };
            if let Err(err) = answer(client, registry, source) {
                debug!("metrics: a client failed: {}", describe_io_error(&err));
            }
        }
    }
}

/// Reads one request within the budget and answers it, then closes.
fn answer(mut client: TcpStream, registry: &Registry, source: &MetricsSource) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_BUDGET;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        client.set_read_timeout(Some(left))?;
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or("");
                let path = request.path.unwrap_or("").to_owned();
                break if method == "GET" || method == "HEAD" {
                    Some(path)
                } else {
                    None
                };
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST_BYTES => continue,
            Ok(httparse::Status::Partial) => {
                return respond(
                    &mut client,
                    deadline,
                    "431 Request Header Fields Too Large",
                    TEXT,
                    "too large\n",
                );
            }
            Err(_) => {
                return respond(
                    &mut client,
                    deadline,
                    "400 Bad Request",
                    TEXT,
                    "bad request\n",
                )
            }
        }
    };
    match path.as_deref() {
        Some("/metrics") => {
            let mut body = String::new();
            if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
                warn!("metrics: encoding failed");
                return respond(
                    &mut client,
                    deadline,
                    "500 Internal Server Error",
                    TEXT,
                    "error\n",
                );
            }
            respond(&mut client, deadline, "200 OK", OPENMETRICS, &body)
        }
        Some("/healthz") => match health(&source.workers.snapshot()) {
            Ok(()) => respond(&mut client, deadline, "200 OK", TEXT, "ok\n"),
            Err(why) => respond(
                &mut client,
                deadline,
                "503 Service Unavailable",
                TEXT,
                &format!("{why}\n"),
            ),
        },
        Some(_) => respond(&mut client, deadline, "404 Not Found", TEXT, "not found\n"),
        None => respond(
            &mut client,
            deadline,
            "405 Method Not Allowed",
            TEXT,
            "only GET\n",
        ),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes a whole response (HTTP/1.1, `Connection: close`) within the deadline.
fn respond(
    client: &mut TcpStream,
    deadline: Instant,
    status: &str,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    let mut response = String::with_capacity(body.len() + 128);
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let left = deadline.saturating_duration_since(Instant::now());
    client.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    client.write_all(response.as_bytes())
}

/// Logs where the endpoints are, once, at start-up.
pub fn announce(addr: SocketAddr) {
    info!("metrics: serving http://{addr}/metrics and http://{addr}/healthz");
}
