//! The socket primitives every connection's life is made of, with the kernel facts
//! they rely on: writing the greeting, sending the FIN and asking the kernel
//! (`TCP_INFO`) what is still unsent and whether the peer sent anything, and reading
//! and discarding input.
//!
//! One `getsockopt(TCP_INFO)` answers both questions, so the fast path uses it in place
//! of a probing `read`: a greeting that was written in full may still sit in the
//! kernel, held back by the peer's window, and closing then would let a late peer byte
//! turn into a reset that throws that rest away.

use std::io::{self, Read, Write};
use std::mem;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};

use mio::net::TcpStream;

/// Linux's TCP states (`include/net/tcp_states.h`) in which the peer's FIN has arrived.
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// A connection's send and receive progress, as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProgress {
    /// Bytes written by us (our FIN counts as one) that the kernel has not sent yet.
    pub unsent: u32,
    /// Segments with data that the peer has sent, read or not (its bare FIN is not
    /// one).
    pub data_segments_in: u32,
    /// Bytes the peer has sent, read or not (its FIN counts as one).
    pub bytes_received: u64,
    /// Whether the peer has closed its side (its FIN arrived) or the connection is
    /// gone. The kernel reads the state before it locks the socket, so this may lag
    /// the other fields: `false` can be stale, `true` never is.
    pub peer_closed: bool,
}

impl TcpProgress {
    /// Reads the progress of a connected TCP socket.
    ///
    /// # Errors
    /// If `getsockopt` fails (not a TCP socket, or a closed descriptor).
    pub fn of(socket: &impl AsFd) -> io::Result<TcpProgress> {
        let fd = socket.as_fd().as_raw_fd();
        // SAFETY: `tcp_info` is plain old data, so all-zero bytes are a valid value.
        let mut info: libc::tcp_info = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `fd` is a live descriptor borrowed for this call; `info` and `len`
        // describe a writable buffer of exactly `len` bytes, and the kernel writes at
        // most `len` bytes (fewer on older kernels, leaving the rest zero).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let peer_closed = matches!(
            info.tcpi_state,
            TCP_CLOSE | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING
        );
        Ok(TcpProgress {
            unsent: info.tcpi_notsent_bytes,
            data_segments_in: info.tcpi_data_segs_in,
            bytes_received: info.tcpi_bytes_received,
            peer_closed,
        })
    }
}

/// Sends the FIN right behind the greeting, then asks the kernel whether anything is
/// left in either direction.
///
/// The FIN goes first because closing a socket that holds unread input sends a reset:
/// sent after the FIN, a reset can no longer turn the peer's clean EOF into an error,
/// even if the peer's bytes land between the check and the close (best effort: a peer
/// that is already gone shows in the check).
pub(crate) fn shut_down_and_check(stream: &TcpStream, header_len: u16) -> AfterGreeting {
    let _ = stream.shutdown(Shutdown::Write);
    after_greeting(TcpProgress::of(stream), header_len)
}

/// What to do with a connection once its whole greeting is written and its write
/// side shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterGreeting {
    /// Nothing of ours waits in the kernel and nothing of the peer's is unread (or
    /// the peer has closed its side): close now.
    Close,
    /// Part of the greeting is still unsent: hold the connection until it is out.
    Flush,
    /// Everything is sent but the peer sent data: linger until its EOF.
    Linger,
}

/// Decides [`AfterGreeting`] from the kernel's view of the connection.
///
/// Bytes that are sent but not yet acknowledged do not hold the connection: a close
/// then still ends in a FIN behind them, and they are lost only if they must be
/// retransmitted after a peer byte has drawn a reset (see docs/architecture.md).
/// If the kernel cannot be asked, the connection is closed as before this check.
///
/// `header_len` bytes of a PROXY header were the load balancer's, not the client's
/// input: then input is what was received beyond them (and beyond the peer's FIN).
pub(crate) fn after_greeting(progress: io::Result<TcpProgress>, header_len: u16) -> AfterGreeting {
    let Ok(progress) = progress else {
        return AfterGreeting::Close;
    };
    let sent_input = if header_len == 0 {
        progress.data_segments_in > 0
    } else {
        let not_input = u64::from(header_len) + u64::from(progress.peer_closed);
        progress.bytes_received > not_input
    };
    if sent_input {
        return if progress.unsent > 0 {
            AfterGreeting::Flush
        } else {
            AfterGreeting::Linger
        };
    }
    if progress.unsent > 0 && !progress.peer_closed {
        AfterGreeting::Flush
    } else {
        AfterGreeting::Close
    }
}

/// What a round of writing achieved.
#[derive(Debug)]
pub(crate) enum WriteProgress {
    /// Every byte of the greeting is out.
    Complete,
    /// The socket buffer is full; wait for writability.
    WouldBlock,
    /// The peer is gone or the socket failed.
    Failed(io::Error),
}

/// Writes `greeting[*sent..]` until it is all out or the socket would block, advancing
/// `*sent` by what was written.
pub(crate) fn write_greeting(
    out: &mut impl Write,
    greeting: &[u8],
    sent: &mut usize,
) -> WriteProgress {
    while *sent < greeting.len() {
        match out.write(&greeting[*sent..]) {
            // A zero-length write of a non-empty buffer means the peer cannot take more.
            Ok(0) => return WriteProgress::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return WriteProgress::WouldBlock,
            Err(err) => return WriteProgress::Failed(err),
        }
    }
    WriteProgress::Complete
}

/// What reading and discarding the peer's input found.
#[derive(Debug)]
pub(crate) enum InputState {
    /// Nothing (more) to read right now, and no EOF yet.
    Quiet,
    /// The peer closed its side (and everything it sent has been read).
    Eof,
    /// The peer sent more than the discard budget allows.
    BudgetSpent,
    /// The read failed (typically a reset).
    Failed(io::Error),
}

/// Reads and throws away input until EOF, `WouldBlock`, or `*discarded` passes `limit`;
/// `seen` is shown each chunk read (the first one classifies the peer).
pub(crate) fn discard_input(
    input: &mut impl Read,
    discarded: &mut usize,
    limit: usize,
    mut seen: impl FnMut(&[u8]),
) -> InputState {
    let mut scratch = [0u8; 4096];
    loop {
        match input.read(&mut scratch) {
            Ok(0) => return InputState::Eof,
            Ok(n) => {
                seen(&scratch[..n]);
                *discarded += n;
                if *discarded > limit {
                    return InputState::BudgetSpent;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if would_block(&err) => return InputState::Quiet,
            Err(err) => return InputState::Failed(err),
        }
    }
}

/// Whether an I/O error only means "not now" on a nonblocking socket.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// Whether a write or read error is the peer's doing (it reset or went away), as
/// opposed to a failure on the server's side.
pub(crate) fn peer_went_away(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WriteZero
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// A socket stand-in that answers each call from a script.
    struct Scripted {
        answers: VecDeque<io::Result<usize>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(answers: Vec<io::Result<usize>>) -> Self {
            Scripted {
                answers: answers.into(),
                written: Vec::new(),
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted write")?;
            let n = n.min(buf.len());
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.answers.pop_front().expect("unscripted read")?;
            Ok(n.min(buf.len()))
        }
    }

    fn err(kind: io::ErrorKind) -> io::Result<usize> {
        Err(kind.into())
    }

    #[test]
    fn partial_write_resumes_where_it_stopped() {
        let greeting = b"Hello there! This is the hosted server";
        let mut socket = Scripted::new(vec![Ok(5), err(io::ErrorKind::WouldBlock)]);
        let mut sent = 0;
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::WouldBlock
        ));
        assert_eq!(sent, 5);

        socket.answers = vec![err(io::ErrorKind::Interrupted), Ok(10), Ok(100)].into();
        assert!(matches!(
            write_greeting(&mut socket, greeting, &mut sent),
            WriteProgress::Complete
        ));
        assert_eq!(sent, greeting.len());
        assert_eq!(socket.written, greeting);
    }

    #[test]
    fn zero_length_write_means_the_peer_is_gone() {
        let mut socket = Scripted::new(vec![Ok(0)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn reset_is_reported_as_the_peers_doing() {
        let mut socket = Scripted::new(vec![err(io::ErrorKind::ConnectionReset)]);
        let mut sent = 0;
        match write_greeting(&mut socket, b"hi", &mut sent) {
            WriteProgress::Failed(err) => assert!(peer_went_away(&err)),
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(!peer_went_away(&io::Error::from_raw_os_error(libc::ENOMEM)));
    }

    #[test]
    fn discarding_stops_at_eof_would_block_or_budget() {
        let mut discarded = 0;
        let mut socket = Scripted::new(vec![Ok(100), Ok(0)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000, |_| {}),
            InputState::Eof
        ));
        assert_eq!(discarded, 100);

        let mut socket = Scripted::new(vec![Ok(10), err(io::ErrorKind::WouldBlock)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 1000, |_| {}),
            InputState::Quiet
        ));
        assert_eq!(discarded, 110);

        let mut socket = Scripted::new(vec![Ok(4096), Ok(4096), Ok(4096)]);
        assert!(matches!(
            discard_input(&mut socket, &mut discarded, 5000, |_| {}),
            InputState::BudgetSpent
        ));
    }

    fn progress(
        unsent: u32,
        data_segments_in: u32,
        bytes_received: u64,
        peer_closed: bool,
    ) -> io::Result<TcpProgress> {
        Ok(TcpProgress {
            unsent,
            data_segments_in,
            bytes_received,
            peer_closed,
        })
    }

    #[test]
    fn a_connection_is_closed_only_when_nothing_is_left_in_either_direction() {
        for (unsent, segments_in, peer_closed, expected) in [
            (0, 0, false, AfterGreeting::Close),
            (1, 0, false, AfterGreeting::Flush),
            (9000, 3, false, AfterGreeting::Flush),
            (0, 3, false, AfterGreeting::Linger),
            // A peer that has closed its side cannot draw a reset with bytes it sends...
            (9000, 0, true, AfterGreeting::Close),
            // ...but bytes it sent before its FIN are read first.
            (0, 3, true, AfterGreeting::Linger),
        ] {
            let kernel = progress(
                unsent,
                segments_in,
                u64::from(segments_in) * 10,
                peer_closed,
            );
            assert_eq!(
                after_greeting(kernel, 0),
                expected,
                "unsent {unsent}, {segments_in} segments in, peer closed: {peer_closed}"
            );
        }
        let failed = Err(io::Error::from_raw_os_error(libc::EBADF));
        assert_eq!(after_greeting(failed, 0), AfterGreeting::Close);
    }

    #[test]
    fn a_proxy_header_is_not_the_clients_input() {
        // 28 bytes of header; the peer's FIN counts as one received byte.
        for (bytes_received, peer_closed, expected) in [
            (28, false, AfterGreeting::Close),
            (29, true, AfterGreeting::Close),
            (33, false, AfterGreeting::Linger),
        ] {
            let kernel = progress(0, 1, bytes_received, peer_closed);
            assert_eq!(
                after_greeting(kernel, 28),
                expected,
                "{bytes_received} received"
            );
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn tells_unsent_bytes_and_received_input_apart_from_a_peer_fin() {
        let (mut client, mut server) = pair();
        let fresh = TcpProgress::of(&server).unwrap();
        assert_eq!(
            (fresh.unsent, fresh.data_segments_in, fresh.peer_closed),
            (0, 0, false)
        );

        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        // Wait for the bytes and the FIN to arrive: reading them blocks until then.
        assert_eq!(server.read(&mut buf).unwrap(), 5);
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        let after = TcpProgress::of(&server).unwrap();
        assert_eq!(
            (after.data_segments_in, after.peer_closed),
            (1, true),
            "{after:?}"
        );
    }

    #[test]
    fn a_bare_fin_is_not_input() {
        let (client, mut server) = pair();
        client.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        let progress = TcpProgress::of(&server).unwrap();
        assert_eq!((progress.data_segments_in, progress.peer_closed), (0, true));
    }

    #[test]
    fn a_greeting_larger_than_the_peers_window_is_partly_unsent() {
        let (client, mut server) = pair();
        // The client reads nothing, so its window fills and the rest stays with us.
        server.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        while written < 8 * 1024 * 1024 {
            match server.write(&chunk) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("{err}"),
            }
        }
        let progress = TcpProgress::of(&server).unwrap();
        assert!(progress.unsent > 0, "{progress:?} after {written} bytes");
        drop(client);
    }

    #[test]
    fn a_descriptor_that_is_not_tcp_is_an_error() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(TcpProgress::of(&file).is_err());
    }
}
