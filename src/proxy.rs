//! `--proxy-protocol`: behind a load balancer every connection starts with a PROXY
//! protocol header (v1 text or v2 binary, parsed by the `ppp` crate) that names the
//! real client. The server must not speak first and must not guess whether a header
//! is there: it reads the header, then greets.
//!
//! The header is taken with one `recv` of up to [`MAX_HEADER_BYTES`]: on the common
//! path (a load balancer sends its header in one segment, and `TCP_DEFER_ACCEPT` on
//! the listener lets the connection be accepted only once it has come) that one call
//! is all the header costs. What the same `recv` brought after the header is the
//! client's input, handed on as such (it is counted and classified, and the lingering
//! close waits for the client's EOF as for any input). A header that arrives in pieces
//! is kept in a [`PartialHeader`], allocated only then, until the rest comes.

use std::io::{self, Read};
use std::net::SocketAddr;

use mio::net::TcpStream;
use ppp::v2::{self, Command};
use ppp::{v1, HeaderResult, PartialResult};

/// The longest header accepted. A v1 header is at most 107 bytes; a v2 header is 16
/// plus what it announces (addresses and TLVs; the specification asks receivers to
/// take at least 216). Anything longer is refused.
pub(crate) const MAX_HEADER_BYTES: usize = 536;

/// What the start of a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A whole header of `len` bytes. `client` is the source it names; `None` for a
    /// v1 `UNKNOWN`, a v2 `LOCAL` (a load balancer's own health check) or a non-IP
    /// source, which are served as the socket's peer.
    Complete {
        /// The header's length in bytes.
        len: usize,
        /// The client the header names.
        client: Option<SocketAddr>,
    },
    /// Not all of it yet.
    Incomplete,
    /// Not a PROXY header, a malformed one, one longer than [`MAX_HEADER_BYTES`], or
    /// a connection closed before its header was whole: why, for the debug log.
    Invalid(&'static str),
}

/// Classifies the first bytes of a connection (`full`: the buffer they came in is
/// full, so waiting cannot complete a header that is not whole yet).
pub(crate) fn inspect(bytes: &[u8], full: bool) -> Header {
    if v1_ends_in_an_empty_field(bytes) {
        return if full {
            Header::Invalid("oversized")
        } else {
            Header::Incomplete
        };
    }
    let header = match HeaderResult::parse(bytes) {
        result if result.is_incomplete() => {
            if let HeaderResult::V2(Err(v2::ParseError::Partial(_, announced))) = result {
                if 16 + announced > MAX_HEADER_BYTES {
                    return Header::Invalid("oversized");
                }
            }
            // ppp calls a v1 line with missing fields incomplete even when its CRLF
            // has come: more bytes cannot complete it.
            if matches!(result, HeaderResult::V1(_)) && bytes.windows(2).any(|w| w == b"\r\n") {
                return Header::Invalid("malformed");
            }
            return if full {
                Header::Invalid("oversized")
            } else {
                Header::Incomplete
            };
        }
        HeaderResult::V1(Ok(header)) => Header::Complete {
            len: header.header.len(),
            client: match header.addresses {
                v1::Addresses::Tcp4(ip) => Some((ip.source_address, ip.source_port).into()),
                v1::Addresses::Tcp6(ip) => Some((ip.source_address, ip.source_port).into()),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Header::Complete {
            len: header.len(),
            client: match (header.command, header.addresses) {
                (Command::Local, _) => None,
                (Command::Proxy, v2::Addresses::IPv4(ip)) => {
                    Some((ip.source_address, ip.source_port).into())
                }
                (Command::Proxy, v2::Addresses::IPv6(ip)) => {
                    Some((ip.source_address, ip.source_port).into())
                }
                (Command::Proxy, _) => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Header::Invalid("malformed"),
    };
    match header {
        Header::Complete { len, .. } if len > MAX_HEADER_BYTES => Header::Invalid("oversized"),
        header => header,
    }
}

/// Whether `bytes` is the start of a v1 TCP header that stops right after a space,
/// before its line ends.
///
/// ppp 2.3.0 (the latest release as of 2026-12) reads such a prefix as a whole line:
/// cut right after the source port's space, `PROXY TCP4 a b 40000 ` has an empty
/// destination port, which it reports as `InvalidDestinationPort` instead of
/// incomplete, so a valid header split there (or sent a byte at a time) would be
/// refused. Whatever ppp says, a v1 line without its CRLF that ends in a space can only
/// be waited for: its last field has not begun.
fn v1_ends_in_an_empty_field(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PROXY TCP")
        && bytes.ends_with(b" ")
        && !bytes.windows(2).any(|pair| pair == b"\r\n")
}

/// The start of a PROXY header that has not come whole yet: what was read of it.
/// Boxed and kept by its connection only while it waits for the rest.
#[derive(Debug)]
pub(crate) struct PartialHeader {
    /// The bytes read so far; `len` of them are valid.
    bytes: [u8; MAX_HEADER_BYTES],
    /// How many bytes were read so far.
    len: usize,
}

/// Reads what has arrived of the PROXY header: with what a connection waiting for it
/// read before (`partial`, which holds the start of a header that came in pieces),
/// until a whole header is there, the socket has nothing more, or the header cannot
/// be one. Once whole, `after_header` gets what the same reads brought after it (the
/// client's input, possibly empty) and `partial` is dropped. Reads until the socket
/// would block: the poll is edge-triggered.
///
/// # Errors
/// If the socket fails (a reset, typically).
pub(crate) fn read_header(
    stream: &mut TcpStream,
    partial: &mut Option<Box<PartialHeader>>,
    after_header: impl FnOnce(&[u8]),
) -> io::Result<Header> {
    let mut on_stack = [0u8; MAX_HEADER_BYTES];
    let (buffer, mut len) = match partial.as_deref_mut() {
        Some(PartialHeader { bytes, len }) => (bytes, *len),
        None => (&mut on_stack, 0),
    };
    let header = loop {
        match stream.read(&mut buffer[len..]) {
            Ok(0) => break Header::Invalid("closed before its header"),
            Ok(n) => {
                len += n;
                match inspect(&buffer[..len], len == MAX_HEADER_BYTES) {
                    Header::Incomplete => continue,
                    header => break header,
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break Header::Incomplete,
            Err(err) => return Err(err),
        }
    };
    match header {
        Header::Incomplete if len > 0 => match partial.as_deref_mut() {
            // The reads above appended to it.
            Some(kept) => kept.len = len,
            None => {
                let mut kept = Box::new(PartialHeader {
                    bytes: [0; MAX_HEADER_BYTES],
                    len,
                });
                kept.bytes[..len].copy_from_slice(&on_stack[..len]);
                *partial = Some(kept);
            }
        },
        Header::Complete {
            len: header_len, ..
        } => {
            after_header(&buffer[header_len..len]);
            *partial = None;
        }
        _ => {}
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    #[test]
    fn v1_headers_name_the_client_and_their_length() {
        let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 17\r\n";
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"after");
        assert_eq!(
            inspect(&bytes, false),
            Header::Complete {
                len: header.len(),
                client: Some("192.0.2.7:40000".parse().unwrap())
            }
        );
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 17\r\n";
        assert_eq!(
            inspect(tcp6, false),
            Header::Complete {
                len: tcp6.len(),
                client: Some("[2001:db8::7]:40000".parse().unwrap())
            }
        );
        assert_eq!(
            inspect(b"PROXY UNKNOWN\r\n", false),
            Header::Complete {
                len: 15,
                client: None
            }
        );
    }

    #[test]
    fn v2_headers_name_the_client_and_local_is_the_balancers_own() {
        let ipv4 = v2(1, 0x11, &[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0, 17]);
        assert_eq!(
            inspect(&ipv4, false),
            Header::Complete {
                len: 28,
                client: Some("192.0.2.7:40000".parse().unwrap())
            }
        );
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            inspect(&local, false),
            Header::Complete {
                len: 16,
                client: None
            }
        );
    }

    /// Every header the tests know, v1 and v2, for every address family.
    fn valid_headers() -> Vec<Vec<u8>> {
        let mut ipv6 = Vec::new();
        ipv6.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        ipv6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        ipv6.extend_from_slice(&[0x9c, 0x40, 0, 17]);
        vec![
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 8080\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8080\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            b"PROXY UNKNOWN 192.0.2.7 198.51.100.1 40000 8080\r\n".to_vec(),
            v2(1, 0x11, &[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0, 17]),
            v2(1, 0x21, &ipv6),
            v2(0, 0x00, &[]),
        ]
    }

    #[test]
    fn a_valid_header_cut_anywhere_is_incomplete_and_whole_is_complete() {
        for header in valid_headers() {
            for cut in 1..header.len() {
                assert_eq!(
                    inspect(&header[..cut], false),
                    Header::Incomplete,
                    "{:?} cut after {cut} bytes",
                    String::from_utf8_lossy(&header[..cut])
                );
            }
            assert!(
                matches!(inspect(&header, false), Header::Complete { len, .. } if len == header.len()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn partial_garbage_and_oversized_headers_are_told_apart() {
        assert_eq!(inspect(b"PROXY TCP4 192.0", false), Header::Incomplete);
        assert_eq!(inspect(&V2_SIGNATURE[..7], false), Header::Incomplete);
        assert_eq!(
            inspect(b"PROXY TCP4 192.0", true),
            Header::Invalid("oversized")
        );
        assert_eq!(
            inspect(b"GET / HTTP/1.1\r\n\r\n", false),
            Header::Invalid("malformed")
        );
        assert_eq!(
            inspect(b"PROXY TCP4 nonsense\r\n", false),
            Header::Invalid("malformed")
        );
        // A v2 header that announces more than the limit is refused before it arrives.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
        assert_eq!(inspect(&huge, false), Header::Invalid("oversized"));
    }
}
