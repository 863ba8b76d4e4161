//! The metrics endpoint, spoken to in raw HTTP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use super::{connect, ServerProcess};

/// The metrics address the server logged.
pub fn metrics_addr(server: &ServerProcess) -> SocketAddr {
    let log = server.wait_for_log("metrics: serving http://");
    let rest = &log[log.find("metrics: serving http://").unwrap() + 24..];
    rest[..rest.find("/metrics").unwrap()].parse().unwrap()
}

/// `GET path` over a fresh connection: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, "")
}

/// `GET path` with the extra header lines `headers` (each ending in CRLF).
pub fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: greeter\r\n{headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response[response.find("\r\n\r\n").unwrap() + 4..].to_owned();
    (status, body)
}

/// Sends `request` as it is over a fresh connection: the whole response, as text.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of a response's header `name` (as written: greeter writes each once).
pub fn response_header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = &response[..response.find("\r\n\r\n")?];
    head.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

/// The samples of an exposition, `name{labels}` to value (a test's reading, not a
/// validation: `prometheus_exposition_parses_with_the_prometheus_parser` does that).
pub fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A loopback port that was free a moment ago, for a flag whose real port the test
/// cannot read back (the metrics address of a server whose log is not read).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
