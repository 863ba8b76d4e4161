//! Peers that do not just read: slow readers, peers that send first or while the
//! greeting is in flight, peers that stall. Each must get every byte and a clean EOF
//! (or, when it stalls, be cut off by the write timeout).

mod util;

use std::io::{ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

use greeter::CloseReason;
use util::*;

/// A telnet client's opening negotiation (IAC DO/WILL ...), the classic "sends first".
const TELNET_NEGOTIATION: &[u8] = &[255, 253, 1, 255, 253, 31, 255, 251, 24];

#[test]
fn partial_write_resumes_on_writable_for_a_slow_reader() {
    let greeting = large_greeting(4 * 1024 * 1024);
    // A small send buffer: the greeting can only finish through many writable events.
    let mut config = config_with(&greeting);
    config.send_buffer = Some(16 * 1024);
    let server = start_server(config);
    let mut peer = connect(server.addr);
    // Read nothing until the first write has stopped short and the server holds us.
    wait_until("the first write to stop short", || {
        server.snapshot().totals.partial_writes == 1
    });
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = peer
            .read(&mut chunk)
            .expect("no reset while reading slowly");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
    }
    assert_same_bytes(&received, &greeting);

    let totals = server.stop();
    assert_eq!(totals.greeted(), 1);
    assert_eq!(totals.partial_writes, 1);
    assert_eq!(totals.bytes_sent, greeting.len() as u64);
}

/// Connects, sends `first` before reading anything, then reads to EOF.
fn greeting_after_sending_first(server_addr: std::net::SocketAddr, first: &[u8]) -> Vec<u8> {
    let mut peer = connect(server_addr);
    send_quietly(&mut peer, first);
    read_to_eof(&mut peer).expect("a clean EOF, not a reset")
}

#[test]
fn peer_that_sends_first_still_gets_whole_greeting() {
    let server = start_server(default_config());
    // Many rounds, because the danger is a race between the peer's bytes and the close.
    for _ in 0..300 {
        assert_eq!(
            greeting_after_sending_first(server.addr, TELNET_NEGOTIATION),
            DEFAULT_GREETING
        );
    }
    let totals = server.stop();
    assert_eq!(totals.greeted(), 300);
    assert_eq!(totals.closed_early(), 0);
    assert!(
        totals.lingered > 0,
        "some peers' bytes must have been seen: {totals}"
    );
}

#[test]
fn peer_that_sends_first_gets_whole_large_greeting() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let server = start_server(config_with(&greeting));
    for _ in 0..5 {
        let received = greeting_after_sending_first(server.addr, &[b'x'; 10_000]);
        assert_same_bytes(&received, &greeting);
    }
    let totals = server.stop();
    assert_eq!(totals.greeted(), 5);
    assert_eq!(totals.lingered, 5);
    // Each peer read to its end and closed: the clean end of a lingering close.
    assert_eq!(totals.closes(CloseReason::PeerEof), 5, "{totals}");
}

/// A peer that sends more than the discard budget after taking its whole greeting is
/// let go (it has everything), counted as greeted, and told apart as linger-budget.
#[test]
fn peer_that_floods_after_its_greeting_is_released_by_the_budget() {
    let server = greeter::Server::bind(default_config()).unwrap();
    // The peer's first bytes are there before the server looks: it lingers.
    let mut peer = connect(server.local_addr());
    send_quietly(&mut peer, TELNET_NEGOTIATION);
    let handle = server.handle();
    let running = thread::spawn(move || server.run());
    let mut greeting = vec![0u8; DEFAULT_GREETING.len()];
    peer.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, DEFAULT_GREETING);
    for _ in 0..40 {
        send_quietly(&mut peer, &[b'x'; 16 * 1024]);
    }
    wait_until("the budget to release the peer", || {
        handle.snapshot().totals.closes(CloseReason::LingerBudget) == 1
    });
    handle.shutdown().unwrap();
    let totals = running.join().unwrap().unwrap();
    assert_eq!(
        (totals.greeted(), totals.closed_early()),
        (1, 0),
        "{totals}"
    );
}

#[test]
fn peer_that_sends_while_large_greeting_in_flight_gets_all_and_eof() {
    let greeting = large_greeting(8 * 1024 * 1024);
    let server = start_server(config_with(&greeting));
    let mut peer = connect(server.addr);
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = peer.read(&mut chunk).expect("no reset mid-greeting");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        // Talk back throughout, most of all while the greeting is still arriving.
        if received.len() < greeting.len() {
            send_quietly(&mut peer, b"are you still there?\r\n");
        }
    }
    assert_same_bytes(&received, &greeting);
    let totals = server.stop();
    assert_eq!(totals.greeted(), 1);
    assert_eq!(totals.closed_early(), 0);
}

#[test]
fn peer_that_never_closes_its_side_is_released_by_the_linger_timeout() {
    let mut config = default_config();
    config.linger_timeout = Duration::from_millis(200);
    let server = start_server(config);
    let mut peer = connect(server.addr);
    send_quietly(&mut peer, TELNET_NEGOTIATION);
    // Keep our side open without reading: the server must not wait for us forever.
    wait_until("the linger timeout to release the peer", || {
        server.snapshot().totals.greeted() == 1 && server.snapshot().held == 0
    });
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::LingerTimeout)),
        (1, 1),
        "{totals}"
    );
    // The greeting and the FIN were sent before the linger began.
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn write_timeout_closes_a_peer_that_stops_reading() {
    let greeting = large_greeting(8 * 1024 * 1024);
    let mut config = config_with(&greeting);
    config.write_timeout = Duration::from_millis(300);
    let server = start_server(config);
    let mut stalled = connect(server.addr);
    let started = Instant::now();
    wait_until("the write timeout", || {
        server.snapshot().totals.closes(CloseReason::WriteTimeout) == 1
    });

    // The stalled peer was cut off: what it can still read is short of the greeting.
    let mut received = Vec::new();
    let outcome = stalled.read_to_end(&mut received);
    assert!(
        received.len() < greeting.len(),
        "a stalled peer cannot have received the whole greeting"
    );
    // The server aborts a timed-out peer with a reset, freeing its buffers at once.
    let err = outcome.expect_err("a timed-out peer is reset, not closed cleanly");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    // Meanwhile the server still serves others.
    let mut other = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut other).unwrap(), &greeting);

    let totals = server.stop();
    assert_eq!(
        totals.closes(CloseReason::WriteTimeout),
        1,
        "{totals} after {:?}",
        started.elapsed()
    );
    assert_eq!((totals.accepted, totals.greeted()), (2, 1));
}

#[test]
fn max_connections_caps_held_connections_and_serves_the_overflow_later() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let server = ServerCommand::new(&["--max-connections", "4"])
        .greeting("cap-greeting", &greeting)
        .spawn();
    let baseline_fds = server.open_fds();

    // Ten peers that do not read yet: four are held, six wait in the backlog.
    let peers: Vec<_> = (0..10).map(|_| connect(server.addr)).collect();
    server.wait_for_in_flight(4);
    let held = server.open_fds() - baseline_fds;
    assert_eq!(held, 4, "connections held beyond --max-connections");

    assert_each_peer_receives(peers, &greeting);
}

#[test]
fn max_per_ip_closes_an_address_beyond_its_share_without_the_greeting() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let mut config = config_with(&greeting);
    config.max_per_ip = Some(2);
    let server = start_server(config);

    // Two held connections from 127.0.0.1 use up its share...
    let held: Vec<_> = (0..2).map(|_| connect(server.addr)).collect();
    wait_until("both held", || server.snapshot().held == 2);
    // ...so three more from it are closed at once, with nothing sent.
    for _ in 0..3 {
        let mut refused = connect(server.addr);
        assert_eq!(read_to_eof(&mut refused).unwrap(), b"");
    }
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", server.addr);
    assert_same_bytes(&read_to_eof(&mut other).unwrap(), &greeting);

    let snapshot = server.snapshot();
    assert_eq!(snapshot.totals.closes(CloseReason::PerIpLimit), 3);
    assert_each_peer_receives(held, &greeting);
    // Once its connections are done, the address has its share back.
    let mut again = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut again).unwrap(), &greeting);

    let totals = server.stop();
    assert_eq!(
        (
            totals.accepted,
            totals.greeted(),
            totals.closes(CloseReason::PerIpLimit)
        ),
        (7, 4, 3)
    );
}

#[test]
fn peer_that_resets_mid_greeting_is_counted_and_the_server_goes_on() {
    let greeting = large_greeting(8 * 1024 * 1024);
    let server = start_server(config_with(&greeting));
    let mut peer = connect(server.addr);
    let mut first = vec![0u8; 64 * 1024];
    peer.read_exact(&mut first).unwrap();
    // Linger 0: closing sends a reset while the server still has most of the
    // greeting to write.
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    wait_until("the reset to be seen", || {
        server.snapshot().totals.closes(CloseReason::PeerReset) == 1
    });

    let mut next = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut next).unwrap(), &greeting);
    drop(next); // its EOF ends the server's lingering close
    let totals = server.stop();
    assert_eq!(
        (
            totals.accepted,
            totals.greeted(),
            totals.closes(CloseReason::PeerReset)
        ),
        (2, 1, 1),
        "{totals}"
    );
}

/// A peer that sends after the server has handed it the whole greeting must still get
/// every byte: the greeting is written to the kernel at once, but most of it is still
/// waiting for the peer's window, and a close now would turn the peer's bytes into a
/// reset that throws that rest away.
#[test]
fn peer_that_sends_after_the_greeting_was_written_still_gets_all_of_it() {
    let greeting = large_greeting(1024 * 1024);
    let server = start_server(config_with(&greeting));
    for round in 1..=20u64 {
        let mut peer = connect(server.addr);
        // Read nothing until the server has written the whole greeting to the kernel.
        wait_until("the whole greeting written", || {
            server.snapshot().totals.bytes_sent >= round * greeting.len() as u64
        });
        send_quietly(&mut peer, &[b'x'; 100]);
        let received = read_to_eof(&mut peer).expect("the whole greeting and a clean EOF");
        assert_same_bytes(&received, &greeting);
    }
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closed_early()),
        (20, 0),
        "{totals}"
    );
}

/// A peer that talks while a multi-megabyte greeting is still being written, then
/// reads it more slowly than the linger timeout: lingering only starts once the whole
/// greeting has left the kernel, so the linger timeout cannot cut it off.
#[test]
fn peer_that_sends_mid_greeting_and_reads_slowly_gets_all_of_it() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let mut config = config_with(&greeting);
    config.linger_timeout = Duration::from_millis(100);
    let server = start_server(config);
    for round in 1..=3u64 {
        let mut peer = connect(server.addr);
        wait_until("the greeting started", || {
            server.snapshot().totals.bytes_sent > (round - 1) * greeting.len() as u64
        });
        send_quietly(&mut peer, b"hello?\r\n");
        // Read just enough for the server to write its last byte to the kernel...
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while server.snapshot().totals.bytes_sent < round * greeting.len() as u64 {
            let n = peer.read(&mut chunk).expect("no reset mid-greeting");
            if n == 0 {
                // Everything arrived before the server's loop published its count (a
                // preempted server thread): the checks below still hold.
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
        // ...then stop reading for longer than the linger timeout (the peer's own
        // slowness is the input here) while the rest still waits in the kernel.
        thread::sleep(Duration::from_millis(300));
        send_quietly(&mut peer, b"still there?\r\n");
        peer.read_to_end(&mut received)
            .expect("the whole greeting and a clean EOF");
        assert_same_bytes(&received, &greeting);
    }
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closed_early()),
        (3, 0),
        "{totals}"
    );
}

/// A peer that does not take its greeting but sends more than the discard budget is
/// not waiting for a clean close: it is reset and counted as `flood`, and the server
/// goes on serving.
#[test]
fn peer_that_floods_while_its_greeting_waits_in_the_kernel_is_reset() {
    let greeting = large_greeting(1024 * 1024);
    let server = start_server(config_with(&greeting));
    let mut flooder = connect(server.addr);
    wait_until("the whole greeting written", || {
        server.snapshot().totals.bytes_sent >= greeting.len() as u64
    });
    assert_eq!(server.snapshot().held, 1, "held while the kernel sends");
    // More than the 256 KiB budget, in pieces; the server reads and discards them.
    for _ in 0..40 {
        send_quietly(&mut flooder, &[b'x'; 16 * 1024]);
    }
    wait_until("the flooder to be cut off", || {
        server.snapshot().totals.closes(CloseReason::Flood) == 1
    });
    let mut other = connect(server.addr);
    assert_same_bytes(&read_to_eof(&mut other).unwrap(), &greeting);
    let totals = server.stop();
    assert_eq!(
        (totals.greeted(), totals.closes(CloseReason::Flood)),
        (1, 1),
        "{totals}"
    );
}
