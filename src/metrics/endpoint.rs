//! The routes `--metrics` answers, each a whole HTTP/1.1 response: `/metrics` in the
//! format the request's `Accept` negotiated, `/healthz`, `/livez`, and the status
//! codes of everything else. How requests arrive and answers leave is in `http`.

use std::net::SocketAddr;
use std::sync::Arc;

use log::{info, warn};
use prometheus_client::registry::Registry;

use super::format::{to_text_0_0_4, Format};
use super::registry::{health, MetricsSource};

/// What a request asks for, once its head is read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Request {
    /// `GET` (or `HEAD`, `head_only`) of `path`, its query string left out; `format`
    /// is what its `Accept` negotiates.
    Get {
        path: String,
        head_only: bool,
        format: Format,
    },
    /// A request answered with an error status and closed.
    Refused(&'static str, &'static str),
}

/// What each path answers, and what the answers read.
pub(super) struct Routes {
    /// Holds the one collector, which reads `source` at each scrape.
    registry: Registry,
    /// Where the numbers come from (`/healthz` reads it directly).
    source: Arc<MetricsSource>,
}

impl Routes {
    /// The routes over `source`, its collector registered once.
    pub(super) fn new(source: MetricsSource) -> Self {
        let source = Arc::new(source);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&source)));
        Routes { registry, source }
    }

    /// The whole HTTP response to `request`.
    pub(super) fn respond(&self, request: &Request) -> Vec<u8> {
        let (path, head_only, format) = match request {
            Request::Get {
                path,
                head_only,
                format,
            } => (path.as_str(), *head_only, *format),
            Request::Refused(status, body) => return response(status, TEXT, body, false),
        };
        match path {
            "/metrics" => {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &self.registry) {
                    Ok(()) if format == Format::Text => {
                        let text = to_text_0_0_4(&body);
                        response("200 OK", format.content_type(), &text, head_only)
                    }
                    Ok(()) => response("200 OK", format.content_type(), &body, head_only),
                    Err(_) => {
                        warn!(target: "greeter::metrics_http", "metrics: encoding failed");
                        response("500 Internal Server Error", TEXT, "error\n", head_only)
                    }
                }
            }
            "/healthz" => match health(&self.source.workers.snapshot()) {
                Ok(()) => response("200 OK", TEXT, "ok\n", head_only),
                Err(why) => response(
                    "503 Service Unavailable",
                    TEXT,
                    &format!("{why}\n"),
                    head_only,
                ),
            },
            // Only a stuck loop fails it: paused, stopping or draining, it still
            // answers, so that a liveness probe never restarts a replica for those.
            "/livez" => match self.source.workers.live() {
                true => response("200 OK", TEXT, "ok\n", head_only),
                false => response("503 Service Unavailable", TEXT, "stuck\n", head_only),
            },
            _ => response("404 Not Found", TEXT, "not found\n", head_only),
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// A whole response (HTTP/1.1, `Connection: close`); without its body for `HEAD`.
fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

/// Logs where the endpoints are, once, at start-up.
pub fn announce(addr: SocketAddr) {
    info!(
        target: "greeter::metrics",
        "metrics: serving http://{addr}/metrics and http://{addr}/healthz"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_response_has_the_length_of_the_body_it_leaves_out() {
        let full = response("200 OK", TEXT, "ok\n", false);
        let head = response("200 OK", TEXT, "ok\n", true);
        assert!(full.ends_with(b"\r\n\r\nok\n"));
        assert!(head.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}
