//! The greeting itself: exact bytes, for one connection and for many at once.

mod util;

use std::thread;

use greeter::client::{fetch_greeting, ClientOptions};
use greeter::Config;
use util::*;

#[test]
fn default_greeting_is_the_exact_38_bytes_then_eof() {
    let server = start_server(default_config());
    let mut peer = connect(server.addr);
    let received = read_to_eof(&mut peer).expect("clean EOF after the greeting");
    assert_eq!(received, DEFAULT_GREETING);
    assert_eq!(received.len(), 38);

    let totals = server.stop();
    assert_eq!(
        (totals.accepted, totals.greeted(), totals.bytes_sent),
        (1, 1, 38)
    );
    assert_eq!(totals.closed_early(), 0);
}

#[test]
fn client_reads_a_multi_megabyte_greeting_whole() {
    let greeting = large_greeting(8 * 1024 * 1024);
    let server = start_server(config_with(&greeting));
    let received = fetch_greeting("127.0.0.1", server.addr.port(), &ClientOptions::default())
        .expect("fetch the greeting");
    assert_same_bytes(&received, &greeting);

    let totals = server.stop();
    assert_eq!(totals.greeted(), 1);
    assert_eq!(totals.bytes_sent, greeting.len() as u64);
}

#[test]
fn thousand_connections_two_hundred_at_once_all_exact() {
    let server = start_server(default_config());
    let port = server.addr.port();
    let peers: Vec<_> = (0..200)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..5 {
                    let received = fetch_greeting("127.0.0.1", port, &ClientOptions::default())
                        .expect("every connection gets its greeting");
                    assert_eq!(received, DEFAULT_GREETING);
                }
            })
        })
        .collect();
    for peer in peers {
        peer.join().expect("a peer failed");
    }

    let totals = server.stop();
    assert_eq!(totals.accepted, 1000);
    assert_eq!(totals.greeted(), 1000);
    assert_eq!(totals.bytes_sent, 38_000);
    assert_eq!(totals.closed_early(), 0);
}

#[test]
fn ipv6_loopback_serves_the_greeting() {
    let server = start_server_on(Config::new("[::1]:0".parse().unwrap()));
    assert!(server.addr.is_ipv6());
    let received = fetch_greeting("::1", server.addr.port(), &ClientOptions::default())
        .expect("fetch over IPv6");
    assert_eq!(received, DEFAULT_GREETING);
}

#[test]
fn message_flag_is_sent_byte_for_byte() {
    let server = spawn_server(&["--message", "héllo, wörld\n"]);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), "héllo, wörld\n".as_bytes());
}

#[test]
fn message_file_of_arbitrary_bytes_is_sent_exactly() {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let server = ServerCommand::new(&[])
        .greeting("binary-greeting", &bytes)
        .spawn();
    let mut peer = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), &bytes);
}
