//! Unit tests of the loop: rounds, the watchdog's ping, deferred accepts, the accept
//! budget among listeners, and bounded deadline queues.

use super::*;
use std::io::Read;

/// The watchdog's ping is answered only by a loop that runs a round: a stuck loop
/// stops the pings (the supervisor sends WATCHDOG=1 only for answered ones).
#[test]
fn a_ping_is_answered_by_the_next_round_only() {
    let mut server = Server::bind(Config::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let handle = server.handle();
    handle.ping(1).unwrap();
    assert!(!handle.answered(1), "no round has run since the ping");
    let mut events = Events::with_capacity(8);
    // The ping woke the loop: this round returns at once and answers it.
    server
        .turn(&mut events, Some(Duration::from_secs(30)))
        .unwrap();
    assert!(handle.answered(1));
    handle.ping(2).unwrap();
    assert!(!handle.answered(2));
}

/// A PROXY listener defers accepts until data has come (`TCP_DEFER_ACCEPT`), so
/// that a header sent with the connection is read at accept; a plain one does not
/// (its clients wait for the server to speak).
#[test]
fn only_proxy_listeners_defer_accepts() {
    let deferred = |config: Config| {
        let server = Server::bind(config).unwrap();
        let socket = &server.listeners[0].socket;
        let mut seconds: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the listener's descriptor is live for the call; `seconds` and
        // `len` describe a writable c_int.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&mut seconds as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        seconds
    };
    let plain = Config::new("127.0.0.1:0".parse().unwrap());
    assert_eq!(deferred(plain.clone()), 0);
    assert!(deferred(plain.with_proxy_protocol()) >= 1);
}

/// A listener with a deep backlog among many idle ones gets the whole budget of the
/// rounds that follow the first, not an equal share with listeners that have
/// nothing waiting (whose accepts would only fail with EAGAIN).
#[test]
fn idle_listeners_leave_the_accept_budget_to_the_busy_one() {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    let one = config.listeners[0].clone();
    config.listeners = vec![one; 200];
    let mut server = Server::bind(config).unwrap();
    let busy = server.local_addrs()[0];
    // Queued in the backlog before the first round: more than two budgets.
    let clients: Vec<std::net::TcpStream> = (0..3 * ACCEPT_BUDGET)
        .map(|_| std::net::TcpStream::connect(busy).unwrap())
        .collect();
    let mut events = Events::with_capacity(1024);
    for _ in 0..2 {
        server.turn(&mut events, Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(server.totals().accepted, 2 * ACCEPT_BUDGET as u64);
    drop(clients);
}

/// Connections that finish long before their deadlines leave entries behind; the
/// queues must stay bounded by what is held, not grow with rate x timeout.
#[test]
fn deadline_queues_stay_bounded_by_held_connections() {
    let mut config =
        Config::new("127.0.0.1:0".parse().unwrap()).with_greeting(vec![7u8; 4 * 1024 * 1024]);
    config.write_timeout = Duration::from_secs(3600);
    config.linger_timeout = Duration::from_secs(3600);
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let clients = std::thread::spawn(move || {
        for _ in 0..300 {
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            // Sending first makes the connection linger after its greeting too.
            std::io::Write::write_all(&mut peer, b"hi").unwrap();
            let mut sink = Vec::new();
            peer.read_to_end(&mut sink).unwrap();
            assert_eq!(sink.len(), 4 * 1024 * 1024);
        }
    });
    let mut events = Events::with_capacity(64);
    let mut most_queued = 0;
    while !clients.is_finished() {
        server
            .turn(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        // Each queue stays below 2 x held + 64 entries.
        let queued = server.held.deadlines_queued();
        let bound = 2 * (2 * server.held.len() + 64);
        assert!(
            queued <= bound,
            "{queued} deadlines queued for {} held",
            server.held.len()
        );
        most_queued = most_queued.max(queued);
    }
    clients.join().unwrap();
    // Every connection was held after its greeting, so each pushed a deadline.
    assert_eq!(server.totals().lingered, 300, "{}", server.totals());
    assert!(most_queued > 0);
}
