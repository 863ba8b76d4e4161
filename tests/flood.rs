//! A flood of connections cannot starve the loop: each round accepts a bounded number
//! of connections and comes back to the backlog without waiting for a new event, so
//! held connections, deadlines and shutdown keep their turn.

mod util;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use greeter::server::ACCEPT_BUDGET;
use greeter::Server;
use mio::Events;
use util::*;

#[test]
fn one_round_accepts_at_most_its_budget_and_the_next_comes_back_without_an_event() {
    let mut server = Server::bind(default_config()).unwrap();
    let queued = 2 * ACCEPT_BUDGET + 10;
    // Every one of these completes its handshake in the backlog before the loop runs.
    let peers: Vec<TcpStream> = (0..queued).map(|_| connect(server.local_addr())).collect();

    let mut events = Events::with_capacity(1024);
    server.turn(&mut events, Some(STEP_TIMEOUT)).unwrap();
    assert_eq!(server.totals().accepted, ACCEPT_BUDGET as u64);
    // No new connection arrives, so no new edge: the loop must come back by itself.
    server.turn(&mut events, Some(STEP_TIMEOUT)).unwrap();
    assert_eq!(server.totals().accepted, 2 * ACCEPT_BUDGET as u64);
    server.turn(&mut events, Some(STEP_TIMEOUT)).unwrap();
    assert_eq!(server.totals().accepted, queued as u64);
    drop(peers);
}

#[test]
fn slow_readers_progress_and_shutdown_finishes_during_a_flood() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let mut config = config_with(&greeting);
    config.drain_timeout = Duration::from_secs(2);
    config.backlog = 4096;
    let server = start_server(config);
    let addr = server.addr;

    // Flooders connect and hang up as fast as they can, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(30);
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > until {
                        break;
                    }
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
                }
            })
        })
        .collect();
    wait_until("the flood to reach the server", || {
        server.snapshot().totals.accepted > 1_000
    });

    // Slow readers, while the flood goes on: each takes its greeting in small reads.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut peer = connect(addr);
            thread::spawn(move || {
                let mut received = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = peer.read(&mut chunk).expect("no reset mid-greeting");
                    if n == 0 {
                        return received;
                    }
                    received.extend_from_slice(&chunk[..n]);
                }
            })
        })
        .collect();
    for reader in readers {
        assert_same_bytes(&reader.join().unwrap(), &greeting);
    }
    assert!(
        flooders.iter().any(|flooder| !flooder.is_finished()),
        "the flood ended before the readers did: nothing was tested"
    );

    // Shut down in the middle of the flood: the drain must end on time.
    let asked = Instant::now();
    let totals = server.stop();
    let took = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(3),
        "shutdown took {took:?} with a drain timeout of 2s"
    );
    assert!(totals.greeted() >= 3, "{totals}");
}

#[test]
fn a_flood_on_one_listener_does_not_starve_another() {
    let mut config = default_config();
    config.listeners[0].addrs = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let mut server = Server::bind(config).unwrap();
    let (flooded, quiet) = (server.local_addrs()[0], server.local_addrs()[1]);
    let flood: Vec<TcpStream> = (0..2 * ACCEPT_BUDGET).map(|_| connect(flooded)).collect();
    let few: Vec<TcpStream> = (0..5).map(|_| connect(quiet)).collect();

    let mut events = Events::with_capacity(1024);
    server.turn(&mut events, Some(STEP_TIMEOUT)).unwrap();
    // One round: each ready listener gets an equal share of the budget, so the quiet
    // listener's five are all in and the flood got its half, no more.
    assert_eq!(server.totals().accepted, (ACCEPT_BUDGET / 2 + 5) as u64);
    assert_each_peer_receives(few, DEFAULT_GREETING);
    drop(flood);
}
