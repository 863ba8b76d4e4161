//! Trapped connections handed from the old process to the new one over the report
//! channel, once the new one has said `ready`: their sockets as `SCM_RIGHTS`, each
//! with a one-line record of its trap ([`TrapRecord`]), at most [`MAX_FDS_PER_MESSAGE`]
//! a message. The channel is a byte stream: each message carries its records' lines
//! and, on its first byte, their descriptors, in the same order, so the receiver
//! pairs the n-th complete line with the n-th descriptor it received
//! ([`HandedReceiver`]).
//!
//! A record is a line of text, `v1` then `key=value` fields separated by spaces,
//! unknown keys ignored: a later version can add fields; a line the receiver cannot
//! read has its descriptor closed (a plain `close()`, never a `shutdown()`: the
//! socket is the client's, and a FIN would end its trap).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::admission::TrapWhy;
use crate::peer_input::FirstInput;

#[cfg(test)]
mod tests;

/// Linux's `SCM_MAX_FD`: the most descriptors one message may carry.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// The version word that starts every record line.
const VERSION: &str = "v1";

/// What the new process needs to go on trapping a client where the old one left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapRecord {
    /// The listening socket the client came through (its local address: the same
    /// socket is passed to the new process, named as its listener).
    pub listener: SocketAddr,
    /// The client (its PROXY header's, where one named it).
    pub peer: SocketAddr,
    /// The socket's peer as the kernel sees it: the receiver checks its descriptor
    /// against it, so that a record never goes with another client's socket.
    pub socket_peer: SocketAddr,
    /// When its trap began, by the wall clock: milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Bytes dripped so far (with `--drip greeting`, how far into the greeting).
    pub sent: u32,
    /// `--drip lines` (else the greeting is dripped).
    pub lines: bool,
    /// Why it was trapped.
    pub why: TrapWhy,
    /// What it sent first, and how much was read of it.
    pub first: FirstInput,
    /// Bytes read from it (once, at most 4 KiB).
    pub input: u32,
    /// Its last drip would have blocked: drips wait until it is writable.
    pub blocked: bool,
    /// Milliseconds until its next drip is due.
    pub due_ms: u64,
    /// Its country's ISO code with `--geoip-db` (`??` where the database has none,
    /// `--` without a database).
    pub country: [u8; 2],
    /// With `--drip greeting`, the greeting it is being dripped (at most
    /// [`MAX_HANDED_GREETING`] bytes), so that it gets the rest of the greeting it
    /// began, whatever the new process's is (hex in the line).
    pub greeting: Option<Vec<u8>>,
}

/// The longest greeting a record carries; a dripped greeting longer than that goes
/// on from the new process's greeting for its listener.
pub const MAX_HANDED_GREETING: usize = 16 * 1024;

/// The old process's end of the channel, shared by its workers: each sends a message
/// (its lines and descriptors) under the lock, so that two workers' messages never
/// interleave in the stream (the kernel may cut a large message in two, and another
/// writer's could come between: then lines and descriptors would pair wrongly).
pub type SharedChannel = std::sync::Arc<std::sync::Mutex<UnixStream>>;

/// A trapped connection as it arrives in the new process.
#[derive(Debug)]
pub struct Handed {
    /// Its socket, now this process's.
    pub socket: OwnedFd,
    /// Its trap.
    pub record: TrapRecord,
}

impl TrapRecord {
    /// The record as one line, its `\n` included.
    pub fn to_line(&self) -> String {
        let country = String::from_utf8_lossy(&self.country).into_owned();
        format!(
            "{VERSION} listener={} peer={} socket_peer={} start_ms={} sent={} mode={} why={} first={} \
             input={} blocked={} due_ms={} country={country}",
            self.listener,
            self.peer,
            self.socket_peer,
            self.start_ms,
            self.sent,
            if self.lines { "lines" } else { "greeting" },
            self.why.as_str(),
            self.first.as_str(),
            self.input,
            u8::from(self.blocked),
            self.due_ms,
        ) + &self.greeting_field()
    }

    /// ` greeting=HEX` before the line's end, for a dripped greeting; else just the
    /// line's end.
    fn greeting_field(&self) -> String {
        let Some(greeting) = &self.greeting else {
            return "\n".to_owned();
        };
        let mut field = String::with_capacity(11 + 2 * greeting.len());
        field.push_str(" greeting=");
        for byte in greeting {
            field.push_str(&format!("{byte:02x}"));
        }
        field.push('\n');
        field
    }

    /// Reads a record line (without its `\n`); `None` if it is not one this version
    /// understands.
    pub fn parse(line: &str) -> Option<TrapRecord> {
        let mut words = line.split(' ');
        if words.next()? != VERSION {
            return None;
        }
        let mut record = TrapRecord {
            listener: SocketAddr::from(([0, 0, 0, 0], 0)),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            socket_peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            start_ms: 0,
            sent: 0,
            lines: true,
            why: TrapWhy::Listener,
            first: FirstInput::None,
            input: 0,
            blocked: false,
            due_ms: 0,
            country: *b"--",
            greeting: None,
        };
        let mut seen = 0u8;
        for word in words.filter(|word| !word.is_empty()) {
            let (key, value) = word.split_once('=')?;
            match key {
                "listener" => (record.listener, seen) = (value.parse().ok()?, seen | 1),
                "peer" => (record.peer, seen) = (value.parse().ok()?, seen | 2),
                "start_ms" => (record.start_ms, seen) = (value.parse().ok()?, seen | 4),
                "socket_peer" => (record.socket_peer, seen) = (value.parse().ok()?, seen | 8),
                "sent" => record.sent = value.parse().ok()?,
                "mode" => {
                    record.lines = match value {
                        "lines" => true,
                        "greeting" => false,
                        _ => return None,
                    }
                }
                "why" => record.why = parse_why(value)?,
                "first" => {
                    record.first = FirstInput::ALL
                        .iter()
                        .find(|(_, name)| *name == value)
                        .map(|(first, _)| *first)?
                }
                "input" => record.input = value.parse().ok()?,
                "blocked" => record.blocked = value == "1",
                "due_ms" => record.due_ms = value.parse().ok()?,
                "country" => record.country = value.as_bytes().try_into().ok()?,
                "greeting" => record.greeting = Some(from_hex(value)?),
                // A later version's field.
                _ => {}
            }
        }
        // The listener, the client, its socket and the start are what a trap cannot
        // go on without.
        (seen == 15).then_some(record)
    }
}

/// The bytes `hex` spells two digits a byte; `None` if it does not, or spells more
/// than [`MAX_HANDED_GREETING`].
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.len() / 2 > MAX_HANDED_GREETING {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

fn parse_why(value: &str) -> Option<TrapWhy> {
    [
        TrapWhy::Listener,
        TrapWhy::Deny,
        TrapWhy::Rate,
        TrapWhy::Pregreet,
    ]
    .into_iter()
    .find(|why| why.as_str() == value)
}

/// Sends one message: `records`' lines with `sockets` (as many, at most
/// [`MAX_FDS_PER_MESSAGE`]) on `channel` (blocking, with a send timeout; the only
/// writer while this runs: see [`SharedChannel`]). Once this
/// returns `Ok`, the new process holds the sockets: the caller may only `close()`
/// its own descriptors.
///
/// # Errors
/// If the message cannot be sent: then no socket was passed, unless the error came
/// after the descriptors went (a stream cut in the middle of the lines: the new
/// process then closes those it cannot read).
pub fn send_batch(
    channel: &UnixStream,
    records: &[TrapRecord],
    sockets: &[RawFd],
) -> io::Result<()> {
    debug_assert!(records.len() == sockets.len() && sockets.len() <= MAX_FDS_PER_MESSAGE);
    let text: String = records.iter().map(TrapRecord::to_line).collect();
    let bytes = text.as_bytes();
    let rights = [ControlMessage::ScmRights(sockets)];
    let sent = loop {
        match sendmsg::<()>(
            channel.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(sent) => break sent,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(io::Error::from(errno)),
        }
    };
    // A stream may take part of a message; the descriptors went with its first byte.
    let mut writer: &UnixStream = channel;
    writer.write_all(&bytes[sent..])
}

/// The peer of TCP socket `socket`, if it has one.
fn peer_of(socket: &OwnedFd) -> Option<SocketAddr> {
    socket2::SockRef::from(socket).peer_addr().ok()?.as_socket()
}

/// The new process's end of the handover: reads what the old process sends, pairing
/// each record with its socket.
#[derive(Debug, Default)]
pub struct HandedReceiver {
    /// Bytes received that do not make a whole line yet.
    partial: Vec<u8>,
    /// Sockets received whose lines have not come whole yet, in order.
    sockets: VecDeque<OwnedFd>,
    /// Records that could not be read, or that did not go with their socket (their
    /// sockets closed), for one warning.
    pub unreadable: usize,
}

/// How much one receive reads: a whole message of [`MAX_FDS_PER_MESSAGE`] records.
const RECEIVE_BYTES: usize = 64 * 1024;

impl HandedReceiver {
    /// Reads what `channel` (nonblocking) has now: the handed connections whose
    /// records came whole, and whether the channel has ended (the old process has
    /// handed everything, or is gone).
    pub fn receive(&mut self, channel: &impl AsRawFd) -> (Vec<Handed>, bool) {
        let mut handed = Vec::new();
        let mut buffer = vec![0u8; RECEIVE_BYTES];
        let mut control = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
        let ended = loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let received = recvmsg::<()>(
                channel.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            );
            let (bytes, fds) = match received {
                Ok(message) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = message.cmsgs() {
                        for cmsg in cmsgs {
                            if let ControlMessageOwned::ScmRights(rights) = cmsg {
                                fds.extend(rights);
                            }
                        }
                    }
                    (message.bytes, fds)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break false,
                Err(_) => break true,
            };
            // SAFETY: SCM_RIGHTS installed these descriptors in this process for this
            // message; nothing else knows of them.
            self.sockets.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
            if bytes == 0 {
                // Sockets whose lines never came whole: closed with the receiver.
                self.unreadable += self.sockets.len();
                break true;
            }
            self.partial.extend_from_slice(&buffer[..bytes]);
            self.take_lines(&mut handed);
        };
        (handed, ended)
    }

    /// Pairs each whole line received with the next socket.
    fn take_lines(&mut self, handed: &mut Vec<Handed>) {
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&byte| byte == b'\n') {
            let line = &self.partial[start..start + end];
            start += end + 1;
            let Some(socket) = self.sockets.pop_front() else {
                self.unreadable += 1;
                continue;
            };
            let record = std::str::from_utf8(line).ok().and_then(TrapRecord::parse);
            match record.filter(|record| peer_of(&socket) == Some(record.socket_peer)) {
                Some(record) => handed.push(Handed { socket, record }),
                // Dropped: closed, never shut down.
                None => self.unreadable += 1,
            }
        }
        self.partial.drain(..start);
    }
}
