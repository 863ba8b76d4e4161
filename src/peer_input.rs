//! What a peer that sends data sends first: a banner protocol's clients wait for the
//! banner, so input before (or instead of) reading it is a sign of a scanner, a
//! misdirected client (TLS or HTTP to a plaintext banner port) or a bot. The class
//! ends the `CLOSE` line (`first=`) and labels `greeter_peer_input_total`.
//!
//! Only connections that sent data are ever classified, and those are already held
//! and read (lingering, flushing, or within `--greet-delay`): the fast path never
//! looks at input. The class is taken from the first read, which holds the client's
//! first segment (a ClientHello, a request line, an SSH banner) whole in practice.

/// The class of a peer's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstInput {
    /// It sent nothing (that was read).
    #[default]
    None,
    /// A TLS record header (a handshake record of TLS 1.0 to 1.3): a ClientHello sent
    /// to a plaintext port.
    Tls,
    /// An HTTP method and a space (`GET `, `POST `, `PRI ` for HTTP/2's preface).
    Http,
    /// An SSH identification string (`SSH-`).
    Ssh,
    /// A PROXY protocol signature (v1 or v2) where none was expected.
    Proxy,
    /// Anything else.
    Other,
}

/// The HTTP methods a request line may start with (RFC 9110's, WebDAV's common ones,
/// and HTTP/2's connection preface).
const HTTP_METHODS: [&[u8]; 14] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PROPFIND ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"PRI ",
];

/// The PROXY protocol v2 signature.
const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

impl FirstInput {
    /// Every class, with its label, in the order metrics list them.
    pub const ALL: [(FirstInput, &'static str); 6] = [
        (FirstInput::None, "none"),
        (FirstInput::Tls, "tls"),
        (FirstInput::Http, "http"),
        (FirstInput::Ssh, "ssh"),
        (FirstInput::Proxy, "proxy"),
        (FirstInput::Other, "other"),
    ];

    /// How many classes there are.
    pub const COUNT: usize = FirstInput::ALL.len();

    /// The class of `first`, the first bytes a peer sent (empty: none).
    pub fn classify(first: &[u8]) -> FirstInput {
        match first {
            [] => FirstInput::None,
            // Content type 22 (handshake), then the record's version 3.1 to 3.4 (a
            // ClientHello's record says 3.1 for every version since TLS 1.0).
            [0x16, 0x03, minor, ..] if *minor <= 0x04 => FirstInput::Tls,
            _ if first.starts_with(b"SSH-") => FirstInput::Ssh,
            _ if first.starts_with(b"PROXY ") || first.starts_with(PROXY_V2_SIGNATURE) => {
                FirstInput::Proxy
            }
            _ if HTTP_METHODS.iter().any(|method| first.starts_with(method)) => FirstInput::Http,
            _ => FirstInput::Other,
        }
    }

    /// Its label: the `first=` of the `CLOSE` line and the metric's.
    pub fn as_str(self) -> &'static str {
        FirstInput::ALL[self as usize].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_are_classified_by_their_protocol() {
        let tls13_client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        for (bytes, class) in [
            (&tls13_client_hello[..], FirstInput::Tls),
            (&[0x16, 0x03, 0x03, 0x00, 0x10][..], FirstInput::Tls),
            (&[0x16, 0x03, 0x09][..], FirstInput::Other),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", FirstInput::Http),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", FirstInput::Http),
            (b"GETX / HTTP/1.1\r\n", FirstInput::Other),
            (b"SSH-2.0-OpenSSH_9.6\r\n", FirstInput::Ssh),
            (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", FirstInput::Proxy),
            (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", FirstInput::Proxy),
            (b"EHLO example.org\r\n", FirstInput::Other),
            (b"\n", FirstInput::Other),
            (b"", FirstInput::None),
        ] {
            assert_eq!(FirstInput::classify(bytes), class, "{bytes:?}");
        }
    }

    #[test]
    fn the_table_has_every_class_at_its_own_index() {
        for (index, (class, _)) in FirstInput::ALL.iter().enumerate() {
            assert_eq!(*class as usize, index, "{class:?}");
        }
    }
}
