//! Unit tests of the request head parsing.

use super::*;
use crate::metrics::format::Format;

fn get(path: &str, head_only: bool) -> Option<Request> {
    Some(Request::Get {
        path: path.to_owned(),
        head_only,
        format: Format::Text,
    })
}

#[test]
fn requests_are_read_as_what_they_ask_for() {
    let parse = |text: &str| parse_request(text.as_bytes());
    assert_eq!(
        parse("GET /metrics HTTP/1.1\r\n\r\n"),
        get("/metrics", false)
    );
    assert_eq!(
        parse("HEAD /healthz HTTP/1.1\r\n\r\n"),
        get("/healthz", true)
    );
    assert_eq!(
        parse("GET /metrics?module=x&y=1 HTTP/1.1\r\n\r\n"),
        get("/metrics", false)
    );
    assert_eq!(
        parse(
            "GET /metrics HTTP/1.1\r\naccept: application/openmetrics-text; version=1.0.0\r\n\r\n"
        ),
        Some(Request::Get {
            path: "/metrics".to_owned(),
            head_only: false,
            format: Format::OpenMetrics1_0_0,
        })
    );
    assert_eq!(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
    assert!(matches!(
        parse("POST /metrics HTTP/1.1\r\n\r\n"),
        Some(Request::Refused("405 Method Not Allowed", _))
    ));
    assert!(matches!(
        parse("nonsense\r\n\r\n"),
        Some(Request::Refused("400 Bad Request", _))
    ));
    let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(40));
    assert!(matches!(
        parse(&many_headers),
        Some(Request::Refused("431 Request Header Fields Too Large", _))
    ));
    let long = format!("GET / HTTP/1.1\r\nX: {}", "y".repeat(MAX_REQUEST_BYTES));
    assert!(matches!(
        parse(&long),
        Some(Request::Refused("431 Request Header Fields Too Large", _))
    ));
    // Whole heads, read at once: 8 KiB is served, a byte more is not.
    let head_of = |length: usize| {
        let start = "GET /metrics HTTP/1.1\r\nX: ";
        let padding = "y".repeat(length - start.len() - 4);
        format!("{start}{padding}\r\n\r\n")
    };
    assert_eq!(parse(&head_of(MAX_REQUEST_BYTES)), get("/metrics", false));
    assert!(matches!(
        parse(&head_of(MAX_REQUEST_BYTES + 1)),
        Some(Request::Refused("431 Request Header Fields Too Large", _))
    ));
    // The first Accept decides, as in Go.
    assert_eq!(
        parse("GET /metrics HTTP/1.1\r\nAccept: text/plain\r\naccept: application/openmetrics-text\r\n\r\n"),
        get("/metrics", false)
    );
}
