//! Kernel memory is bounded by what is held: with `--send-buffer`, peers that never
//! read a huge greeting cost at most their socket buffers. This reads the machine's
//! TCP memory (`/proc/net/sockstat`), so it is the only test in its binary: cargo
//! runs test binaries one at a time.

mod util;

use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Socket, Type};
use util::*;

const PAGE: u64 = 4096;

/// Pages of memory all TCP sockets of this network namespace hold.
fn tcp_memory_pages() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let tcp = sockstat
        .lines()
        .find(|line| line.starts_with("TCP:"))
        .unwrap();
    let mut fields = tcp.split_whitespace();
    fields.find(|&field| field == "mem").unwrap();
    fields.next().unwrap().parse().unwrap()
}

/// A peer with a small receive buffer that never reads; returns it and that buffer
/// as the kernel accounts it.
fn non_reading_peer(addr: SocketAddr) -> (TcpStream, u64) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let rcvbuf = socket.recv_buffer_size().unwrap() as u64;
    (socket.into(), rcvbuf)
}

#[test]
fn send_buffer_bounds_the_kernel_memory_of_peers_that_never_read() {
    const PEERS: usize = 300;
    const SEND_BUFFER: usize = 64 * 1024;
    let greeting = large_greeting(16 * 1024 * 1024);
    let mut config = config_with(&greeting);
    config.send_buffer = Some(SEND_BUFFER);
    let server = start_server(config);

    let before = tcp_memory_pages();
    let peers: Vec<(TcpStream, u64)> = (0..PEERS).map(|_| non_reading_peer(server.addr)).collect();
    wait_until("every peer held", || server.snapshot().held == PEERS);
    // The server writes until each send buffer is full; sample until it stops.
    let mut most = 0;
    let mut last_sent = 0;
    let mut unchanged = 0;
    wait_until("the server's writes to stall", || {
        most = most.max(tcp_memory_pages());
        let sent = server.snapshot().totals.bytes_sent;
        unchanged = if sent == last_sent { unchanged + 1 } else { 0 };
        last_sent = sent;
        unchanged >= 25
    });
    let grown = most.saturating_sub(before) * PAGE;

    // Linux doubles SO_SNDBUF for its bookkeeping; each side may overshoot its buffer
    // by about one segment's worth, so allow half as much again.
    let per_peer: u64 = peers
        .iter()
        .map(|(_, rcvbuf)| 2 * SEND_BUFFER as u64 + rcvbuf)
        .sum();
    let allowed = per_peer * 3 / 2;
    assert!(
        grown <= allowed,
        "TCP memory grew by {} KiB for {PEERS} held peers; the buffers allow {} KiB",
        grown / 1024,
        allowed / 1024
    );
    assert!(last_sent > 0);
    drop(peers);
}
