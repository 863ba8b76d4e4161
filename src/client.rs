//! The blocking client: connect, read the greeting until EOF, hand back its bytes.
//! Used by `greeter-client` and by the tests.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::describe_io_error;
use crate::parse::unbracket;

/// How the client waits and how much it takes.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Limit for connecting, and for each read.
    pub timeout: Duration,
    /// The most bytes accepted; a server that sends more is cut off with an error.
    pub max_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why no complete greeting was received. Displays as one line naming the address.
#[derive(Debug)]
pub enum ClientError {
    /// The host name did not resolve to any address.
    Resolve {
        /// `host:port` as given.
        target: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No address accepted the connection.
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed (refused, timed out, ...).
        source: io::Error,
    },
    /// What the client sends first (a PROXY header) could not be sent.
    Write {
        /// The server's address.
        addr: SocketAddr,
        /// What the write returned.
        source: io::Error,
    },
    /// The connection failed before EOF.
    Read {
        /// The server's address.
        addr: SocketAddr,
        /// Bytes received before the failure.
        received: usize,
        /// The read timeout, to say how long nothing came.
        timeout: Duration,
        /// What the read returned.
        source: io::Error,
    },
    /// The server closed the connection without sending a byte.
    Empty {
        /// The server's address.
        addr: SocketAddr,
    },
    /// The server sent more than `max_bytes`.
    TooLarge {
        /// The server's address.
        addr: SocketAddr,
        /// The limit that was passed.
        limit: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { target, source } => {
                write!(f, "cannot resolve {target}: {}", describe_io_error(source))
            }
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {}", describe_io_error(source))
            }
            ClientError::Write { addr, source } => {
                write!(f, "cannot send to {addr}: {}", describe_io_error(source))
            }
            ClientError::Read {
                addr,
                received,
                timeout,
                source,
            } => match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => write!(
                    f,
                    "timed out reading from {addr}: nothing received for {} \
                     (after {received} bytes; raise --timeout for a slow server)",
                    humantime::format_duration(*timeout)
                ),
                io::ErrorKind::ConnectionReset => write!(
                    f,
                    "connection reset by {addr} after {received} bytes (greeting incomplete)"
                ),
                _ => write!(
                    f,
                    "cannot read from {addr} after {received} bytes: {}",
                    describe_io_error(source)
                ),
            },
            ClientError::Empty { addr } => {
                write!(f, "{addr} closed the connection without sending anything")
            }
            ClientError::TooLarge { addr, limit } => write!(
                f,
                "{addr} sent more than {limit} bytes; cut off (raise --max-bytes to accept more)"
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve { source, .. }
            | ClientError::Connect { source, .. }
            | ClientError::Write { source, .. }
            | ClientError::Read { source, .. } => Some(source),
            ClientError::Empty { .. } | ClientError::TooLarge { .. } => None,
        }
    }
}

/// Connects to `host:port` (trying every address it resolves to), reads until EOF and
/// returns every byte received. `host` may be a name or an address, IPv6 with or
/// without brackets (`::1` or `[::1]`, the form addresses are printed in).
///
/// # Errors
/// A [`ClientError`] when the name does not resolve, no address connects, the
/// connection fails or times out before EOF, nothing arrives before EOF, or more than
/// `max_bytes` arrive.
///
/// # Examples
/// ```no_run
/// let greeting = greeter::client::fetch_greeting("127.0.0.1", 8080, &Default::default())?;
/// assert_eq!(greeting, b"Hello there! This is the hosted server");
/// # Ok::<(), greeter::client::ClientError>(())
/// ```
pub fn fetch_greeting(
    host: &str,
    port: u16,
    options: &ClientOptions,
) -> Result<Vec<u8>, ClientError> {
    let resolve_error = |source| ClientError::Resolve {
        target: format!("{host}:{port}"),
        source,
    };
    let addrs: Vec<SocketAddr> = (unbracket(host), port)
        .to_socket_addrs()
        .map_err(resolve_error)?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, options.timeout) {
            Ok(stream) => return read_greeting(stream, addr, options),
            Err(source) => last_error = Some(ClientError::Connect { addr, source }),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "no addresses found",
        ))
    }))
}

/// Connects to `addr`, sends `preamble` (a PROXY header, or nothing), then reads
/// until EOF as [`read_greeting`] does.
///
/// # Errors
/// A [`ClientError`] when the connect or the send fails, or as [`read_greeting`].
pub fn fetch_greeting_from(
    addr: SocketAddr,
    preamble: &[u8],
    options: &ClientOptions,
) -> Result<Vec<u8>, ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, options.timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    if !preamble.is_empty() {
        stream
            .set_write_timeout(Some(options.timeout))
            .and_then(|()| stream.write_all(preamble))
            .map_err(|source| ClientError::Write { addr, source })?;
    }
    read_greeting(stream, addr, options)
}

/// Reads `stream` until EOF, within the per-read timeout and the byte limit.
///
/// # Errors
/// As [`fetch_greeting`], for everything after the connect.
pub fn read_greeting(
    mut stream: TcpStream,
    addr: SocketAddr,
    options: &ClientOptions,
) -> Result<Vec<u8>, ClientError> {
    let read_error = |received, source| ClientError::Read {
        addr,
        received,
        timeout: options.timeout,
        source,
    };
    stream
        .set_read_timeout(Some(options.timeout))
        .map_err(|source| read_error(0, source))?;
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) if received.is_empty() => return Err(ClientError::Empty { addr }),
            Ok(0) => return Ok(received),
            Ok(n) => {
                if received.len() + n > options.max_bytes {
                    return Err(ClientError::TooLarge {
                        addr,
                        limit: options.max_bytes,
                    });
                }
                received.extend_from_slice(&chunk[..n]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(received.len(), err)),
        }
    }
}
