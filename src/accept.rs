//! The accept policy: which `accept(2)` failures concern one connection only and which
//! mean the server must stop accepting for a while.
//!
//! One bad accept must never end the server. Linux passes some network errors of a
//! queued connection to `accept` itself (see accept(2), "Error handling"); those are
//! skipped like a connection that went away. Running out of descriptors or memory is
//! different: under edge triggering no new event arrives for connections already
//! queued, and retrying at once would spin, so the server pauses and retries on a timer
//! or as soon as one of its own connections frees a descriptor.

use std::io;
use std::time::Duration;

/// How long accepting pauses after a resource-exhaustion error before it is retried
/// (sooner if a connection closes and frees a descriptor).
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// What an accept error means for the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// Only that connection is lost: count it and go on accepting.
    PerConnection,
    /// Out of descriptors or memory: pause, keep the queue, retry later.
    ResourcesExhausted,
    /// Anything else: pause like exhaustion, so that a broken listener cannot spin.
    Unexpected,
}

/// Classifies an error returned by `accept`.
pub fn classify(err: &io::Error) -> AcceptFailure {
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            AcceptFailure::ResourcesExhausted
        }
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EINTR
            | libc::EPROTO
            | libc::EPERM
            | libc::ETIMEDOUT
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET
            | libc::EOPNOTSUPP,
        ) => AcceptFailure::PerConnection,
        _ => match err.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted => AcceptFailure::PerConnection,
            _ => AcceptFailure::Unexpected,
        },
    }
}

/// How to fix a pause, for the one warning logged per episode.
pub fn remedy(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EMFILE) => {
            "the process is out of file descriptors: raise the limit (ulimit -n, or \
             LimitNOFILE= in the systemd unit) or lower --max-connections"
        }
        Some(libc::ENFILE) => {
            "the system is out of file descriptors: raise fs.file-max or lower \
             --max-connections"
        }
        Some(libc::ENOBUFS | libc::ENOMEM) => {
            "the kernel is short of memory for sockets: lower --max-connections or add memory"
        }
        _ => "unexpected accept error; the listener will be retried",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn fd_and_memory_exhaustion_pause_accepting() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                classify(&os(code)),
                AcceptFailure::ResourcesExhausted,
                "{code}"
            );
        }
    }

    #[test]
    fn errors_of_one_queued_connection_are_skipped() {
        for code in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPROTO,
            libc::EINTR,
        ] {
            assert_eq!(classify(&os(code)), AcceptFailure::PerConnection, "{code}");
        }
    }

    #[test]
    fn anything_else_pauses_rather_than_ends_the_server() {
        assert_eq!(classify(&os(libc::EBADF)), AcceptFailure::Unexpected);
        assert!(remedy(&os(libc::EMFILE)).contains("ulimit -n"));
    }
}
