//! The new process's side of an upgrade's handover: once it has said `ready`, the
//! report channel brings the old process's trapped connections, which are given to
//! the workers in turn, until the old process closes it.

use std::os::unix::net::UnixStream;

use log::{info, warn};
use mio::{Events, Interest, Registry, Token};

use crate::upgrade::handover::HandedReceiver;

use super::supervised::{Supervised, LOG_TARGET};

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

impl Adopting {
    /// Reads `channel` (the report channel, after `ready`) as `HANDED` in `registry`'s
    /// poll; `None` (with a warning) if it cannot.
    pub(super) fn new(channel: UnixStream, registry: &Registry) -> Option<Adopting> {
        let registered = channel.set_nonblocking(true);
        let mut channel = mio::net::UnixStream::from_std(channel);
        let registered =
            registered.and_then(|()| registry.register(&mut channel, HANDED, Interest::READABLE));
        if let Err(err) = registered {
            warn!(
                target: LOG_TARGET,
                "upgrade: cannot read the old process's trapped connections ({err}); \
                 it keeps them until it drains"
            );
            return None;
        }
        Some(Adopting {
            channel,
            receiver: HandedReceiver::default(),
            next_worker: 0,
            adopted: 0,
        })
    }
}

impl Supervised {
    /// After a wake-up (`events`: the poll's): the trapped connections the old
    /// process handed over since, given to the workers; once it closes the channel,
    /// one line says how many came.
    pub(super) fn adopt_handed(&mut self, events: &Events, registry: &Registry) {
        let Some(adopting) = &mut self.adopting else {
            return;
        };
        if !events.iter().any(|event| event.token() == HANDED) {
            return;
        }
        let (handed, ended) = adopting.receiver.receive(&adopting.channel);
        adopting.adopted += handed.len();
        if !handed.is_empty() {
            adopting.next_worker = self.workers.adopt(handed, adopting.next_worker);
        }
        if !ended {
            return;
        }
        let _ = registry.deregister(&mut adopting.channel);
        let (adopted, unreadable) = (adopting.adopted, adopting.receiver.unreadable);
        if unreadable > 0 {
            warn!(
                target: LOG_TARGET,
                "upgrade: {unreadable} handed trapped connections came with a record this \
                 version cannot read (or not with their own socket); closed them"
            );
        }
        if adopted > 0 {
            info!(
                target: LOG_TARGET,
                "upgrade: took over {adopted} trapped connections from the old process"
            );
        }
        self.adopting = None;
    }
}
