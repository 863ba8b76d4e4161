//! The new process's side of an upgrade's handover: once it has said `ready`, the
//! report channel brings the old process's trapped connections, which are given to
//! the workers in turn, until the old process closes it.

use std::io;
use std::os::unix::net::UnixStream;

use mio::{Events, Interest, Registry, Token};

use crate::upgrade::handover::HandedReceiver;
use crate::workers::RunningWorkers;

/// The token of the channel the trapped connections come on, in the supervisor's
/// poll (beside its waker's and an upgrade's report channel's).
const HANDED: Token = Token(2);

/// The channel trapped connections are handed over on, while it is open.
#[derive(Debug)]
pub(super) struct Adopting {
    channel: mio::net::UnixStream,
    receiver: HandedReceiver,
    /// The worker the next one goes to.
    next_worker: usize,
    /// How many have been given to the workers.
    adopted: usize,
}

/// What a handover brought, once the old process has closed the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Adopted {
    /// Trapped connections given to the workers.
    pub(super) adopted: usize,
    /// Sockets closed for a record this version cannot read (or not their own).
    pub(super) unreadable: usize,
}

impl Adopting {
    /// Reads `channel` (the report channel, after `ready`) as `HANDED` in
    /// `registry`'s poll.
    ///
    /// # Errors
    /// If it cannot be made nonblocking or registered.
    pub(super) fn new(channel: UnixStream, registry: &Registry) -> io::Result<Adopting> {
        channel.set_nonblocking(true)?;
        let mut channel = mio::net::UnixStream::from_std(channel);
        registry.register(&mut channel, HANDED, Interest::READABLE)?;
        Ok(Adopting {
            channel,
            receiver: HandedReceiver::default(),
            next_worker: 0,
            adopted: 0,
        })
    }

    /// After a wake-up (`events`: the poll's): the trapped connections the old
    /// process handed over since, given to `workers` in turn; once it has closed the
    /// channel (then deregistered from `registry`), what came.
    pub(super) fn take_handed(
        &mut self,
        events: &Events,
        registry: &Registry,
        workers: &RunningWorkers,
    ) -> Option<Adopted> {
        if !events.iter().any(|event| event.token() == HANDED) {
            return None;
        }
        let (handed, ended) = self.receiver.receive(&self.channel);
        self.adopted += handed.len();
        if !handed.is_empty() {
            self.next_worker = workers.adopt(handed, self.next_worker);
        }
        if !ended {
            return None;
        }
        let _ = registry.deregister(&mut self.channel);
        Some(Adopted {
            adopted: self.adopted,
            unreadable: self.receiver.unreadable,
        })
    }
}
