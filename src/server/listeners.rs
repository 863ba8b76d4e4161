//! The loop's listening sockets and the accept rotation over them: each socket checked
//! and registered when the server is built, and each round's accepts taken from the
//! listeners that may have connections queued ([`ReadyListeners`]), in turn, each with
//! a share of the round's budget, until every backlog is empty, the budget is spent,
//! the cap is reached or accepting must pause. What an accept error means and when
//! to accept again is `accept.rs`'s gate; what an accepted connection gets is the
//! loop's `greet`. The server's public answers about its sockets (addresses, send
//! buffer) are here too.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use log::debug;
use mio::net::TcpListener;
use mio::{Poll, Token};
use socket2::SockRef;

use super::{Server, LOG_TARGET};
use crate::accept::{self, AcceptFailure};
use crate::accept_set;
use crate::config::{Config, MAX_GREETING_BYTES};
use crate::error::describe_io_error;
use crate::listener::{defer_accept, ListeningSocket};
use crate::socket::would_block;

/// The token of listener `index`. Reserved tokens sit at the top of the range: the
/// waker (`usize::MAX`), then the listeners downward; connections use their slab key,
/// which is bounded by `--max-connections` and so never reaches these.
pub(super) fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

/// The index of the listener whose token is `Token(key)` (see [`listener_token`]).
#[inline]
pub(super) fn listener_index(key: usize) -> usize {
    usize::MAX - 1 - key
}

/// The most listening sockets one server serves (a connection names its listener in
/// 16 bits).
const MAX_LISTENING_SOCKETS: usize = u16::MAX as usize;

/// A listening socket with its listener's index in the config and its PROXY setting.
#[derive(Debug)]
pub(super) struct Listening {
    /// The socket.
    pub(super) socket: TcpListener,
    /// Its listener's index in [`Config::listeners`]: what its connections get is
    /// that listener's entry in the loop's one table (`admission.rs`).
    pub(super) listener: u16,
    /// Whether its connections begin with a PROXY protocol header.
    pub(super) proxy_protocol: bool,
}

/// Checks `sockets` against `config` (each names a listener of it, whose greeting
/// is at most 1 GiB; at least one, at most [`MAX_LISTENING_SOCKETS`]), makes them
/// nonblocking and adds them to `poll`, listener `i` as [`listener_token`]`(i)`:
/// the listeners and the addresses they are bound to, in order.
///
/// # Errors
/// If a check fails, or a socket cannot be set up or added.
pub(super) fn register(
    poll: &Poll,
    sockets: Vec<ListeningSocket>,
    config: &Config,
) -> io::Result<(Vec<Listening>, Vec<SocketAddr>)> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let mut local_addrs = Vec::with_capacity(sockets.len());
    let mut registered = Vec::with_capacity(sockets.len());
    for (index, ListeningSocket { socket, listener }) in sockets.into_iter().enumerate() {
        let Some(served) = config.listeners.get(listener) else {
            return Err(invalid(format!(
                "a socket names listener {listener}, which the config lacks"
            )));
        };
        if served.greeting.len() as u64 > MAX_GREETING_BYTES {
            return Err(invalid(format!(
                "a greeting of {} bytes is over 1 GiB",
                served.greeting.len()
            )));
        }
        socket.set_nonblocking(true)?;
        local_addrs.push(socket.local_addr()?);
        if served.proxy_protocol {
            defer_accept(&socket);
        }
        let socket = TcpListener::from_std(socket);
        // One worker woken per arrival when several share the socket.
        accept_set::register(poll.registry(), socket.as_raw_fd(), listener_token(index))?;
        registered.push(Listening {
            socket,
            // Fits: checked against MAX_LISTENING_SOCKETS below, and a config has no
            // more listeners than sockets.
            listener: listener as u16,
            proxy_protocol: served.proxy_protocol,
        });
    }
    if registered.is_empty() {
        return Err(invalid("no listening socket".to_owned()));
    }
    if registered.len() > MAX_LISTENING_SOCKETS {
        return Err(invalid(format!(
            "more than {MAX_LISTENING_SOCKETS} listening sockets"
        )));
    }
    Ok((registered, local_addrs))
}

/// Each listener's descriptor with its token, for [`accept_set::move_listeners`].
pub(super) fn registrations(listeners: &[Listening]) -> impl Iterator<Item = (RawFd, Token)> + '_ {
    listeners
        .iter()
        .enumerate()
        .map(|(index, listening)| (listening.socket.as_raw_fd(), listener_token(index)))
}

/// The listeners that may have connections queued, in the order they are accepted
/// from. Edge triggering announces a backlog once, so a listener stays here from its
/// event until an accept finds its backlog empty; one whose share of a round ran out
/// goes to the back. A listener with no event never enters: an idle listener costs
/// nothing, however many there are, and the budget goes to those with connections
/// waiting.
#[derive(Debug)]
pub(super) struct ReadyListeners {
    /// The queued listeners' indexes, the next to accept from first.
    order: VecDeque<usize>,
    /// Per listener: whether it is in `order` (so that it is there once).
    queued: Vec<bool>,
}

impl ReadyListeners {
    /// None of `count` listeners queued.
    pub(super) fn new(count: usize) -> Self {
        ReadyListeners {
            order: VecDeque::new(),
            queued: vec![false; count],
        }
    }

    /// How many listeners there are.
    pub(super) fn count(&self) -> usize {
        self.queued.len()
    }

    /// Listener `index` may have connections queued (its event came).
    #[inline]
    pub(super) fn mark(&mut self, index: usize) {
        if !self.queued[index] {
            self.queued[index] = true;
            self.order.push_back(index);
        }
    }

    /// Every listener may have connections queued (a drain takes them all).
    pub(super) fn mark_all(&mut self) {
        for index in 0..self.queued.len() {
            self.mark(index);
        }
    }

    /// How many listeners are queued.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The next listener to accept from; it stays queued until [`Self::drained`].
    pub(super) fn next(&mut self) -> Option<usize> {
        self.order.pop_front()
    }

    /// Its backlog was found empty.
    pub(super) fn drained(&mut self, index: usize) {
        self.queued[index] = false;
    }

    /// Its share ran out first: after the others next time.
    pub(super) fn later(&mut self, index: usize) {
        self.order.push_back(index);
    }

    /// Accepting stopped on it (the cap, a pause): first next time.
    pub(super) fn first_again(&mut self, index: usize) {
        self.order.push_front(index);
    }
}

/// Why an accept loop on one listener stopped before its backlog was empty.
#[derive(Debug)]
enum Stopped {
    /// Its share of the round's budget ran out.
    ShareSpent,
    /// The gate stopped accepting (the cap, or a pause).
    Gate,
    /// A tarpit listener, with `--max-trapped` clients trapped: its clients wait in
    /// the backlog until a trap ends.
    TrapFull,
}

impl Server {
    /// The (first) address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address the server listens on, in order, with the real ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The listening socket's `SO_SNDBUF` as the kernel reports it, if `--send-buffer`
    /// set one (otherwise accepted sockets autotune theirs).
    pub fn send_buffer(&self) -> Option<usize> {
        self.config.send_buffer?;
        let listening = self.listeners.first()?;
        SockRef::from(&listening.socket).send_buffer_size().ok()
    }

    /// Accepts from the listeners that may have connections queued, each once in
    /// turn with an equal share of what the ones before it left of `budget`, until
    /// every backlog is empty (edge triggering announces them only once), the budget
    /// is spent, `cap` connections are held, or accepting fails for lack of resources.
    pub(super) fn accept_queued(&mut self, now: Instant, budget: usize, cap: usize) {
        let mut left = budget;
        for turns in (1..=self.ready.len()).rev() {
            let Some(index) = self.ready.next() else {
                break;
            };
            let share = left.div_ceil(turns);
            left -= share;
            match self.accept_from(index, now, share, cap) {
                Ok(unused) => {
                    left += unused;
                    self.ready.drained(index);
                }
                Err(Stopped::ShareSpent) => self.ready.later(index),
                Err(Stopped::TrapFull) => {
                    self.ready.drained(index);
                    self.trap_parked.push(index);
                }
                // At capacity or paused: the gate says so; the rest stay queued.
                Err(Stopped::Gate) => {
                    self.ready.first_again(index);
                    return;
                }
            }
        }
        if self.ready.is_empty() {
            self.gate.drained(now);
        } else {
            self.gate.budget_spent();
        }
    }

    /// Accepts up to `share` connections from listener `index`: `Ok(unused)` once its
    /// backlog is empty, with what is left of the share; `Err` when the share ran out
    /// first or accepting must stop (the cap, or a pause).
    fn accept_from(
        &mut self,
        index: usize,
        now: Instant,
        share: usize,
        cap: usize,
    ) -> Result<usize, Stopped> {
        // A tarpit listener stops at --max-trapped; not in a drain (cap: all), which
        // takes what is queued (each then closed trap-full) rather than reset it.
        let listener = usize::from(self.listeners[index].listener);
        let parks = cap != usize::MAX && self.config.listeners[listener].tarpit.is_some();
        for used in 0..share {
            if self.held.counted() >= cap {
                // Leave the rest in the kernel's backlog until a slot frees.
                self.gate.at_capacity();
                return Err(Stopped::Gate);
            }
            if parks && self.held.trap_full() {
                return Err(Stopped::TrapFull);
            }
            match self.listeners[index].socket.accept() {
                Ok((stream, peer)) => self.greet(stream, peer, index, now),
                Err(err) if would_block(&err) => return Ok(share - used),
                Err(err) => match accept::classify(&err) {
                    AcceptFailure::PerConnection => {
                        self.totals.accept_errors += 1;
                        debug!(
                            target: LOG_TARGET,
                            "ACCEPT_ERROR error=\"{}\"",
                            describe_io_error(&err)
                        );
                    }
                    AcceptFailure::ResourcesExhausted | AcceptFailure::Unexpected => {
                        if self.gate.pause(&err, now) {
                            self.totals.accept_pauses += 1;
                        }
                        return Err(Stopped::Gate);
                    }
                },
            }
        }
        Err(Stopped::ShareSpent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listeners_token_names_it_back() {
        for index in [0, 1, MAX_LISTENING_SOCKETS - 1] {
            assert_eq!(listener_index(listener_token(index).0), index);
        }
    }

    /// Each queued listener once, in the order its events came; one whose share ran
    /// out goes to the back, one the gate stopped on comes first next time.
    #[test]
    fn the_rotation_keeps_each_listener_once_and_in_turn() {
        let mut ready = ReadyListeners::new(3);
        ready.mark(2);
        ready.mark(0);
        ready.mark(2);
        assert_eq!(ready.len(), 2);
        let first = ready.next();
        assert_eq!(first, Some(2));
        ready.later(2);
        assert_eq!(ready.next(), Some(0));
        ready.first_again(0);
        assert_eq!(ready.next(), Some(0));
        ready.drained(0);
        ready.mark_all();
        assert_eq!(ready.len(), 3, "1 and 0 join 2, which is still queued");
        assert_eq!(
            [ready.next(), ready.next(), ready.next()],
            [Some(2), Some(0), Some(1)]
        );
        for index in 0..3 {
            ready.drained(index);
        }
        assert!(ready.is_empty());
    }
}
