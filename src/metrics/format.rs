//! The two exposition formats `/metrics` speaks, chosen as the official Go client
//! chooses ([`negotiate`](super::negotiate)): OpenMetrics when the scraper's `Accept`
//! prefers it (Prometheus does), the classic text format 0.0.4 otherwise (`curl`,
//! `promtool check metrics`, older tools).
//!
//! `prometheus-client` encodes OpenMetrics only, so the classic form is derived from
//! its output, line by line: what differs for the families greeter has is where the
//! counter's `_total` and the info's `_info` suffix go (0.0.4 names a family by its
//! samples), that 0.0.4 has no `info` type (a gauge of 1, as the Go client does),
//! no `# UNIT` and no `# EOF`.

/// What a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic text format 0.0.4.
    Text,
    /// OpenMetrics, labelled `version=0.0.1` (asked for with that version or none).
    OpenMetrics0_0_1,
    /// OpenMetrics `version=1.0.0`.
    OpenMetrics1_0_0,
}

/// OpenMetrics' content type, as the Go client labels it when asked for 1.0.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// OpenMetrics' content type when asked for 0.0.1 or no version (the same text: the
/// Go client labels it so).
pub const OPENMETRICS_0_0_1: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";
/// The classic text format's content type.
pub const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_0_0_4,
            Format::OpenMetrics0_0_1 => OPENMETRICS_0_0_1,
            Format::OpenMetrics1_0_0 => OPENMETRICS,
        }
    }
}

/// The classic text format 0.0.4 of an OpenMetrics exposition.
pub fn to_text_0_0_4(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP comes before its TYPE, which says what suffix its name takes.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            if let Some((helped, text)) = help.take().filter(|(helped, _)| *helped == name) {
                out.push_str(&format!("# HELP {helped}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_infos_are_named_by_their_samples_and_eof_goes() {
        let openmetrics = "# HELP greeter_connections_accepted Connections accepted.\n\
            # TYPE greeter_connections_accepted counter\n\
            greeter_connections_accepted_total 3\n\
            # HELP greeter_connections_held Held now.\n\
            # TYPE greeter_connections_held gauge\n\
            greeter_connections_held 1\n\
            # HELP greeter_build The running version.\n\
            # TYPE greeter_build info\n\
            greeter_build_info{version=\"0.1.0\"} 1\n\
            # EOF\n";
        assert_eq!(
            to_text_0_0_4(openmetrics),
            "# HELP greeter_connections_accepted_total Connections accepted.\n\
             # TYPE greeter_connections_accepted_total counter\n\
             greeter_connections_accepted_total 3\n\
             # HELP greeter_connections_held Held now.\n\
             # TYPE greeter_connections_held gauge\n\
             greeter_connections_held 1\n\
             # HELP greeter_build_info The running version.\n\
             # TYPE greeter_build_info gauge\n\
             greeter_build_info{version=\"0.1.0\"} 1\n"
        );
    }
}
