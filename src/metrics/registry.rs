//! What `/metrics` and `/healthz` say: the families read from the snapshots the loops
//! already publish once per round, encoded at scrape time with `prometheus-client`
//! (the metrics thread reads them; the loops do nothing more for them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;

use crate::close::CloseReason;
use crate::geoip::{country_label, CountryFigures};
use crate::handle::Snapshot;
use crate::peer_input::FirstInput;
use crate::totals::{LIFETIME_BOUNDS, TRAP_DURATION_BOUNDS};
use crate::workers::WorkersView;

/// Reloads counted by outcome: the reload thread counts, `/metrics` reads.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Reloads that handed the workers a new configuration.
    pub ok: AtomicU64,
    /// Reloads that changed nothing because a file could not be used.
    pub failed: AtomicU64,
}

/// Where the numbers come from: the workers' published snapshots and the reload
/// counts.
#[derive(Debug)]
pub struct MetricsSource {
    /// The running workers' handles.
    pub workers: WorkersView,
    /// Reloads by outcome.
    pub reloads: Arc<ReloadCounts>,
    /// How many of [`LIFETIME_BOUNDS`] the lifetime histogram shows: up to the first
    /// that covers the longest a held connection can live (fixed at start-up, so
    /// that the buckets never change under a running Prometheus).
    pub lifetime_buckets: usize,
}

impl MetricsSource {
    /// The number of [`LIFETIME_BOUNDS`] that reach `longest` (at least one).
    pub fn lifetime_buckets_for(longest: std::time::Duration) -> usize {
        let covering = LIFETIME_BOUNDS
            .iter()
            .position(|&bound| bound >= longest.as_secs_f64())
            .unwrap_or(LIFETIME_BOUNDS.len() - 1);
        covering + 1
    }
}

/// A histogram as it was published: per-bucket counts (one per bound, the last
/// beyond them all), folded into the first `shown` of `bounds` and +Inf.
struct PublishedHistogram<'a> {
    bounds: &'a [f64],
    counts: &'a [u64],
    sum_ms: u64,
    shown: usize,
}

impl EncodeMetric for PublishedHistogram<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let shown = self.shown.min(self.bounds.len());
        let mut buckets: Vec<(f64, u64)> = self.bounds[..shown]
            .iter()
            .zip(self.counts)
            .map(|(&bound, &count)| (bound, count))
            .collect();
        buckets.push((f64::MAX, self.counts[shown..].iter().sum()));
        let count = self.counts.iter().sum();
        let sum = self.sum_ms as f64 / 1000.0;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
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
        // The totals line's outcomes: every reason that handed the greeting over is
        // `greeted` here, as there; the others by their totals key.
        let mut outcomes: Vec<(&str, u64)> = Vec::with_capacity(CloseReason::COUNT);
        for (reason, names) in CloseReason::ALL {
            let label = match (names.greeted, names.totals) {
                (false, Some(key)) => key,
                _ => "greeted",
            };
            match outcomes.iter_mut().find(|(seen, _)| *seen == label) {
                Some((_, count)) => *count += totals.closes(reason),
                None => outcomes.push((label, totals.closes(reason))),
            }
        }
        let mut family = encoder.encode_descriptor(
            "greeter_connections_closed",
            "Connections closed, by how they ended (the totals line's reasons).",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in outcomes {
            ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "greeter_peer_input",
            "Connections closed, by what the peer sent first (none: nothing that was read).",
            None,
            MetricType::Counter,
        )?;
        for (first, label) in FirstInput::ALL {
            let count = totals.peer_input(first);
            ConstCounter::new(count).encode(family.encode_family(&[("first", label)])?)?;
        }
        let (counts, sum_ms) = totals.held_lifetimes();
        single(
            &mut encoder,
            "greeter_held_connection_seconds",
            "Lifetimes of held connections, from accept to close (those greeted at once are not held, and not counted).",
            PublishedHistogram {
                bounds: &LIFETIME_BOUNDS,
                counts,
                sum_ms,
                shown: self.lifetime_buckets,
            },
        )?;
        single(
            &mut encoder,
            "greeter_pregreeters",
            "Clients that sent data during their --greet-delay (dropped or greeted).",
            ConstCounter::new(totals.pregreeted),
        )?;
        single(
            &mut encoder,
            "greeter_greet_delay_passes",
            "Clients greeted at once, without their --greet-delay: their source had waited it out silently within --pass-ttl.",
            ConstCounter::new(totals.passed),
        )?;
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
            "Connections held now (in a greet delay, being written, flushed or lingering).",
            ConstGauge::new(saturate(snapshot.held)),
        )?;
        single(
            &mut encoder,
            "greeter_connections_delayed",
            "Of the connections held, those in their --greet-delay (held under --max-delayed, not against --max-connections).",
            ConstGauge::new(saturate(snapshot.delayed)),
        )?;
        let countries = by_country(&self.workers);
        each_country(
            &mut encoder,
            "greeter_trapped_connections",
            "Clients trapped now by the --tarpit listeners (held under --max-trapped, not against --max-connections), by country (--geoip-db; unknown without it).",
            &countries,
            |figures| ConstGauge::new(i64::try_from(figures.now).unwrap_or(i64::MAX)),
        )?;
        each_country(
            &mut encoder,
            "greeter_trapped_clients",
            "Clients trapped by the --tarpit listeners since the start, by country.",
            &countries,
            |figures| ConstCounter::new(figures.trapped),
        )?;
        each_country(
            &mut encoder,
            "greeter_trapped_seconds",
            "Time trapped clients have spent trapped (an interval counted at each drip), by country.",
            &countries,
            |figures| ConstCounter::new(figures.trapped_ms as f64 / 1000.0),
        )?;
        let (counts, sum_ms) = totals.trap_durations();
        single(
            &mut encoder,
            "greeter_trap_duration_seconds",
            "How long traps lasted, from trapped to close by the wall clock (the CLOSE line's ms=), observed at each trap's close.",
            PublishedHistogram {
                bounds: &TRAP_DURATION_BOUNDS,
                counts,
                sum_ms,
                shown: TRAP_DURATION_BOUNDS.len(),
            },
        )?;
        each_country(
            &mut encoder,
            "greeter_bytes_dripped",
            "Bytes dripped to trapped clients (within greeter_bytes_sent), by country.",
            &countries,
            |figures| ConstCounter::new(figures.dripped),
        )?;
        single(
            &mut encoder,
            "greeter_connections_max",
            "The most connections that may be held (--max-connections times the workers).",
            ConstGauge::new(saturate(snapshot.max_connections)),
        )?;
        single(
            &mut encoder,
            "greeter_greeting_bytes",
            "The size of the greeting new connections get (of the first listener).",
            ConstGauge::new(saturate(snapshot.greeting_bytes)),
        )?;
        let mut family = encoder.encode_descriptor(
            "greeter_greeting_reloads",
            "SIGHUP reloads of the configuration and greeting files, by result.",
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

/// Encodes one family under `name` with a `country` label: `metric` of each of
/// `countries`' figures (never empty: `unknown` is always there).
fn each_country<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    countries: &[(&str, CountryFigures)],
    metric: impl Fn(&CountryFigures) -> M,
) -> Result<(), std::fmt::Error> {
    let metric_type = metric(&CountryFigures::default()).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (country, figures) in countries {
        metric(figures).encode(family.encode_family(&[("country", *country)])?)?;
    }
    Ok(())
}

/// The workers' trap figures by country label: `unknown` always (the clients of no
/// database with those the database does not place), then each country that has
/// had a trap (or a trapped client handed over by an upgrade), in code order; a
/// country once seen stays (its gauge back at 0).
fn by_country(workers: &WorkersView) -> Vec<(&'static str, CountryFigures)> {
    let sums = workers.traps_by_country();
    let mut unknown = CountryFigures::default();
    let mut seen = Vec::new();
    for (index, figures) in sums.into_iter().enumerate() {
        match country_label(index) {
            "unknown" => unknown.add(&figures),
            label if figures.seen => seen.push((label, figures)),
            _ => {}
        }
    }
    seen.insert(0, ("unknown", unknown));
    seen
}

fn saturate(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What `/healthz` says: ok while accepting and not stopping, else why not.
pub fn health(snapshot: &Snapshot) -> Result<(), &'static str> {
    if snapshot.draining {
        Err("draining")
    } else if snapshot.stopping {
        Err("stopping")
    } else if snapshot.accept_paused {
        Err("paused")
    } else {
        Ok(())
    }
}
