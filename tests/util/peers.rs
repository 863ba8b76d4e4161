//! Clients that connect, read, stall or send on purpose, and the checks of what they
//! received; greetings that make a lost or reordered byte visible.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use greeter::greeting::Greeting;

use super::{DEFAULT_GREETING, STEP_TIMEOUT};

/// A greeting of `len` bytes that never repeats a short pattern, so that a lost,
/// duplicated or reordered chunk cannot go unnoticed.
pub fn large_greeting(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// Connects with bounded waits for every later read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// Reads until EOF. Any error (a reset included) fails the caller's assertion.
pub fn read_to_eof(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    Ok(received)
}

/// Asserts that `received` is exactly `expected`, with a short message for big buffers.
#[track_caller]
pub fn assert_same_bytes(received: &[u8], expected: &[u8]) {
    if received != expected {
        let first_difference = received
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(expected.len()));
        panic!(
            "received {} bytes, expected {}; first difference at byte {first_difference}",
            received.len(),
            expected.len()
        );
    }
}

/// Lets every peer read to EOF at once (each on its own thread) and asserts that each
/// received exactly `expected` and a clean EOF.
#[track_caller]
pub fn assert_each_peer_receives(peers: Vec<TcpStream>, expected: &[u8]) {
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut peer| thread::spawn(move || read_to_eof(&mut peer)))
        .collect();
    for reader in readers {
        let received = reader
            .join()
            .unwrap()
            .expect("the whole greeting and a clean EOF");
        assert_same_bytes(&received, expected);
    }
}

/// Sends `bytes` and ignores a failure: the server may already have closed.
pub fn send_quietly(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Connects to `addr` from `source` (another loopback address such as 127.0.0.2), with
/// bounded waits like [`connect`].
pub fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let source: SocketAddr = format!("{source}:0")
        .parse()
        .or_else(|_| format!("[{source}]:0").parse())
        .expect("a source address");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(source),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    stream
}

/// A bounded load run of `total` connections, 16 at once, expecting the default
/// greeting (change fields for anything else).
pub fn load_options(addr: SocketAddr, total: u64) -> greeter_load::LoadOptions {
    greeter_load::LoadOptions {
        addr,
        connections: 16,
        total: Some(total),
        duration: Duration::from_secs(30),
        expected: Greeting::from(DEFAULT_GREETING),
        timeout: Duration::from_secs(5),
        threads: 1,
        send_proxy: None,
        distinct_sources: false,
    }
}
