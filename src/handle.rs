//! The handle through which other threads steer a running [`crate::Server`] and read
//! what it has done: the supervisor's signal thread, tests, embedding programs.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::config::Config;
use crate::geoip::TrapsByCountry;
use crate::locking::lock;
use crate::totals::Totals;
use crate::upgrade::handover::{Handed, SharedChannel};

/// A server's counters and state, as of its last loop round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What the server has done so far.
    pub totals: Totals,
    /// Connections held right now (in a greet delay, writing, flushing or
    /// lingering).
    pub held: usize,
    /// Of those, the ones in their greet delay (held under `--max-delayed`, not
    /// against `--max-connections`).
    pub delayed: usize,
    /// Of those, the trapped ones (`--tarpit`: held under `--max-trapped`, not
    /// against `--max-connections`).
    pub trapped: usize,
    /// Whether accepting is paused for lack of descriptors or memory.
    pub accept_paused: bool,
    /// Whether a shutdown has begun (the listener is closed).
    pub draining: bool,
    /// Whether a stop was asked and `--shutdown-delay` runs: still accepting, but
    /// `/healthz` answers 503 so that load balancers stop sending.
    pub stopping: bool,
    /// The size of the greeting new connections of the first listener get.
    pub greeting_bytes: usize,
    /// The connection limit (`--max-connections`) in force.
    pub max_connections: usize,
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
    /// Set when `new_config` holds a config the loop has not taken yet, so that the
    /// loop checks a flag, not a lock, every round.
    config_pending: AtomicBool,
    /// A reload's config for new connections, handed over by
    /// [`ServerHandle::reconfigure`].
    new_config: Mutex<Option<Arc<Config>>>,
    /// The watchdog's last ping ([`ServerHandle::ping`]) and the last one the loop
    /// answered: equal once the loop has run a round since.
    ping: AtomicU64,
    pong: AtomicU64,
    /// An upgrade's report channel, once its new process serves: the loop hands its
    /// trapped connections over on it before it drains.
    handover: Mutex<Option<SharedChannel>>,
    /// Set when `adopted` holds connections the loop has not taken yet.
    adoption_pending: AtomicBool,
    /// Trapped connections handed over by the process that upgraded to this one.
    adopted: Mutex<Vec<Handed>>,
    /// Set once the loop's thread has ended: it answers no ping, and is not waited
    /// for (a loop that finished its drain is not stuck).
    ended: AtomicBool,
    /// The loop's trap counters by country, which it adds to as it traps and drips
    /// (not in the snapshot: a few kilobytes copied each round for nothing).
    traps: Arc<TrapsByCountry>,
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

    /// The loop's trap counters by country (`/metrics` reads them).
    pub fn traps_by_country(&self) -> &Arc<TrapsByCountry> {
        &self.control.traps
    }

    /// Wakes the loop for a round (to look at shared state another loop changed).
    pub(crate) fn wake(&self) -> io::Result<()> {
        self.waker.wake()
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

    /// Makes `config`'s greetings and policies (per listener, by its index in
    /// [`Config::listeners`], which a reload keeps: see
    /// [`crate::config::build()`]), limits, timeouts and
    /// logging the ones new connections get, from the loop's next round on, all at
    /// once; a connection already held finishes with the greeting it started with.
    /// What needs new sockets (addresses, backlog, send buffer, PROXY or not) is not
    /// changed.
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken.
    pub fn reconfigure(&self, config: Arc<Config>) -> io::Result<()> {
        match self.control.new_config.lock() {
            Ok(mut slot) => *slot = Some(config),
            Err(poisoned) => *poisoned.into_inner() = Some(config),
        }
        self.control.config_pending.store(true, Ordering::Release);
        self.waker.wake()
    }

    /// Like [`ServerHandle::shutdown`], but first hands the trapped connections to
    /// an upgrade's new process over `channel` (see [`crate::upgrade`]), so that the
    /// drain does not close them.
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken.
    pub fn hand_over_then_drain(&self, channel: SharedChannel) -> io::Result<()> {
        *lock(&self.control.handover) = Some(channel);
        self.raise(StopRequest::Drain)
    }

    /// The channel to hand trapped connections over on, if an upgrade asked (for the
    /// loop, as it begins its drain).
    pub(crate) fn take_handover(&self) -> Option<SharedChannel> {
        lock(&self.control.handover).take()
    }

    /// Gives the loop trapped connections handed over by the process that upgraded
    /// to this one, to go on trapping.
    ///
    /// # Errors
    /// Fails only if the loop cannot be woken.
    pub fn adopt(&self, handed: Vec<Handed>) -> io::Result<()> {
        lock(&self.control.adopted).extend(handed);
        self.control.adoption_pending.store(true, Ordering::Release);
        self.waker.wake()
    }

    /// The handed connections given since the last call (for the loop: a flag, not
    /// a lock, every round).
    pub(crate) fn take_adopted(&self) -> Option<Vec<Handed>> {
        if !self.control.adoption_pending.load(Ordering::Relaxed)
            || !self.control.adoption_pending.swap(false, Ordering::Acquire)
        {
            return None;
        }
        Some(std::mem::take(&mut *lock(&self.control.adopted)))
    }

    /// The config handed over since the last call, if any (for the loop).
    pub(crate) fn take_new_config(&self) -> Option<Arc<Config>> {
        // A plain load first: this runs every round, and a swap is a locked write.
        if !self.control.config_pending.load(Ordering::Relaxed)
            || !self.control.config_pending.swap(false, Ordering::Acquire)
        {
            return None;
        }
        match self.control.new_config.lock() {
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

    /// Asks the loop to show that it still runs: it answers `seq` in its next round
    /// (see [`ServerHandle::answered`]), woken for it if idle.
    ///
    /// # Errors
    /// If the loop cannot be woken (it has stopped).
    pub fn ping(&self, seq: u64) -> io::Result<()> {
        self.control.ping.store(seq, Ordering::Release);
        self.waker.wake()
    }

    /// Whether the loop has run a round since ping `seq`.
    pub fn answered(&self, seq: u64) -> bool {
        self.control.pong.load(Ordering::Acquire) >= seq
    }

    /// Whether the loop's thread has ended, however it ended.
    pub fn ended(&self) -> bool {
        self.control.ended.load(Ordering::Acquire)
    }

    /// Records that the loop's thread has ended, however it ended.
    pub(crate) fn mark_ended(&self) {
        self.control.ended.store(true, Ordering::Release);
    }

    /// Answers the latest ping (each round; two plain loads when nothing is asked).
    #[inline]
    pub(crate) fn answer_ping(&self) {
        let ping = self.control.ping.load(Ordering::Acquire);
        if self.control.pong.load(Ordering::Relaxed) != ping {
            self.control.pong.store(ping, Ordering::Release);
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
