//! Which workers a new connection wakes: one, not all, and only as many as there are
//! cores.
//!
//! The workers share one listening socket (one accept queue: `workers.rs` says why),
//! each registering it with its own poll. Registered the usual way, every arrival
//! wakes every worker blocked in `epoll_wait`, and all but one find the queue empty:
//! with `--workers 64` on 2 cores that thundering herd cut throughput to a quarter.
//! `EPOLLEXCLUSIVE` (Linux 4.5) makes the kernel wake only one poll that is waiting
//! (polls that are busy still get the event queued, cheaply, and take it on their
//! next round, so no arrival can be missed).
//!
//! One wake-up per arrival is not enough when there are more workers than cores: the
//! kernel wakes the first worker *waiting* in `epoll_wait`, so while the first ones
//! are busy it wakes later ones, and a third runnable loop on 2 cores only adds
//! context switches (`--workers 64` served 73% of one worker's rate). So at most one
//! worker per core takes wake-ups (the [`AcceptSet`]); the others stand by, and step
//! in only while one of the accepting workers is full (at its `--max-connections`),
//! so that no connection waits in the backlog while some worker has room.
//!
//! mio has no flag for it, so this module goes beneath mio in one place: it adds and
//! removes the listener with `epoll_ctl` on the poll's own epoll descriptor, with the
//! same edge-triggered readable interest and the token in `data` exactly as mio
//! stores it, so the events read back through mio as any other. A listener added here
//! must be removed here too ([`deregister`]): mio's own deregistration checks (with
//! debug assertions) that mio added the source.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use mio::{Registry, Token};

use crate::handle::ServerHandle;

/// The workers that share listening sockets: how many take wake-ups, and how the
/// others are told to step in.
#[derive(Debug)]
pub(crate) struct AcceptSet {
    /// How many workers take wake-ups while none is full: one per core.
    accepting: usize,
    /// How many of those are full now; while any is, the standby workers listen too.
    full: AtomicUsize,
    /// The standby workers, woken when an accepting worker fills (set once, after
    /// every worker is built).
    standbys: OnceLock<Vec<ServerHandle>>,
}

impl AcceptSet {
    /// A set in which the first `accepting` workers (at least one) take wake-ups.
    pub(crate) fn new(accepting: usize) -> Self {
        AcceptSet {
            accepting: accepting.max(1),
            full: AtomicUsize::new(0),
            standbys: OnceLock::new(),
        }
    }

    /// Whether worker `index` stands by rather than accepting.
    pub(crate) fn is_standby(&self, index: usize) -> bool {
        index >= self.accepting
    }

    /// The standby workers' handles, to wake them (once).
    pub(crate) fn set_standbys(&self, standbys: Vec<ServerHandle>) {
        let _ = self.standbys.set(standbys);
    }

    /// Whether a worker with room should listen: an accepting one always, a standby
    /// while an accepting one is full.
    pub(crate) fn should_listen(&self, standby: bool) -> bool {
        !standby || self.full.load(Ordering::Relaxed) > 0
    }

    /// An accepting worker filled (`true`) or has room again (`false`). Standbys are
    /// woken when one fills, so that they listen; they stop at their next round once
    /// none is full.
    pub(crate) fn accepting_worker_full(&self, full: bool) {
        if full {
            self.full.fetch_add(1, Ordering::Relaxed);
            for standby in self.standbys.get().into_iter().flatten() {
                let _ = standby.wake();
            }
        } else {
            self.full.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Adds the listening socket `fd` to `registry`'s poll as `token`: readable,
/// edge-triggered, and waking one waiting poll per arrival. On a kernel without
/// `EPOLLEXCLUSIVE` it is added without it (every worker woken, as before).
///
/// # Errors
/// If `epoll_ctl` fails (the descriptor is not a socket, or already added).
pub(crate) fn register(registry: &Registry, fd: RawFd, token: Token) -> io::Result<()> {
    // mio's readable interest is EPOLLIN | EPOLLRDHUP | EPOLLET; EPOLLRDHUP cannot go
    // with EPOLLEXCLUSIVE, and a listening socket never reports it anyway.
    const READABLE: u32 = (libc::EPOLLIN | libc::EPOLLET) as u32;
    match epoll_ctl(
        registry,
        libc::EPOLL_CTL_ADD,
        fd,
        READABLE | libc::EPOLLEXCLUSIVE as u32,
        token,
    ) {
        // Linux before 4.5 does not know the flag.
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            log::debug!("EPOLLEXCLUSIVE refused; every worker is woken for every arrival");
            epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, READABLE, token)
        }
        result => result,
    }
}

/// Removes the listening socket `fd`, added by [`register`], from `registry`'s poll.
///
/// # Errors
/// If `epoll_ctl` fails (the descriptor was not added).
pub(crate) fn deregister(registry: &Registry, fd: RawFd) -> io::Result<()> {
    epoll_ctl(registry, libc::EPOLL_CTL_DEL, fd, 0, Token(0))
}

fn epoll_ctl(
    registry: &Registry,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: Token,
) -> io::Result<()> {
    // mio's epoll selector keeps the token in the event's data as a u64.
    let mut event = libc::epoll_event {
        events,
        u64: token.0 as u64,
    };
    // SAFETY: `registry.as_raw_fd()` is the epoll descriptor of a live poll (the
    // registry borrows it), `fd` is a descriptor the caller owns, and `event` is a
    // valid, initialised epoll_event that the kernel only reads during the call.
    let result = unsafe { libc::epoll_ctl(registry.as_raw_fd(), op, fd, &mut event) };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpListener;
    use mio::{Events, Poll};
    use std::time::Duration;

    /// Two polls share a listener added here: an arrival reaches a poll under the
    /// listener's token, as a mio registration would, and removal stops the events.
    #[test]
    fn a_listener_added_here_reads_back_through_mio_and_is_removed_here() {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (first, second) = (Poll::new().unwrap(), Poll::new().unwrap());
        let token = Token(usize::MAX - 1);
        for poll in [&first, &second] {
            register(poll.registry(), listener.as_raw_fd(), token).unwrap();
        }
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let mut events = Events::with_capacity(4);
        let mut first = first;
        first
            .poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|event| event.token()).collect();
        assert_eq!(tokens, [token]);
        assert!(events.iter().all(|event| event.is_readable()));

        deregister(first.registry(), listener.as_raw_fd()).unwrap();
        // Not added any more: a second removal fails.
        assert!(deregister(first.registry(), listener.as_raw_fd()).is_err());
        let _another = std::net::TcpStream::connect(addr).unwrap();
        first.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
    }
}
