//! `--proxy-protocol`: the header is read before the greeting, names the client the
//! limits see, and a missing, bad or late header closes the connection unanswered.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use greeter::CloseReason;
use greeter::Config;
use util::*;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn proxy_config() -> Config {
    default_config().with_proxy_protocol()
}

/// A v2 header: `command` 1 (PROXY) or 0 (LOCAL), `family` 0x11 (TCP over IPv4) or
/// 0x21 (TCP over IPv6), then the addresses.
fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(addresses);
    header
}

fn v2_ipv6_source() -> Vec<u8> {
    let mut addresses = Vec::new();
    addresses.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    addresses.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    addresses.extend_from_slice(&[0x9c, 0x40, 0, 17]);
    v2(1, 0x21, &addresses)
}

/// Sends `header` and reads the answer to EOF.
fn greeting_after(server: &TestServer, header: &[u8]) -> Vec<u8> {
    let mut peer = connect(server.addr);
    peer.write_all(header).unwrap();
    read_to_eof(&mut peer).expect("a clean EOF")
}

#[test]
fn v1_and_v2_headers_for_ipv4_and_ipv6_sources_and_local_are_greeted() {
    let server = start_server(proxy_config());
    for header in [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 17\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(1, 0x11, &[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0, 17]),
        v2_ipv6_source(),
        // LOCAL: the load balancer's own health check.
        v2(0, 0x00, &[]),
    ] {
        assert_eq!(
            greeting_after(&server, &header),
            DEFAULT_GREETING,
            "{header:?}"
        );
    }
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::ProxyHeader)),
        (6, 0),
        "{totals}"
    );
}

#[test]
fn a_header_split_across_segments_is_waited_for() {
    let server = start_server(proxy_config());
    let mut peer = connect(server.addr);
    peer.set_nodelay(true).unwrap();
    let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\n";
    peer.write_all(&header[..13]).unwrap();
    // The server holds it, greeting nothing, until the rest comes.
    wait_until("the partial header to be held", || {
        server.snapshot().held == 1
    });
    // It must not speak first: nothing has been sent.
    peer.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = peer.read(&mut byte);
    assert_eq!(
        early.map_err(|err| err.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
    peer.set_nonblocking(false).unwrap();
    peer.write_all(&header[13..30]).unwrap();
    peer.write_all(&header[30..]).unwrap();
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    let totals = server.stop();
    assert_eq!(totals.greeted(), 1, "{totals}");
}

/// A header sent right after the handshake is taken by the one read at accept (the
/// listener also defers accepts until data has come: `server.rs` tests that), so no
/// connection waits in the slab for it.
#[test]
fn headers_sent_with_the_connection_are_taken_at_accept_without_holding_it() {
    let server = start_server(proxy_config());
    for _ in 0..50 {
        let mut peer = connect(server.addr);
        peer.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\n")
            .unwrap();
        assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    }
    let totals = server.stop();
    let (held_lifetimes, _) = totals.held_lifetimes();
    // Held only after the greeting, if at all (a loaded machine can leave part of
    // it unsent when it is checked): never for the header.
    assert_eq!(
        (totals.greeted(), held_lifetimes.iter().sum::<u64>()),
        (50, totals.lingered),
        "{totals}"
    );
}

#[test]
fn data_after_the_header_is_input_like_any_other() {
    let server = start_server(proxy_config());
    let mut peer = connect(server.addr);
    peer.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\nhello?\r\n")
        .unwrap();
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    drop(peer);
    let totals = server.stop();
    assert_eq!((totals.greeted(), totals.lingered), (1, 1), "{totals}");
}

/// What a peer sending `bytes` gets: nothing of the greeting, in any case.
fn nothing_after(server: &TestServer, bytes: &[u8]) {
    let mut peer = connect(server.addr);
    peer.write_all(bytes).unwrap();
    let mut received = Vec::new();
    // The server closes without answering (a reset, as the bytes were not read).
    let _ = peer.read_to_end(&mut received);
    assert!(
        received.is_empty(),
        "got {} bytes after {bytes:?}",
        received.len()
    );
}

#[test]
fn garbage_and_oversized_headers_close_without_the_greeting() {
    let server = start_server(proxy_config());
    nothing_after(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    nothing_after(&server, b"PROXY TCP4 not-an-address 198.51.100.1 1 2\r\n");
    let mut oversized = V2_SIGNATURE.to_vec();
    oversized.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
    nothing_after(&server, &oversized);
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::ProxyHeader)),
        (0, 3),
        "{totals}"
    );
}

#[test]
fn no_header_within_the_timeout_closes_without_the_greeting() {
    let mut config = proxy_config();
    config.proxy_timeout = Duration::from_millis(200);
    let server = start_server(config);
    let mut silent = connect(server.addr);
    wait_until("the header timeout", || {
        server.snapshot().totals.closes(CloseReason::ProxyHeader) == 1
    });
    assert_eq!(
        read_to_eof(&mut silent).unwrap(),
        b"",
        "nothing sent, then EOF"
    );
    assert_eq!(server.stop().greeted(), 0);
}

#[test]
fn the_client_the_header_names_is_the_one_limited_per_address() {
    // Large enough that a peer that reads nothing stays held.
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut config = proxy_config().with_greeting(greeting.clone());
    config.max_per_ip = Some(1);
    let server = start_server(config);
    // Every socket comes from 127.0.0.1; the headers tell the clients apart.
    let header = |source: &str| format!("PROXY TCP4 {source} 198.51.100.1 40000 17\r\n");
    let mut holder = connect(server.addr);
    holder.write_all(header("192.0.2.7").as_bytes()).unwrap();
    wait_until("192.0.2.7 held", || server.snapshot().held == 1);

    assert_eq!(greeting_after(&server, header("192.0.2.7").as_bytes()), b"");
    let other: Vec<u8> = greeting_after(&server, header("192.0.2.8").as_bytes());
    assert_same_bytes(&other, &greeting);
    assert_each_peer_receives(vec![holder], &greeting);
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::PerIpLimit)),
        (2, 1),
        "{totals}"
    );
}

#[test]
fn valid_headers_sent_a_byte_at_a_time_are_greeted() {
    let server = start_server(proxy_config());
    for header in [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 8080\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8080\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(1, 0x11, &[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0, 17]),
        v2_ipv6_source(),
    ] {
        let mut peer = connect(server.addr);
        peer.set_nodelay(true).unwrap();
        for byte in &header {
            peer.write_all(std::slice::from_ref(byte)).unwrap();
        }
        let received = read_to_eof(&mut peer).expect("a clean EOF");
        assert_eq!(
            received,
            DEFAULT_GREETING,
            "{:?}",
            String::from_utf8_lossy(&header)
        );
    }
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::ProxyHeader)),
        (5, 0),
        "{totals}"
    );
}

#[test]
fn a_partial_header_and_then_eof_is_closed_at_once() {
    let mut config = proxy_config();
    // Far longer than the test waits: only the EOF can close it in time.
    config.proxy_timeout = Duration::from_secs(3600);
    let server = start_server(config);
    let mut peer = connect(server.addr);
    peer.write_all(b"PROXY TCP4 192.0.").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until("the half-sent header to be refused", || {
        server.snapshot().totals.closes(CloseReason::ProxyHeader) == 1
    });
    assert_eq!(server.snapshot().held, 0);
    let mut received = Vec::new();
    let _ = peer.read_to_end(&mut received);
    assert!(received.is_empty(), "{received:?}");
}

#[test]
fn connections_without_a_header_cannot_starve_clients_with_one() {
    for max_per_ip in [Some(10), None] {
        let mut config = proxy_config();
        config.max_connections = 1000;
        config.max_per_ip = max_per_ip;
        // Far longer than the test waits: the flood would hold its slots throughout.
        config.proxy_timeout = Duration::from_secs(3600);
        let server = start_server(config);
        let flood: Vec<_> = (0..1200)
            .map(|_| connect_from("127.0.0.2", server.addr))
            .collect();
        // A flood from one socket peer holds its --max-per-ip share, else a quarter of
        // the connection limit (the newest); the rest are closed.
        let waiting = max_per_ip.map_or(250, |limit| limit as usize);
        wait_until("the flood beyond the waiters' bound to be refused", || {
            server.snapshot().totals.closes(CloseReason::ProxyHeader) == (1200 - waiting) as u64
        });
        assert_eq!(server.snapshot().held, waiting);
        for client in 0..50 {
            let mut peer = connect_from("127.0.0.3", server.addr);
            let header = format!("PROXY TCP4 192.0.2.{client} 198.51.100.1 40000 17\r\n");
            peer.write_all(header.as_bytes()).unwrap();
            assert_eq!(
                read_to_eof(&mut peer).unwrap(),
                DEFAULT_GREETING,
                "{max_per_ip:?}"
            );
        }
        // A client whose header came a moment after its accept pushed out the oldest;
        // once the last is closed (the snapshot may lag a round), the flood holds at
        // most what it held.
        wait_until("the flood to hold at most its bound", || {
            server.snapshot().held <= waiting
        });
        drop(flood);
        let totals = server.stop();
        assert_eq!(totals.greeted(), 50, "{totals}");
    }
}

#[test]
fn a_v1_header_cut_right_after_the_source_port_is_waited_for() {
    for header in [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 8080\r\n"[..],
        &b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8080\r\n"[..],
    ] {
        // Right after the source port's trailing space.
        let cut = header.windows(6).position(|w| w == b"40000 ").unwrap() + 6;
        let mut config = proxy_config();
        config.max_connections = 1;
        let server = start_server(config);
        // The one slot is taken, so the next client waits in the backlog while its
        // first segment arrives: the server's first look at it is exactly the cut.
        let mut holder = connect(server.addr);
        wait_until("the holder to be held", || server.snapshot().held == 1);
        let mut cut_client = connect(server.addr);
        cut_client.set_nodelay(true).unwrap();
        cut_client.write_all(&header[..cut]).unwrap();
        holder.write_all(b"PROXY UNKNOWN\r\n").unwrap();
        assert_eq!(read_to_eof(&mut holder).unwrap(), DEFAULT_GREETING);
        wait_until("the cut client to be accepted and looked at", || {
            let snapshot = server.snapshot();
            snapshot.totals.accepted == 2 && snapshot.held == 1
                || snapshot.totals.closes(CloseReason::ProxyHeader) == 1
        });
        let _ = cut_client.write_all(&header[cut..]);
        let mut received = Vec::new();
        let _ = cut_client.read_to_end(&mut received);
        assert_eq!(
            received,
            DEFAULT_GREETING,
            "{:?}",
            String::from_utf8_lossy(&header[..cut])
        );
        let totals = server.stop();
        assert_eq!(
            (totals.greeted(), totals.closes(CloseReason::ProxyHeader)),
            (2, 0),
            "{totals}"
        );
    }
}
