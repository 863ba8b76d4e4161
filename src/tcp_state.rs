//! What the kernel knows about a connection that the socket API does not say: how much
//! of what we wrote is still waiting to be sent, and whether the peer sent anything.
//!
//! One `getsockopt(TCP_INFO)` answers both, so the fast path uses it in place of a
//! probing `read`: a greeting that was written in full may still sit in the kernel,
//! held back by the peer's window, and closing then would let a late peer byte turn
//! into a reset that throws that rest away.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd};

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
    /// Segments sent but not yet acknowledged by the peer.
    pub unacked_segments: u32,
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
            unacked_segments: info.tcpi_unacked,
            data_segments_in: info.tcpi_data_segs_in,
            bytes_received: info.tcpi_bytes_received,
            peer_closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

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
