//! The handle through which other threads steer a running [`crate::Server`] and read
//! what it has done: the supervisor's signal thread, tests, embedding programs.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::totals::Totals;

/// A server's counters and state, as of its last loop round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What the server has done so far.
    pub totals: Totals,
    /// Connections held right now (writing, flushing or lingering).
    pub held: usize,
    /// Whether accepting is paused for lack of descriptors or memory.
    pub accept_paused: bool,
    /// Whether a shutdown has begun (the listener is closed).
    pub draining: bool,
    /// The size of the greeting new connections get.
    pub greeting_bytes: usize,
}

/// What has been asked of the server's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StopRequest {
    /// Keep serving.
    None = 0,
    /// Stop accepting and drain within the drain timeout.
    Drain = 1,
    /// Stop accepting and close what is in flight at once.
    Now = 2,
}

/// Shared between the loop and its handles.
#[derive(Debug, Default)]
struct Control {
    /// A `StopRequest`; only ever raised.
    stop: AtomicU8,
    /// Published by the loop once per round: one uncontended lock per round, not per
    /// connection.
    snapshot: Mutex<Snapshot>,
    /// Set when `new_greeting` holds a greeting the loop has not taken yet, so that
    /// the loop checks a flag, not a lock, every round.
    greeting_pending: AtomicBool,
    /// A greeting for new connections, handed over by [`ServerHandle::replace_greeting`].
    new_greeting: Mutex<Option<Arc<[u8]>>>,
}

/// Steers a running server from any thread: shut it down, or read its totals.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    control: Arc<Control>,
    /// Wakes the loop from `epoll_wait` so it sees a request at once.
    waker: Arc<Waker>,
}

impl ServerHandle {
    pub(crate) fn new(waker: Waker) -> Self {
        ServerHandle {
            control: Arc::default(),
            waker: Arc::new(waker),
        }
    }

    /// Stops accepting, lets in-flight greetings finish within the drain timeout, then
    /// makes [`crate::Server::run`] return.
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken (its poll is gone).
    pub fn shutdown(&self) -> io::Result<()> {
        self.raise(StopRequest::Drain)
    }

    /// Like [`ServerHandle::shutdown`], but closes in-flight connections at once
    /// instead of waiting for them (counted as `drain`).
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken.
    pub fn stop_now(&self) -> io::Result<()> {
        self.raise(StopRequest::Now)
    }

    /// Makes `greeting` the one new connections get, from the loop's next round on; a
    /// connection already being greeted finishes with the bytes it started with.
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken.
    pub fn replace_greeting(&self, greeting: Arc<[u8]>) -> io::Result<()> {
        match self.control.new_greeting.lock() {
            Ok(mut slot) => *slot = Some(greeting),
            Err(poisoned) => *poisoned.into_inner() = Some(greeting),
        }
        self.control.greeting_pending.store(true, Ordering::Release);
        self.waker.wake()
    }

    /// The greeting handed over since the last call, if any (for the loop).
    pub(crate) fn take_new_greeting(&self) -> Option<Arc<[u8]>> {
        // A plain load first: this runs every round, and a swap is a locked write.
        if !self.control.greeting_pending.load(Ordering::Relaxed)
            || !self.control.greeting_pending.swap(false, Ordering::Acquire)
        {
            return None;
        }
        match self.control.new_greeting.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// The server's totals and held connections as of its last loop round.
    pub fn snapshot(&self) -> Snapshot {
        match self.control.snapshot.lock() {
            Ok(snapshot) => *snapshot,
            // Only a panicking loop can poison it; its last figures are still valid.
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn raise(&self, request: StopRequest) -> io::Result<()> {
        self.control.stop.fetch_max(request as u8, Ordering::SeqCst);
        self.waker.wake()
    }

    pub(crate) fn requested(&self) -> StopRequest {
        match self.control.stop.load(Ordering::SeqCst) {
            0 => StopRequest::None,
            1 => StopRequest::Drain,
            _ => StopRequest::Now,
        }
    }

    pub(crate) fn publish(&self, snapshot: Snapshot) {
        match self.control.snapshot.lock() {
            Ok(mut published) => *published = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}
