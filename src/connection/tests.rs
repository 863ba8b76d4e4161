//! A connection's fate, phase by phase: each phase against the events that matter to
//! it, over real loopback sockets, with the exact [`Step`] and the phase after. Each
//! event is waited for on the socket's state (the readiness the loop would see), never
//! on time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, SockRef, Socket, Type};

use super::*;

/// The greeting of the phases that need no more than a short one.
const GREETING: &[u8] = b"Hello there! This is the hosted server";

/// A complete PROXY v1 header, naming 192.0.2.7:40000.
const PROXY_HEADER: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\n";

/// Where a row of the table starts.
#[derive(Debug, Clone, Copy)]
enum At {
    /// `--proxy-protocol`, nothing read yet.
    Header,
    /// Held back by `--greet-delay` (`--pregreet pregreet`).
    Delaying { pregreet: Pregreet },
    /// Fresh, its short greeting not written yet.
    Writing,
    /// Part of a long greeting written, the send buffer full (the peer reads nothing).
    Blocked,
    /// All written and the FIN queued, part of it still unsent (the peer's window is
    /// small and it reads nothing).
    Flushing,
    /// All sent; the peer sent `hi`, not read yet.
    Lingering,
}

/// What happens to the connection before it is advanced.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A wake-up with nothing new from the peer (for a writer: writable, with room if
    /// the buffer has any).
    Wakeup,
    /// The peer sends these bytes.
    Input(&'static [u8]),
    /// The peer shuts down its side.
    Eof,
    /// The peer resets the connection.
    Reset,
    /// The peer reads everything it is sent, to the FIN.
    ReadAll,
    /// The phase's deadline passes ([`Connection::on_deadline`], not `advance`).
    Deadline,
}

/// The connection's side of a loopback pair: nonblocking, as mio's, and accepted as a
/// listener does.
fn accepted(listener: &TcpListener, proxy_protocol: bool) -> Connection {
    let (server, peer) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    Connection::accepted(TcpStream::from_std(server), peer, proxy_protocol, 0)
}

/// A loopback pair with ordinary buffers: the peer (blocking) and the connection.
fn connected(proxy_protocol: bool) -> (std::net::TcpStream, Connection) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer =
        std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    (peer, accepted(&listener, proxy_protocol))
}

/// A loopback pair whose peer has the smallest receive window the kernel allows, and
/// whose connection has a fixed send buffer of `send_buffer` bytes (no autotuning):
/// what is written and what is left unsent then depend on sizes the test chooses.
fn connected_slow(send_buffer: usize) -> (std::net::TcpStream, Connection) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let peer = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    // Before connecting: the window is agreed at the handshake.
    peer.set_recv_buffer_size(1).expect("SO_RCVBUF");
    peer.connect(&addr.into()).expect("connect");
    let conn = accepted(&listener, false);
    SockRef::from(conn.stream())
        .set_send_buffer_size(send_buffer)
        .expect("SO_SNDBUF");
    (peer.into(), conn)
}

/// Blocks until the kernel reports `interest` on the connection's socket, as the loop
/// waits before it advances a held connection.
fn wait_for(conn: &mut Connection, interest: Interest) {
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(conn.stream_mut(), Token(0), interest)
        .expect("register");
    let mut events = Events::with_capacity(4);
    poll.poll(&mut events, Some(Duration::from_secs(30)))
        .expect("poll");
    assert!(!events.is_empty(), "no {interest:?} event within 30 s");
    poll.registry()
        .deregister(conn.stream_mut())
        .expect("deregister");
}

/// A connection brought to `at`, its peer, and the greeting it is sent.
fn start(at: At) -> (std::net::TcpStream, Connection, Vec<u8>) {
    let short = GREETING.to_vec();
    match at {
        At::Header => {
            let (peer, conn) = connected(true);
            (peer, conn, short)
        }
        At::Delaying { pregreet } => {
            let (peer, mut conn) = connected(false);
            assert_eq!(conn.delay(pregreet), Step::Wait);
            (peer, conn, short)
        }
        At::Writing => {
            let (peer, conn) = connected(false);
            (peer, conn, short)
        }
        At::Blocked => {
            let (peer, mut conn) = connected_slow(4096);
            let long = vec![b'x'; 1 << 20];
            assert_eq!(conn.advance(&long), Step::Wait);
            let sent = conn.sent(&long);
            assert!(
                matches!(conn.phase(), Phase::Writing { .. }) && 0 < sent && sent < long.len(),
                "{:?} after {sent} bytes",
                conn.phase()
            );
            (peer, conn, long)
        }
        At::Flushing => {
            // Fits the send buffer whole, but not the peer's window.
            let (peer, mut conn) = connected_slow(256 * 1024);
            let long = vec![b'x'; 32 * 1024];
            assert_eq!(conn.advance(&long), Step::Wait);
            assert_eq!(conn.phase(), Phase::Flushing);
            (peer, conn, long)
        }
        At::Lingering => {
            let (mut peer, mut conn) = connected(false);
            peer.write_all(b"hi").expect("send");
            wait_for(&mut conn, Interest::READABLE);
            assert_eq!(conn.advance(GREETING), Step::Wait);
            assert_eq!(conn.phase(), Phase::Lingering);
            (peer, conn, short)
        }
    }
}

/// Makes `event` happen and waits until the connection's socket shows it; then
/// advances the connection (or runs out its deadline) and returns the step.
fn apply(event: Event, peer: std::net::TcpStream, conn: &mut Connection, greeting: &[u8]) -> Step {
    let mut peer = peer;
    match event {
        Event::Wakeup | Event::Deadline => {}
        Event::Input(bytes) => {
            peer.write_all(bytes).expect("send");
            wait_for(conn, Interest::READABLE);
        }
        Event::Eof => {
            peer.shutdown(Shutdown::Write).expect("shutdown");
            wait_for(conn, Interest::READABLE);
        }
        Event::Reset => {
            SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            drop(peer);
            wait_for(conn, Interest::READABLE);
            return conn.advance(greeting);
        }
        Event::ReadAll => {
            // Returns at our FIN, so everything was sent.
            let mut received = Vec::new();
            peer.read_to_end(&mut received).expect("read");
            assert_eq!(received, greeting);
        }
    }
    let step = match event {
        Event::Deadline => conn.on_deadline(greeting),
        _ => conn.advance(greeting),
    };
    drop(peer);
    step
}

/// The phase's name, without the fields that depend on buffer sizes.
fn name(phase: Phase) -> &'static str {
    match phase {
        Phase::Header => "Header",
        Phase::Delaying { .. } => "Delaying",
        Phase::Writing { .. } => "Writing",
        Phase::Flushing => "Flushing",
        Phase::Lingering => "Lingering",
        Phase::Trapped { .. } => "Trapped",
    }
}

#[test]
fn each_phase_against_each_event_takes_its_step() {
    use CloseReason::*;
    use Event::*;
    let named: SocketAddr = "192.0.2.7:40000".parse().expect("address");
    let delaying = At::Delaying {
        pregreet: crate::admission::Pregreet::Greet,
    };
    let dropping = At::Delaying {
        pregreet: crate::admission::Pregreet::Drop,
    };
    #[rustfmt::skip]
    let table = [
        (At::Header, Wakeup, Step::Wait, "Header"),
        (At::Header, Input(PROXY_HEADER), Step::Named(named), "Writing"),
        (At::Header, Input(b"PROXY TCP4 192.0.2"), Step::Wait, "Header"),
        (At::Header, Input(b"GET / HTTP/1.0\r\n\r\n"), Step::Close(ProxyHeader), "Header"),
        (At::Header, Eof, Step::Close(ProxyHeader), "Header"),
        (At::Header, Reset, Step::Close(PeerReset), "Header"),
        (At::Header, Deadline, Step::Close(ProxyHeader), "Header"),

        (delaying, Wakeup, Step::Wait, "Delaying"),
        (delaying, Input(b"EHLO"), Step::Wait, "Delaying"),
        (dropping, Input(b"EHLO"), Step::Close(Pregreet), "Delaying"),
        // A peer that only shut its side may still read: greeted when its delay ends.
        (delaying, Eof, Step::Wait, "Delaying"),
        (delaying, Reset, Step::Close(PeerReset), "Delaying"),
        (delaying, Deadline, Step::Close(Greeted), "Writing"),

        // The fast path: written, FIN, nothing left either way.
        (At::Writing, Wakeup, Step::Close(Greeted), "Writing"),
        (At::Writing, Input(b"hi"), Step::Wait, "Lingering"),
        (At::Writing, Eof, Step::Close(Greeted), "Writing"),
        (At::Writing, Reset, Step::Close(PeerReset), "Writing"),
        (At::Writing, Deadline, Step::Close(WriteTimeout), "Writing"),

        (At::Blocked, Wakeup, Step::Wait, "Writing"),
        // A writer does not read: input waits for later.
        (At::Blocked, Input(b"hi"), Step::Wait, "Writing"),
        (At::Blocked, Reset, Step::Close(PeerReset), "Writing"),
        (At::Blocked, Deadline, Step::Close(WriteTimeout), "Writing"),

        (At::Flushing, Wakeup, Step::Wait, "Flushing"),
        (At::Flushing, Input(b"hi"), Step::Wait, "Flushing"),
        (At::Flushing, ReadAll, Step::Close(Greeted), "Flushing"),
        (At::Flushing, Eof, Step::Close(PeerEof), "Flushing"),
        (At::Flushing, Reset, Step::Close(PeerReset), "Flushing"),
        (At::Flushing, Deadline, Step::Close(WriteTimeout), "Flushing"),

        (At::Lingering, Wakeup, Step::Wait, "Lingering"),
        (At::Lingering, Input(b"more"), Step::Wait, "Lingering"),
        (At::Lingering, Eof, Step::Close(PeerEof), "Lingering"),
        // Everything was sent: a reset costs the peer nothing of ours.
        (At::Lingering, Reset, Step::Close(PeerEof), "Lingering"),
        (At::Lingering, Deadline, Step::Close(LingerTimeout), "Lingering"),
    ];
    for (at, event, expected, after) in table {
        let (peer, mut conn, greeting) = start(at);
        let step = apply(event, peer, &mut conn, &greeting);
        assert_eq!(
            (step, name(conn.phase())),
            (expected, after),
            "at {at:?}, on {event:?}"
        );
    }
}

#[test]
fn a_header_in_pieces_is_kept_until_it_is_whole() {
    let (mut peer, mut conn) = connected(true);
    let (first, rest) = PROXY_HEADER.split_at(20);
    peer.write_all(first).expect("send");
    wait_for(&mut conn, Interest::READABLE);
    assert_eq!(conn.advance(GREETING), Step::Wait);
    assert_eq!(conn.phase(), Phase::Header);

    peer.write_all(rest).expect("send");
    wait_for(&mut conn, Interest::READABLE);
    let client = "192.0.2.7:40000".parse().expect("address");
    assert_eq!(conn.advance(GREETING), Step::Named(client));
    assert_eq!(
        conn.phase(),
        Phase::Writing {
            sent: 0,
            header_len: PROXY_HEADER.len() as u16
        }
    );
    assert_eq!(conn.input(), (0, FirstInput::None));
}

#[test]
fn input_behind_the_header_makes_a_delayed_client_a_pregreeter() {
    for (pregreet, expected) in [
        (Pregreet::Greet, Step::Wait),
        (Pregreet::Drop, Step::Close(CloseReason::Pregreet)),
        (Pregreet::Tarpit, Step::Trap),
    ] {
        let (mut peer, mut conn) = connected(true);
        peer.write_all(&[PROXY_HEADER, b"EHLO x\r\n"].concat())
            .expect("send");
        wait_for(&mut conn, Interest::READABLE);
        assert!(matches!(conn.advance(GREETING), Step::Named(_)));
        assert_eq!(conn.delay(pregreet), expected, "{pregreet:?}");
        assert!(conn.pregreeted());
        assert_eq!(conn.input().0, 8);
    }
}

#[test]
fn a_blocked_greeting_resumes_with_room_and_ends_greeted() {
    let (mut peer, mut conn, greeting) = start(At::Blocked);
    let expected = greeting.clone();
    // The peer stays open (it is handed back): its FIN would end the flush first.
    let reader = thread::spawn(move || {
        let mut received = Vec::new();
        peer.read_to_end(&mut received).map(|_| (received, peer))
    });
    // Writable with room, as often as it takes; then flushing until all is sent.
    let step = loop {
        let interest = conn.phase().interest();
        wait_for(&mut conn, interest);
        match conn.advance(&greeting) {
            Step::Wait => continue,
            step => break step,
        }
    };
    assert_eq!(step, Step::Close(CloseReason::Greeted));
    assert_eq!(conn.sent(&greeting), greeting.len());
    let (received, _peer) = reader.join().expect("reader").expect("read");
    assert!(
        received == expected,
        "the peer got {} bytes",
        received.len()
    );
}

#[test]
fn a_flushing_connection_whose_peer_spoke_lingers_once_all_is_sent() {
    let (mut peer, mut conn, greeting) = start(At::Flushing);
    peer.write_all(b"hi").expect("send");
    wait_for(&mut conn, Interest::READABLE);
    assert_eq!(conn.advance(&greeting), Step::Wait);
    assert_eq!(conn.phase(), Phase::Flushing);

    let mut received = Vec::new();
    peer.read_to_end(&mut received).expect("read");
    assert_eq!(conn.advance(&greeting), Step::Wait);
    assert_eq!(conn.phase(), Phase::Lingering);
}

#[test]
fn a_flush_that_finished_before_its_deadline_is_greeted_not_timed_out() {
    let (mut peer, mut conn, greeting) = start(At::Flushing);
    let mut received = Vec::new();
    peer.read_to_end(&mut received).expect("read");
    assert_eq!(
        conn.on_deadline(&greeting),
        Step::Close(CloseReason::Greeted)
    );
}

#[test]
fn a_lingering_peer_that_floods_spends_the_budget() {
    let (mut peer, mut conn, greeting) = start(At::Lingering);
    let flood = thread::spawn(move || {
        // Fails once the connection is closed: what matters is what it read before.
        let _ = peer.write_all(&vec![0u8; 2 * LINGER_DISCARD_LIMIT]);
        // Handed back, not closed: closing a socket with unread input resets it.
        peer
    });
    let step = loop {
        wait_for(&mut conn, Interest::READABLE);
        match conn.advance(&greeting) {
            Step::Wait => continue,
            step => break step,
        }
    };
    assert_eq!(step, Step::Close(CloseReason::LingerBudget));
    drop(conn);
    flood.join().expect("flood");
}
