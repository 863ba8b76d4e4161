//! `Accept` negotiation for `/metrics`: the Prometheus Go client's answer
//! (prometheus/common's `expfmt.NegotiateIncludingOpenMetrics` over goautoneg's
//! `ParseAccept`) for every well-formed header, but for the differences below.
//!
//! 1. The first `Accept` header is split into clauses at `,`, each clause into its
//!    media range and parameters at `;`, spaces trimmed; names are compared
//!    case-sensitively, as goautoneg compares them.
//! 2. The clauses are ordered by q, highest first, on equal q a concrete type before
//!    a wildcard, by a stable sort: ties keep the header's order. A clause with q = 0
//!    is never chosen.
//! 3. The first clause naming a known format wins: `application/openmetrics-text`
//!    with `version` 1.0.0, 0.0.1 or none (none is labelled 0.0.1, as Go labels it),
//!    or `text/plain` with `version=0.0.4` or none. Otherwise (no header, nothing
//!    known, only wildcards) the answer is the text format 0.0.4.
//!
//! The differences, on purpose:
//! - Go sorts with `sort.Sort`, stable only up to 12 elements, by goautoneg's
//!   comparison, which is not even a consistent order (`text/plain;q=0.1` and
//!   `*/*;q=1` each come before the other). Up to 12 clauses its answer is greeter's;
//!   above, which of two equal-q clauses Go takes depends on its sort algorithm's
//!   steps. greeter's stable order is deterministic.
//! - q = 0 means "not acceptable" (RFC 9110): Go still takes such a clause when no
//!   known one has a higher q (`application/openmetrics-text;q=0` alone gets
//!   OpenMetrics from Go, text from greeter).
//! - The Go client also offers protobuf; greeter passes a protobuf clause over.

use super::format::Format;

/// The format for the value of a request's first `Accept` header (`None`: it had
/// none).
pub fn negotiate(accept: Option<&[u8]>) -> Format {
    let accept = String::from_utf8_lossy(accept.unwrap_or_default());
    // Go's textproto trims a header value's blanks.
    let mut clauses: Vec<Clause<'_>> = accept
        .trim_matches([' ', '\t'])
        .split(',')
        .map(Clause::parse)
        .filter(|clause| clause.q > 0.0)
        .collect();
    // `sort_by` is stable. (A wildcard names no format, so where it goes cannot
    // change the answer; it is ordered as goautoneg orders it all the same.)
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then(a.is_wildcard().cmp(&b.is_wildcard()))
    });
    clauses
        .iter()
        .find_map(Clause::format)
        .unwrap_or(Format::Text)
}

/// One clause of an `Accept` header, as far as negotiation reads it.
#[derive(Debug)]
struct Clause<'a> {
    /// The media type (`*` in `*/*`).
    kind: &'a str,
    /// The subtype, empty when the media range has no `/`.
    subtype: &'a str,
    /// The `q` parameter, 1 when absent. Read as a decimal (`f32`, as Go's
    /// `ParseFloat(q, 32)` rounds it) from the value untrimmed, as Go reads it:
    /// invalid (`q= 0.5`, and the hexadecimal floats and `_` Go would also take) is
    /// 0. Not clamped: 0, below and NaN are never chosen; above 1 is kept, so
    /// ordered before q=1 as Go orders it.
    q: f32,
    /// The `version` parameter, empty when absent.
    version: &'a str,
}

impl<'a> Clause<'a> {
    /// goautoneg's reading: spaces trimmed around the clause, its type and subtype,
    /// and parameter names and values (but q's); a parameter without `=` ignored;
    /// the last of a repeated one counts.
    fn parse(clause: &'a str) -> Clause<'a> {
        let mut parts = clause.trim_matches(' ').split(';');
        let media_range = parts.next().unwrap_or_default();
        let (kind, subtype) = media_range.split_once('/').unwrap_or((media_range, ""));
        let mut parsed = Clause {
            kind: kind.trim_matches(' '),
            subtype: subtype.trim_matches(' '),
            q: 1.0,
            version: "",
        };
        for (name, value) in parts.filter_map(|parameter| parameter.split_once('=')) {
            match name.trim_matches(' ') {
                "q" => parsed.q = value.parse().unwrap_or(0.0),
                "version" => parsed.version = value.trim_matches(' '),
                _ => {}
            }
        }
        parsed
    }

    /// Whether the media range has a `*` (`*/*`, `text/*`, or a bare `*`).
    fn is_wildcard(&self) -> bool {
        self.kind == "*" || self.subtype == "*"
    }

    /// The format this clause names, if greeter serves it.
    fn format(&self) -> Option<Format> {
        match (self.kind, self.subtype, self.version) {
            ("application", "openmetrics-text", "1.0.0") => Some(Format::OpenMetrics1_0_0),
            ("application", "openmetrics-text", "0.0.1" | "") => Some(Format::OpenMetrics0_0_1),
            ("text", "plain", "0.0.4" | "") => Some(Format::Text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::*;

    fn check(cases: &[(&str, Format)]) {
        for &(accept, expected) in cases {
            assert_eq!(
                negotiate(Some(accept.as_bytes())),
                expected,
                "Accept: {accept}"
            );
        }
    }

    #[test]
    fn q_order_is_honoured_and_unknown_versions_are_passed_over() {
        check(&[
            // Where an earlier negotiation chose OpenMetrics.
            ("application/openmetrics-text;q=0, text/plain;q=1", Text),
            ("text/plain;q=0.9, application/openmetrics-text;q=0.5", Text),
            ("application/openmetrics-text; version=9.9.9", Text),
            (
                "text/plain;q=0.5, application/openmetrics-text;q=0.9",
                OpenMetrics0_0_1,
            ),
            (
                "text/plain;version=1.0.0, application/openmetrics-text;q=0.1",
                OpenMetrics0_0_1,
            ),
        ]);
    }

    #[test]
    fn prometheus_gets_openmetrics_1_0_0() {
        check(&[
            // Prometheus 2's and 3's scrape headers.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics1_0_0,
            ),
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics1_0_0,
            ),
            // Protobuf first (native histograms): greeter has none, the next is taken.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
                OpenMetrics1_0_0,
            ),
            // No version is 0.0.1; spaces around names and values are trimmed.
            ("application/openmetrics-text", OpenMetrics0_0_1),
            ("application/openmetrics-text;version=0.0.1", OpenMetrics0_0_1),
            ("application/openmetrics-text ; version = 1.0.0 ; q=1", OpenMetrics1_0_0),
            // Names compare case-sensitively, as in Go.
            ("Application/OpenMetrics-Text", Text),
        ]);
    }

    #[test]
    fn no_header_and_wildcards_get_text() {
        assert_eq!(negotiate(None), Text);
        check(&[
            ("", Text),
            ("*/*", Text),
            ("*", Text),
            ("application/*", Text),
            // A wildcard names nothing: the next clause decides.
            (
                "*/*;q=1, application/openmetrics-text;q=0.1",
                OpenMetrics0_0_1,
            ),
        ]);
    }

    #[test]
    fn ties_keep_the_header_order() {
        check(&[
            ("application/openmetrics-text, text/plain", OpenMetrics0_0_1),
            ("text/plain, application/openmetrics-text", Text),
            (
                "text/plain;q=0.5, application/openmetrics-text;q=0.500",
                Text,
            ),
        ]);
    }

    #[test]
    fn a_clause_with_q_0_or_an_invalid_q_is_never_chosen() {
        check(&[
            ("application/openmetrics-text;q=0", Text),
            ("application/openmetrics-text;q=0.000, text/plain;q=0", Text),
            (
                "text/plain;q=0, application/openmetrics-text;q=0.001",
                OpenMetrics0_0_1,
            ),
            (
                "text/plain;q=x, application/openmetrics-text;q=0.1",
                OpenMetrics0_0_1,
            ),
            (
                "text/plain;q= 0.5, application/openmetrics-text;q=0.1",
                OpenMetrics0_0_1,
            ),
            (
                "text/plain;q=-1, application/openmetrics-text;q=0.1",
                OpenMetrics0_0_1,
            ),
        ]);
    }
}
