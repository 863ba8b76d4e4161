//! `--metrics`: the Prometheus exposition and `/healthz`, served beside the greeting
//! loops. These drive the real binary and speak raw HTTP to it.

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::thread;

use greeter_load as load;
use util::*;

/// The `key=value` fields of the last `totals` line in `log`.
fn last_totals(log: &str) -> BTreeMap<String, f64> {
    let line = log
        .lines()
        .rfind(|line| line.contains("totals in_flight="))
        .unwrap();
    line[line.find("totals ").unwrap() + 7..]
        .split_whitespace()
        .map(|field| {
            let (key, value) = field.split_once('=').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_scrape_during_a_load_run_and_after_it_matches_the_totals_line() {
    let mut server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let options = load_options(server.addr, 3_000);
    let running = thread::spawn(move || load::run(&options, &AtomicU64::new(0)).unwrap());
    // Scrapes during the run see counters that only grow.
    let mut last = 0.0;
    while !running.is_finished() {
        let (status, body) = http_get(metrics, "/metrics");
        assert_eq!(status, 200);
        let accepted = samples(&body)["greeter_connections_accepted_total"];
        assert!(accepted >= last, "{accepted} after {last}");
        last = accepted;
    }
    let report = running.join().unwrap();
    assert_eq!((report.completed, report.errors.total()), (3_000, 0));

    let (_, body) = http_get(metrics, "/metrics");
    let scraped = samples(&body);
    server.signal("TERM");
    server.assert_exits_cleanly_logging("totals in_flight=0 accepted=3000", STEP_TIMEOUT);
    let totals = last_totals(&server.stderr());
    for (metric, field) in [
        ("greeter_connections_accepted_total", "accepted"),
        (
            "greeter_connections_closed_total{reason=\"greeted\"}",
            "greeted",
        ),
        (
            "greeter_connections_closed_total{reason=\"reset\"}",
            "reset",
        ),
        (
            "greeter_connections_closed_total{reason=\"timeout\"}",
            "timeout",
        ),
        (
            "greeter_connections_closed_total{reason=\"drain\"}",
            "drain",
        ),
        (
            "greeter_connections_closed_total{reason=\"error\"}",
            "error",
        ),
        (
            "greeter_connections_closed_total{reason=\"per_ip\"}",
            "per_ip",
        ),
        (
            "greeter_connections_closed_total{reason=\"flood\"}",
            "flood",
        ),
        ("greeter_bytes_sent_total", "bytes"),
        ("greeter_accept_errors_total", "accept_errors"),
        ("greeter_accept_pauses_total", "accept_pauses"),
    ] {
        assert_eq!(scraped[metric], totals[field], "{metric} against {field}=");
    }
    assert_eq!(scraped["greeter_connections_held"], 0.0);
    assert_eq!(scraped["greeter_connections_max"], 10_000.0);
    assert_eq!(scraped["greeter_greeting_bytes"], 38.0);
    assert_eq!(scraped["greeter_accept_paused"], 0.0);
    assert_eq!(
        scraped[&format!(
            "greeter_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
}

/// What the Prometheus project's Python client parses of `body` with `parser`
/// (`openmetrics.parser` or `parser`, the 0.0.4 one): a line per sample.
fn parsed_by(parser: &str, body: &str) -> String {
    let mut python = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sys\n\
                 from prometheus_client.{parser} import text_string_to_metric_families\n\
                 for family in text_string_to_metric_families(sys.stdin.read()):\n\
                 \x20   for sample in family.samples:\n\
                 \x20       print(family.type, sample.name, dict(sorted(sample.labels.items())), sample.value)\n"
            ),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{parser} refused it (scripts/test.sh installs prometheus-client): {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const PROMETHEUS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

#[test]
fn prometheus_exposition_parses_in_both_formats_with_the_prometheus_parsers() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    let metrics = metrics_addr(&server);
    // The loop publishes its counts at the end of the round that closed the
    // connection, which may come after the client's EOF.
    wait_until("the greeting to be counted", || {
        http_get(metrics, "/metrics")
            .1
            .contains("\ngreeter_connections_accepted_total 1\n")
    });
    // What Prometheus asks for: OpenMetrics, parsed strictly.
    let (_, openmetrics) = http_get_with(metrics, "/metrics", PROMETHEUS_ACCEPT);
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let parsed = parsed_by("openmetrics.parser", &openmetrics);
    for expected in [
        "counter greeter_connections_accepted_total {} 1\n",
        "counter greeter_connections_closed_total {'reason': 'greeted'} 1\n",
        "gauge greeter_connections_held {} 0\n",
        "info greeter_build_info {'version': ",
    ] {
        assert!(parsed.contains(expected), "no {expected:?} in:\n{parsed}");
    }
    // Anything else: the classic text format 0.0.4.
    let (_, text) = http_get(metrics, "/metrics");
    assert!(!text.contains("# EOF"), "{text}");
    let parsed = parsed_by("parser", &text);
    for expected in [
        "counter greeter_connections_accepted_total {} 1\n",
        "counter greeter_connections_closed_total {'reason': 'greeted'} 1\n",
        "gauge greeter_connections_held {} 0\n",
        "gauge greeter_build_info {'version': ",
    ] {
        assert!(parsed.contains(expected), "no {expected:?} in:\n{parsed}");
    }
}

#[test]
fn promtool_checks_the_text_format_without_a_warning() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    let (_, text) = http_get(metrics_addr(&server), "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}\n{text}");
    assert_eq!(said.trim(), "", "promtool's warnings on:\n{text}");
}

#[test]
fn healthz_is_ok_while_serving_503_while_draining_and_404_elsewhere() {
    let greeting = large_greeting(16 * 1024 * 1024);
    let path = temp_file("metrics-drain", &greeting);
    let server = supervise(&["--metrics", "127.0.0.1:0", "--message-file", path.arg()]);
    let metrics = server.metrics.unwrap();
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(metrics, "/").0, 404);
    assert_eq!(http_get(metrics, "/metrics/extra").0, 404);

    let held = connect(server.addr());
    server.wait_for_in_flight(1);
    server.requests.send(greeter::supervisor::Request::Drain);
    wait_until("the drain to begin", || server.snapshot().draining);
    assert_eq!(
        http_get(metrics, "/healthz"),
        (503, "draining\n".to_owned())
    );
    assert_each_peer_receives(vec![held], &greeting);
    let totals = server.stop();
    assert_eq!((totals.accepted, totals.greeted()), (1, 1), "{totals}");
}

#[test]
fn healthz_says_paused_while_descriptors_run_out() {
    let greeting = large_greeting(16 * 1024 * 1024);
    let server = ServerCommand::new(&["--metrics", "127.0.0.1:0"])
        .greeting("metrics-paused", &greeting)
        .fd_limit(24)
        .spawn();
    let metrics = metrics_addr(&server);
    let peers: Vec<_> = (0..24).map(|_| connect(server.addr)).collect();
    server.wait_for_log("accept paused");
    // The metrics endpoint still answers: it gives up its spare descriptor to accept.
    // (The loop publishes its pause at the end of the round that logged it: the line
    // can reach stderr first.)
    wait_until("healthz to say paused", || {
        http_get(metrics, "/healthz") == (503, "paused\n".to_owned())
    });
    let scraped = samples(&http_get(metrics, "/metrics").1);
    assert_eq!(scraped["greeter_accept_paused"], 1.0);
    assert_eq!(scraped["greeter_accept_pauses_total"], 1.0);

    assert_each_peer_receives(peers, &greeting);
    server.wait_for_log("accept resumed");
    wait_until("healthz to be ok again", || {
        http_get(metrics, "/healthz").0 == 200
    });
}

#[test]
fn a_stalled_metrics_client_does_not_touch_the_greetings() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    // Connects and never sends a request: it holds the metrics thread for its budget.
    let _stalled = TcpStream::connect(metrics).unwrap();
    let options = load_options(server.addr, 2_000);
    let report = load::run(&options, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.total()), (2_000, 0));
    // Once its budget is spent the next scrape is answered.
    assert_eq!(http_get(metrics, "/healthz").0, 200);
}

#[test]
fn a_metrics_address_in_use_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_startup_error(
        &["--port", "0", "--metrics", &addr],
        &format!("greeter-server: cannot listen for metrics on {addr}: address already in use"),
    );
}

#[test]
fn a_scrape_is_answered_while_a_hundred_clients_idle_or_dribble() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    // Half never send a byte, half stop in the middle of their request line.
    let mut holders: Vec<TcpStream> = (0..100).map(|_| connect(metrics)).collect();
    for holder in holders.iter_mut().skip(50) {
        holder.write_all(b"GET /metr").unwrap();
    }
    // One client at a time would answer this after every holder's budget (2 s each).
    let started = std::time::Instant::now();
    let (status, body) = http_get(metrics, "/metrics");
    eprintln!(
        "scrape beside 100 idle clients took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("greeter_connections_accepted_total"),
        "{body}"
    );
}

#[test]
fn beyond_its_client_cap_the_endpoint_drops_the_oldest_idle_client() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let cap = greeter::metrics::http::MAX_CLIENTS;
    let idle: Vec<TcpStream> = (0..cap + 20).map(|_| connect(metrics)).collect();
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_owned()));
    // The first 20, plus one for the scrape, were closed to make room: a clean EOF.
    for mut dropped in idle.into_iter().take(21) {
        assert_eq!(read_to_eof(&mut dropped).unwrap(), b"");
    }
}

#[test]
fn head_query_strings_and_header_limits_are_answered_as_http_says() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let exchange = |request: &[u8]| {
        let mut stream = connect(metrics);
        stream.write_all(request).unwrap();
        String::from_utf8(read_to_eof(&mut stream).unwrap()).unwrap()
    };
    for path in ["/metrics", "/healthz"] {
        let response = exchange(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{response}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0, "{head}");
        assert_eq!(body, "", "HEAD {path} sent a body");
    }
    let (status, body) = http_get(metrics, "/metrics?module=greeter&x=1");
    assert_eq!(status, 200);
    assert!(
        body.contains("greeter_connections_accepted_total"),
        "{body}"
    );
    let many_headers = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(40));
    let response = exchange(many_headers.as_bytes());
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}

#[test]
fn accept_is_negotiated_as_the_go_client_does() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let text = "text/plain; version=0.0.4; charset=utf-8";
    let openmetrics_1 = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let openmetrics_0 = "application/openmetrics-text; version=0.0.1; charset=utf-8";
    for (accept_lines, expected) in [
        // q order is honoured, and an unknown OpenMetrics version is passed over.
        (
            "Accept: application/openmetrics-text;q=0, text/plain;q=1\r\n",
            text,
        ),
        (
            "Accept: text/plain;q=0.9, application/openmetrics-text;q=0.5\r\n",
            text,
        ),
        (
            "Accept: application/openmetrics-text; version=9.9.9\r\n",
            text,
        ),
        (PROMETHEUS_ACCEPT, openmetrics_1),
        // Equal q: the header's order. No version: 0.0.1, labelled so.
        (
            "Accept: application/openmetrics-text, text/plain\r\n",
            openmetrics_0,
        ),
        ("Accept: */*\r\n", text),
        // q=0 is never chosen, even with nothing else acceptable.
        ("Accept: application/openmetrics-text;q=0\r\n", text),
        ("", text),
        // Only the first Accept header counts.
        (
            "Accept: text/plain\r\nAccept: application/openmetrics-text\r\n",
            text,
        ),
    ] {
        let response = http_exchange(
            metrics,
            format!("GET /metrics HTTP/1.1\r\nHost: greeter\r\n{accept_lines}\r\n").as_bytes(),
        );
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        assert_eq!(
            response_header(&response, "Content-Type"),
            Some(expected),
            "for {accept_lines:?}"
        );
        assert_eq!(
            response.ends_with("# EOF\n"),
            expected != text,
            "{response}"
        );
    }
}

#[test]
fn a_request_head_over_8_kib_is_refused_however_it_arrives() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let head_of = |length: usize| {
        let start = "GET /metrics HTTP/1.1\r\nX-Padding: ";
        format!("{start}{}\r\n\r\n", "y".repeat(length - start.len() - 4))
    };
    // Each in one write, so the server may read it whole.
    for (length, status) in [(8 * 1024, "200"), (8 * 1024 + 1, "431"), (9 * 1024, "431")] {
        let response = http_exchange(metrics, head_of(length).as_bytes());
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "a {length}-byte head: {}",
            response.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn an_error_response_survives_input_the_server_did_not_read() {
    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    for _ in 0..5 {
        let mut stream = connect(metrics);
        // A bad request, and more behind it than the server reads before answering:
        // a close with that unread would reset the connection under the response.
        let mut request = b"BREW /pot HTTP/1.1\r\n\r\n".to_vec();
        request.extend_from_slice(&[b'x'; 64 * 1024]);
        stream.write_all(&request).unwrap();
        let response = read_to_eof(&mut stream).expect("the response and a clean EOF");
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    }
}

#[test]
fn held_connections_lifetimes_make_a_histogram_and_the_fast_path_is_not_in_it() {
    let large = temp_file("histogram-large", &large_greeting(16 * 1024 * 1024));
    let (command, _config) = ServerCommand::new(&["--metrics", "127.0.0.1:0"]).config(
        "histogram.toml",
        &format!(
            "[[listener]]\nport = 0\n[[listener]]\nport = 0\nmessage-file = \"{}\"\n",
            large.arg()
        ),
    );
    let server = command.spawn();
    let addrs = server.listening_addrs(1);
    // Greeted at once: not held, not observed.
    for _ in 0..50 {
        assert_eq!(
            read_to_eof(&mut connect(addrs[0])).unwrap(),
            DEFAULT_GREETING
        );
    }
    // 16 MiB cannot go in one write: held until it is all out.
    assert_eq!(
        read_to_eof(&mut connect(addrs[1])).unwrap().len(),
        16 * 1024 * 1024
    );
    let metrics = metrics_addr(&server);
    let scraped = std::cell::RefCell::new(BTreeMap::new());
    wait_for(
        STEP_TIMEOUT,
        || format!("both closes published: {:?}", scraped.borrow()),
        || {
            *scraped.borrow_mut() = samples(&http_get(metrics, "/metrics").1);
            let scraped = scraped.borrow();
            (scraped.get("greeter_connections_accepted_total") == Some(&51.0)
                && scraped.get("greeter_connections_held") == Some(&0.0))
            .then_some(())
        },
    );
    let scraped = scraped.into_inner();
    // Only held connections are observed: the large greeting's, and a small one's
    // only if the kernel had not sent it all when it was checked (a loaded machine
    // can delay a loopback send), which `lingered` counts. Were the fast path
    // observed, all 51 would be.
    server.signal("USR1");
    let totals = server.wait_for_log("totals in_flight=0 accepted=51 ");
    let lingered: f64 = totals
        .rsplit(" lingered=")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .expect("a lingered= count");
    let observed = scraped["greeter_held_connection_seconds_count"];
    assert!(
        (1.0..=1.0 + lingered).contains(&observed),
        "{observed} observed, {lingered} lingered: {scraped:?}"
    );
    assert!(
        scraped.contains_key("greeter_held_connection_seconds_bucket{le=\"0.001\"}"),
        "{scraped:?}"
    );
    assert!(
        scraped.contains_key("greeter_held_connection_seconds_bucket{le=\"50.0\"}"),
        "{scraped:?}"
    );
    assert!(
        !scraped.contains_key("greeter_held_connection_seconds_bucket{le=\"100.0\"}"),
        "{scraped:?}"
    );
    assert_eq!(
        scraped.get("greeter_held_connection_seconds_bucket{le=\"+Inf\"}"),
        Some(&observed)
    );
    assert!(scraped["greeter_held_connection_seconds_sum"] < 35.0);
}

/// The `greeter_*` names that `text` uses.
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("greeter_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        // `greeter_*` in a comment is no name.
        if name.len() > "greeter_".len() {
            names.insert(name);
        }
    }
    names
}

#[test]
fn promtool_checks_the_alert_rules_and_the_dashboard_and_rules_name_real_metrics() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/deploy/prometheus/greeter-alerts.yml"
    );
    let output = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/deploy/grafana/greeter.json"
    ))
    .unwrap();
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"]
        .as_array()
        .is_some_and(|panels| panels.len() >= 8));
    // The tarpit row: trapped now, traps by close reason, bytes dripped, durations.
    let panels = parsed["panels"].as_array().unwrap();
    let row = panels
        .iter()
        .position(|panel| panel["type"] == "row" && panel["title"] == "Tarpit")
        .expect("a Tarpit row");
    let tarpit = serde_json::to_string(&panels[row + 1..]).unwrap();
    for name in [
        "greeter_trapped_connections",
        "greeter_trapped_clients_total",
        "greeter_bytes_dripped_total",
        "greeter_trap_duration_seconds_bucket",
    ] {
        assert!(tarpit.contains(name), "the Tarpit row shows no {name}");
    }
    // (The row's expressions, as JSON-encoded strings: closes by their trap reasons.)
    assert!(tarpit.contains(r#"reason=~\"trap_.*\""#), "{tarpit}");
    // Where they come from (--geoip-db): a world map that looks the country label's
    // ISO codes up in Grafana's own gazetteer.
    let map = panels[row + 1..]
        .iter()
        .find(|panel| panel["type"] == "geomap")
        .expect("a geomap panel in the Tarpit row");
    assert!(map["targets"][0]["expr"]
        .as_str()
        .is_some_and(|expr| expr.starts_with("sum by (country) (greeter_trapped_connections{")));
    let location = &map["options"]["layers"][0]["location"];
    assert_eq!(location["mode"], "lookup", "{map}");
    assert_eq!(location["lookup"], "country", "{map}");
    assert_eq!(location["gazetteer"], "public/gazetteer/countries.json");

    let server = spawn_server(&["--metrics", "127.0.0.1:0"]);
    let (_, exposition) = http_get(metrics_addr(&server), "/metrics");
    let exported: std::collections::BTreeSet<String> = exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();
    let used = metric_names_in(&dashboard)
        .into_iter()
        .chain(metric_names_in(&std::fs::read_to_string(rules).unwrap()));
    for name in used {
        assert!(
            exported.contains(&name),
            "{name} is not in /metrics:\n{exposition}"
        );
    }
}
