//! Benchmarks of the accept/send path, against an in-process server on loopback.
//!
//! - `full_cycle/<size>`: one client connects and reads the greeting to EOF, for
//!   greetings of 38 B, 4 KiB and 256 KiB (throughput in connections/s). This includes
//!   the client's kernel work, which on loopback is most of the cost.
//! - `accept_send_path/drain_256_queued`: 256 clients are already queued in the
//!   backlog; only the server's rounds that accept, greet and close them are timed.
//!
//! Compare runs with `cargo bench -- --save-baseline before` and, after a change,
//! `cargo bench -- --baseline before`.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use greeter::{Config, Server, ServerHandle, Totals};
use mio::Events;

fn spawn_server(
    greeting: Vec<u8>,
) -> (
    SocketAddr,
    ServerHandle,
    JoinHandle<std::io::Result<Totals>>,
) {
    let config = Config::new("127.0.0.1:0".parse().unwrap()).with_greeting(greeting);
    let server = Server::bind(config).expect("bind the bench server");
    let addr = server.local_addr();
    let shutdown = server.handle();
    (addr, shutdown, std::thread::spawn(move || server.run()))
}

fn full_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_cycle");
    group.throughput(Throughput::Elements(1));
    for (label, size) in [("38B", 38), ("4KiB", 4096), ("256KiB", 256 * 1024)] {
        let (addr, shutdown, running) = spawn_server(vec![b'g'; size]);
        let mut received = Vec::with_capacity(size);
        group.bench_with_input(BenchmarkId::from_parameter(label), &size, |b, &size| {
            b.iter(|| {
                received.clear();
                let mut client = TcpStream::connect(addr).expect("connect");
                client.read_to_end(&mut received).expect("read to EOF");
                assert_eq!(received.len(), size);
            })
        });
        shutdown.shutdown().expect("stop the bench server");
        running.join().expect("server thread").expect("server loop");
    }
    group.finish();
}

fn accept_send_path(c: &mut Criterion) {
    const QUEUED: usize = 256;
    let listener = greeter::listener::listen("127.0.0.1:0".parse().unwrap(), 4096, None)
        .expect("bind the bench listener");
    let addr = listener.local_addr().unwrap();
    let mut server = Server::from_listener(listener, Config::new(addr)).expect("bench server");
    let mut events = Events::with_capacity(1024);

    let mut group = c.benchmark_group("accept_send_path");
    group.throughput(Throughput::Elements(QUEUED as u64));
    group.bench_function("drain_256_queued", |b| {
        b.iter_batched(
            // Not timed: the kernel completes these handshakes into the backlog.
            || {
                (0..QUEUED)
                    .map(|_| TcpStream::connect(addr).expect("connect"))
                    .collect::<Vec<_>>()
            },
            // Timed: the server's rounds until all of them are greeted and closed.
            |clients| {
                let target = server.totals().greeted() + QUEUED as u64;
                while server.totals().greeted() < target {
                    server
                        .turn(&mut events, Some(Duration::from_millis(100)))
                        .expect("server round");
                }
                clients // dropped after timing
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = full_cycle, accept_send_path
}
criterion_main!(benches);
