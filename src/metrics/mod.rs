//! `--metrics ADDR`: Prometheus metrics and the health endpoints, served off the
//! greeting path. The loops only publish the snapshots they already publish once per
//! round; the metrics thread reads them at scrape time. One job a room, from the
//! bottom up:
//! - [`registry`]: what is served: the metric families and what `/healthz` says,
//!   read from the snapshots, and the reload counts the reload thread keeps for it.
//! - [`format`](mod@format): the two exposition formats (OpenMetrics, the classic text 0.0.4);
//!   [`negotiate`]: which of them a request's `Accept` gets.
//! - [`endpoint`]: the routes (`/metrics`, `/healthz`, `/livez`) and their status
//!   codes, each a whole response.
//! - [`http`]: how they are served: a readiness loop of its own, bounded in clients,
//!   time and bytes, reading request heads with `httparse`.

pub mod endpoint;
pub mod format;
pub mod http;
pub mod negotiate;
pub mod registry;

pub use endpoint::announce;
pub use http::{MetricsServer, MetricsStop};
pub use registry::{MetricsSource, ReloadCounts};
