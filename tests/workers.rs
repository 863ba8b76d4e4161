//! `--workers 2`: every behaviour of the single loop holds per worker, and the totals
//! are summed. These drive the real binary.

mod util;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::thread;
use std::time::{Duration, Instant};

use greeter_load::{self as load, LoadOptions};
use util::*;

#[test]
fn two_workers_greet_exactly_and_sum_their_totals() {
    let mut server = spawn_server(&["--workers", "2"]);
    server.wait_for_log("workers=2");
    let options = LoadOptions {
        connections: 32,
        threads: 2,
        ..load_options(server.addr, 3_000)
    };
    let report = load::run(&options, &AtomicU64::new(0)).unwrap();
    assert_eq!((report.completed, report.errors.total()), (3_000, 0));

    server.signal("USR1");
    server.wait_for_log("totals in_flight=0 accepted=3000 greeted=3000");
    server.signal("TERM");
    server.assert_exits_cleanly_logging(
        "totals in_flight=0 accepted=3000 greeted=3000 closed_early=0",
        STEP_TIMEOUT,
    );
}

/// An arrival wakes one waiting worker (`EPOLLEXCLUSIVE`): a worker at its
/// `--max-connections` must step out of the listener's wake-ups, or it would take them
/// and leave new connections in the backlog while the other worker has room.
#[test]
fn a_full_worker_leaves_new_connections_to_the_other() {
    let greeting = large_greeting(8 * 1024 * 1024);
    let server = ServerCommand::new(&[
        "--workers",
        "2",
        "--max-connections",
        "1",
        "--write-timeout",
        "60s",
    ])
    .greeting("workers-full", &greeting)
    .spawn();
    // Never reads: it fills one worker for the write timeout.
    let _stalled = connect(server.addr);
    server.wait_for_in_flight(1);
    for _ in 0..3 {
        let mut peer = connect(server.addr);
        let received = read_to_eof(&mut peer).expect("the other worker greets it");
        assert_same_bytes(&received, &greeting);
    }
}

/// The first worker takes wake-ups alone while it keeps up; once it is full the
/// helpers (up to one per core) and the reserves (the rest) step in, and a reserve
/// still greets when every worker up to one per core is full.
#[test]
fn standby_workers_step_in_while_the_accepting_ones_are_full() {
    let cores = thread::available_parallelism().map_or(1, |cores| cores.get());
    let workers = (cores + 1).to_string();
    let greeting = large_greeting(8 * 1024 * 1024);
    let server = ServerCommand::new(&[
        "--workers",
        &workers,
        "--max-connections",
        "1",
        "--write-timeout",
        "60s",
    ])
    .greeting("workers-standby", &greeting)
    .spawn();
    // One peer that never reads fills a worker, in turn: the first, then the helpers.
    let _stalled: Vec<_> = (1..=cores)
        .map(|held| {
            let peer = connect(server.addr);
            server.wait_for_in_flight(held);
            peer
        })
        .collect();
    let mut peer = connect(server.addr);
    let received = read_to_eof(&mut peer).expect("the standby worker greets it");
    assert_same_bytes(&received, &greeting);
}

/// Whether every thread of process `pid` is stopped (state `T` in its stat line).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            // The state follows the command name's closing parenthesis.
            .is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
    })
}

/// An accepting worker whose round finds a deep backlog (a quarter of `--backlog`)
/// counts as behind, so that the helpers step in; a second later, with the backlog
/// shallow again, it counts as caught up.
#[test]
fn a_worker_that_finds_a_deep_backlog_counts_as_behind_until_it_catches_up() {
    let server = ServerCommand::new(&["--workers", "2", "--backlog", "64"])
        .env("RUST_LOG", "greeter::server=debug")
        .spawn();
    // Stopped, the server cannot accept: the kernel completes the handshakes and
    // queues them, and the first rounds after SIGCONT find them all (16 make a worker
    // behind; of 40, one of two workers takes at least 20). A signal stops the threads
    // a moment after it is sent.
    server.signal("STOP");
    wait_until("every thread of the server stopped", || {
        all_threads_stopped(server.pid())
    });
    let peers: Vec<_> = (0..40).map(|_| connect(server.addr)).collect();
    // A client's connect returns before the server's side has taken its last ACK:
    // wait until all 40 are in the accept queue.
    let (SocketAddr::V4(listener), unconnected) = (server.addr, "0.0.0.0:0".parse().unwrap())
    else {
        panic!("the server listens on IPv4 loopback");
    };
    wait_until("40 connections in the accept queue", || {
        tcp_queues(listener, unconnected).is_some_and(|(_, queued)| queued == 40)
    });
    server.signal("CONT");
    let log = server.wait_for_log(" is behind (");
    let behind = if log.contains("worker 0 is behind (") {
        0
    } else {
        1
    };
    assert_each_peer_receives(peers, DEFAULT_GREETING);
    // Caught up once a round a second later finds a shallow backlog: one greeted
    // connection per look until the line is there.
    wait_until("the worker caught up", || {
        let mut peer = connect(server.addr);
        assert_same_bytes(&read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
        server
            .stderr()
            .contains(&format!("worker {behind} caught up"))
    });
}

/// A first worker that cannot run (stopped by a debugger here; a page fault on a
/// swapped-out greeting, or a very long round, in life) stalls no new connection
/// while another worker has room: the helper covers it.
#[test]
fn a_stopped_first_worker_stalls_no_connection() {
    let server = spawn_server(&["--workers", "2"]);
    let pid = server.pid();
    let first = thread_named(pid, "greeter-w0");
    let stopped = StoppedThread::stop(first);
    for _ in 0..16 {
        let mut peer = connect(server.addr);
        peer.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        assert_eq!(
            read_to_eof(&mut peer).expect("greeted while worker 0 is stopped"),
            DEFAULT_GREETING
        );
    }
    assert_eq!(
        thread_state(pid, first),
        Some('t'),
        "worker 0 is still stopped"
    );
    drop(stopped);
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn two_workers_give_peers_that_send_first_the_whole_greeting() {
    let server = spawn_server(&["--workers", "2"]);
    for _ in 0..200 {
        let mut peer = connect(server.addr);
        send_quietly(&mut peer, b"\xff\xfd\x01hello?\r\n");
        assert_eq!(
            read_to_eof(&mut peer).expect("clean EOF, not a reset"),
            DEFAULT_GREETING
        );
    }
}

#[test]
fn two_workers_drain_in_flight_greetings_when_asked_to_stop() {
    let greeting = large_greeting(16 * 1024 * 1024);
    let path = temp_file("workers-drain", &greeting);
    let server = supervise(&["--workers", "2", "--message-file", path.arg()]);
    let peers: Vec<_> = (0..6).map(|_| connect(server.addr())).collect();
    server.wait_for_in_flight(6);
    server.requests.send(greeter::supervisor::Request::Drain);
    wait_until("the drain to begin", || server.snapshot().draining);
    assert_each_peer_receives(peers, &greeting);
    let totals = server.stop();
    assert_eq!(
        (totals.accepted, totals.greeted(), totals.closed_early()),
        (6, 6, 0),
        "{totals}"
    );
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let mut server = ServerCommand::new(&["--workers", "2"])
        .greeting("workers-stop-now", &greeting)
        .spawn();
    let _stalled = connect(server.addr);
    server.wait_for_in_flight(1);
    let started = Instant::now();
    server.signal("TERM");
    server.wait_for_log("shutdown: stopped accepting");
    server.signal("TERM");
    // The drain timeout is 10 s; the second signal must not wait for it.
    server.assert_exits_cleanly_logging(
        "accepted=1 greeted=0 closed_early=1 reset=0 timeout=0 drain=1",
        Duration::from_secs(5),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn max_connections_applies_per_worker() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let server = ServerCommand::new(&["--workers", "2", "--max-connections", "2"])
        .greeting("workers-cap", &greeting)
        .spawn();
    let baseline_fds = server.open_fds();
    let peers: Vec<_> = (0..12).map(|_| connect(server.addr)).collect();
    // One accept queue: a worker at its cap leaves the rest to the other.
    server.wait_for_in_flight(4);
    let held = server.open_fds() - baseline_fds;
    assert_eq!(held, 4, "held by 2 workers of 2 connections each");
    assert_each_peer_receives(peers, &greeting);
}

#[test]
fn two_workers_survive_fd_exhaustion_and_serve_the_queue() {
    let greeting = large_greeting(4 * 1024 * 1024);
    let server = ServerCommand::new(&["--workers", "2"])
        .greeting("workers-fd", &greeting)
        .fd_limit(24)
        .spawn();
    let peers: Vec<_> = (0..24).map(|_| connect(server.addr)).collect();
    server.wait_for_log("accept paused");
    server.assert_near_idle_for_a_second();
    assert_each_peer_receives(peers, &greeting);
    let log = server.wait_for_log("accept resumed");
    assert!(
        log.matches("accept paused").count() <= 2,
        "one warning per worker:\n{log}"
    );
}

#[test]
fn workers_zero_means_one_per_core() {
    let server = spawn_server(&["--workers", "0"]);
    let cores = thread::available_parallelism().unwrap().get();
    server.wait_for_log(&format!("workers={cores} "));
    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

/// The supervisor, in-process: driven by requests rather than signals, observed
/// through the view it hands out.
#[test]
fn a_second_drain_request_closes_what_is_in_flight_at_once() {
    use greeter::supervisor::Request;

    let greeting = large_greeting(16 * 1024 * 1024);
    let path = temp_file("workers-second-drain", &greeting);
    // Only the second request can end this drain in time.
    let server = supervise(&[
        "--workers",
        "2",
        "--drain-timeout",
        "1h",
        "--message-file",
        path.arg(),
    ]);
    // A peer that never reads keeps its greeting in flight.
    let _stalled = connect(server.addr());
    server.wait_for_in_flight(1);
    server.requests.send(Request::Drain);
    wait_until("the drain to begin", || server.snapshot().draining);
    assert_eq!(server.snapshot().held, 1, "the first request only drains");
    let totals = server.stop();
    assert_eq!(
        totals.closes(greeter::CloseReason::DrainTimeout),
        1,
        "{totals}"
    );
    assert_eq!(totals.accepted, 1, "{totals}");
}

/// Work that lives in the connections spreads: with the first worker busy writing a
/// large greeting to fast readers (rounds of many milliseconds, few accepts), the
/// helper takes new connections too.
#[test]
fn work_in_held_connections_spreads_to_the_helper() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let greeting = large_greeting(8 * 1024 * 1024);
    let path = temp_file("workers-spread", &greeting);
    let config = temp_file(
        "workers-spread.toml",
        format!(
            "workers = 2\n[[listener]]\nport = 0\nmessage-file = {:?}\n\n[[listener]]\nport = 0\n",
            path.arg()
        )
        .as_bytes(),
    );
    let server = supervise_exactly(&["--config", config.arg()]);
    let (large, small) = (server.addrs[0], server.addrs[1]);
    let reading = AtomicBool::new(true);
    let each = thread::scope(|scope| {
        let readers: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    while reading.load(Ordering::Relaxed) {
                        let mut peer = connect(large);
                        assert_eq!(read_to_eof(&mut peer).unwrap().len(), greeting.len());
                    }
                })
            })
            .collect();
        // Until the helper has taken a share of the small greetings' connections (or
        // the step's time runs out, and the assertion below says what it took).
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut small_clients = 0;
        while Instant::now() < deadline {
            let mut peer = connect(small);
            assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
            small_clients += 1;
            let each = server.view.each();
            if small_clients >= 50 && each[1].totals.accepted >= 20 {
                break;
            }
        }
        reading.store(false, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        server.view.each()
    });
    let accepted: Vec<u64> = each
        .iter()
        .map(|snapshot| snapshot.totals.accepted)
        .collect();
    assert!(accepted[1] >= 20, "accepted per worker: {accepted:?}");
}
