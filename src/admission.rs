//! Who is greeted, and with what: each listener's [`Policy`] (address lists, rate,
//! greet delay, pregreet action, deny message) and the loop's one per-listener table
//! of greetings and policies, whose `PolicyTable::admit` decides, once a
//! connection's client is known, what it gets: the greeting, the deny message, a greet
//! delay, or nothing.
//!
//! The table is rebuilt whole from each config, at start and at every reload, never
//! from the sockets a loop still has: a drain closes those while header waiters and
//! delayed clients still need their listener's policy (a PROXY client of a denied
//! network whose header completes after a reload in a drain is still denied).

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::AccessList;
use crate::close::CloseReason;
use crate::greeting::Greeting;
use crate::pass::{PassSettings, PassTable};
use crate::rate::{RateSettings, RateTable};
use crate::tarpit::{DripSettings, Tarpit};

#[cfg(test)]
mod tests;

/// A listener's access policy, checked in this order once its client is known: the
/// address list, the source's rate, (`--max-per-ip`, a limit of the server's), then
/// the greet delay (a passed source skips it; `--max-delayed`, a limit of the
/// server's, bounds it).
#[derive(Debug, Default)]
pub struct Policy {
    /// The entries (none: everyone is allowed); listeners that name the same lists
    /// share one table (a 500,000-entry deny file is read and held once).
    pub list: Arc<AccessList>,
    /// `--deny-message`: sent to a denied client, with the greeting's close policy;
    /// `None`: a denied client is closed at once, sent nothing.
    pub deny_message: Option<Greeting>,
    /// `--max-rate-per-ip`: each source's rate, shared by the workers (and kept
    /// across a reload that keeps its settings).
    pub rate: Option<Arc<RateTable>>,
    /// `--greet-delay`: how long the greeting waits after the client is known
    /// (zero: not at all).
    pub greet_delay: Duration,
    /// `--pregreet`: what happens to a client that sends data during the delay.
    pub pregreet: Pregreet,
    /// `--deny-action`: what a client the address list denies gets (closed, or
    /// trapped).
    pub deny_action: Action,
    /// `--rate-action`: what a client over its source's rate gets.
    pub rate_action: Action,
    /// The sources that waited out the delay silently, greeted at once for
    /// `--pass-ttl` (`None`: no delay, or `--pass-ttl 0s`); shared by the workers and
    /// kept across a reload that keeps its settings, as the rate table is.
    pub pass: Option<Arc<PassTable>>,
}

/// `--pregreet`: what happens to a client that sends data before its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Pregreet {
    /// Greeted when its delay is over, as any other (logged and counted).
    #[default]
    Greet,
    /// Closed at once without the greeting (reason `pregreet`).
    Drop,
    /// Trapped (`why=pregreet`) with its listener's drip settings, instead of
    /// greeted; when the tarpit is full, closed at once (reason `trap-full`).
    Tarpit,
}

/// `--deny-action`, `--rate-action`: what a client the policy refuses gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Action {
    /// Closed (a denied client: the deny message first, if there is one).
    #[default]
    Close,
    /// Trapped with its listener's drip settings (`why=deny` or `why=rate`); when
    /// the tarpit is full, closed at once (reason `trap-full`).
    Tarpit,
}

/// Why a client is trapped (the `TRAP` line's `why=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapWhy {
    /// A `--tarpit` listener traps every client.
    Listener,
    /// `--deny-action tarpit`.
    Deny,
    /// `--rate-action tarpit`.
    Rate,
    /// `--pregreet tarpit`.
    Pregreet,
}

impl TrapWhy {
    /// Its name in the `TRAP` line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TrapWhy::Listener => "listener",
            TrapWhy::Deny => "deny",
            TrapWhy::Rate => "rate",
            TrapWhy::Pregreet => "pregreet",
        }
    }
}

impl Policy {
    /// Whether it changes nothing for anyone (then the listener has no policy).
    pub fn is_open(&self) -> bool {
        self.list.is_empty() && self.rate.is_none() && self.greet_delay.is_zero()
    }

    /// Its rate table, if it has one made of `settings` (a reload keeps what it
    /// counted when the settings stay).
    pub fn rate_table_if(&self, settings: &RateSettings) -> Option<Arc<RateTable>> {
        self.rate
            .as_ref()
            .filter(|table| table.settings() == settings)
            .cloned()
    }

    /// Its pass table, if it has one made of `settings` (a reload keeps who passed
    /// when the settings stay).
    pub fn pass_table_if(&self, settings: &PassSettings) -> Option<Arc<PassTable>> {
        self.pass
            .as_ref()
            .filter(|table| table.settings() == settings)
            .cloned()
    }

    /// What it refuses `client` at `now`, if anything: the address list first (the
    /// deny message, if it has one; the trap with `--deny-action tarpit`), then the
    /// source's rate (the trap with `--rate-action tarpit`).
    #[inline]
    fn refuses(&self, client: IpAddr, now: Instant) -> Option<Verdict> {
        if !self.list.admits(client) {
            return Some(match (self.deny_action, &self.deny_message) {
                (Action::Tarpit, _) => Verdict::Trap(TrapWhy::Deny),
                (Action::Close, Some(_)) => Verdict::DenyMessage,
                (Action::Close, None) => Verdict::Refuse(CloseReason::Denied),
            });
        }
        let over_rate = self
            .rate
            .as_ref()
            .is_some_and(|rate| !rate.admits(client, now));
        over_rate.then_some(match self.rate_action {
            Action::Close => Verdict::Refuse(CloseReason::Rate),
            Action::Tarpit => Verdict::Trap(TrapWhy::Rate),
        })
    }
}

/// The server's own limits that a client's admission checks between its listener's
/// (kept by the held connections' slots: [`crate::slots::Slots`]).
pub(crate) trait ServerLimits {
    /// Whether `client`'s address may hold one more connection (`--max-per-ip`).
    fn admits_client(&self, client: SocketAddr) -> bool;
    /// Whether `--max-delayed` clients already wait out their greet delay.
    fn delay_full(&self) -> bool;
    /// Whether `client` may be trapped: fewer than `--max-trapped` are, and fewer
    /// than `--max-trapped-per-ip` from its address.
    fn admits_trapped(&self, client: SocketAddr) -> bool;
}

/// What the connections of one listener get.
#[derive(Debug)]
pub(crate) struct Served {
    /// Its greeting (shared, never copied).
    pub(crate) greeting: Greeting,
    /// Who it greets and how (`--allow`, `--deny`, rates, delays); `None`: everyone,
    /// at once.
    pub(crate) policy: Option<Arc<Policy>>,
    /// `--tarpit`: its clients are trapped instead of greeted (`None`: greeted).
    pub(crate) tarpit: Option<Arc<Tarpit>>,
    /// The trap of the clients its policy traps (`--deny-action`, `--rate-action`,
    /// `--pregreet tarpit`): a tarpit listener's own, else its `--drip` with nothing
    /// sent before the lines (`None`: its policy traps no one).
    pub(crate) trap: Option<Arc<Tarpit>>,
    /// How its trapped clients are dripped (also those trapped before a reload
    /// turned `--tarpit` off).
    pub(crate) drip: DripSettings,
}

/// What a connection whose client is now known gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its greeting, now.
    Greet,
    /// Its greeting after its greet delay; what a pregreeter gets.
    Delay(Pregreet),
    /// A denied client: the deny message instead of the greeting.
    DenyMessage,
    /// Nothing: closed at once for this reason.
    Refuse(CloseReason),
    /// Trapped (a `--tarpit` listener's client, or one its policy traps), dripped
    /// its listener's lead and lines (or greeting).
    Trap(TrapWhy),
}

/// [`PolicyTable::admit`]'s answer: the verdict, and the bytes the connection is to be
/// sent (its greeting, or for a denied client the deny message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission<'a> {
    /// What it gets.
    pub(crate) verdict: Verdict,
    /// What it is sent, unless it is refused.
    pub(crate) greeting: &'a Greeting,
}

/// The loop's one per-listener table, indexed by the listener's place in the
/// config's listeners.
#[derive(Debug)]
pub(crate) struct PolicyTable {
    served: Vec<Served>,
    /// Clients greeted at once because their source had passed (counted where the
    /// decision is made, which only reads the table).
    passed: Cell<u64>,
}

impl PolicyTable {
    /// The table of these listeners' entries, in their order (the config's
    /// listeners, whole: never the sockets a loop still has).
    pub(crate) fn new(served: impl IntoIterator<Item = Served>) -> Self {
        PolicyTable {
            served: served.into_iter().collect(),
            passed: Cell::new(0),
        }
    }

    /// Replaces the entries with a reload's (what was counted stays).
    pub(crate) fn replace(&mut self, served: impl IntoIterator<Item = Served>) {
        self.served = served.into_iter().collect();
    }

    /// Listener `listener`'s current greeting.
    #[inline]
    pub(crate) fn greeting(&self, listener: usize) -> &Greeting {
        &self.served[listener].greeting
    }

    /// Listener `listener`'s current policy, if it has one.
    #[inline]
    pub(crate) fn policy(&self, listener: usize) -> Option<&Policy> {
        self.served[listener].policy.as_deref()
    }

    /// How listener `listener`'s trapped clients are dripped now.
    #[inline]
    pub(crate) fn drip(&self, listener: usize) -> &DripSettings {
        &self.served[listener].drip
    }

    /// The trap of listener `listener`'s policy-trapped clients, if it has one now.
    #[inline]
    pub(crate) fn trap(&self, listener: usize) -> Option<&Arc<Tarpit>> {
        self.served[listener].trap.as_ref()
    }

    /// Listener `listener`'s current greet delay (zero: none).
    pub(crate) fn greet_delay(&self, listener: usize) -> Duration {
        self.policy(listener)
            .map_or(Duration::ZERO, |policy| policy.greet_delay)
    }

    /// How many clients were greeted at once because their source had passed.
    pub(crate) fn passed(&self) -> u64 {
        self.passed.get()
    }

    /// What a connection of `listener` whose client is now `client` gets at `now`, and
    /// the bytes it is sent: `greeting` (its listener's now, or the one a held
    /// connection kept since it was accepted) or, for a denied client, the deny
    /// message. The checks, in their documented order: the address list, the source's
    /// rate, `--max-per-ip` (`limits`), the greet delay (skipped by a passed source,
    /// bounded by `--max-delayed`). The one place a greeting is chosen.
    // Always inlined: on the fast path the compiler then drops the checks a listener
    // without a policy never makes.
    #[inline(always)]
    pub(crate) fn admit<'a>(
        &'a self,
        listener: usize,
        greeting: &'a Greeting,
        client: SocketAddr,
        now: Instant,
        limits: &impl ServerLimits,
    ) -> Admission<'a> {
        let served = &self.served[listener];
        // A tarpit listener's clients go their own way: one branch on a flag of the
        // entry already loaded for its policy.
        if let Some(tarpit) = &served.tarpit {
            return self.admit_to_tarpit(served, tarpit, greeting, client, now, limits);
        }
        let policy = served.policy.as_deref();
        let verdict = self.verdict(policy, client, now, limits);
        let greeting = match verdict {
            // Only a policy with a deny message gives this verdict.
            Verdict::DenyMessage => policy
                .and_then(|policy| policy.deny_message.as_ref())
                .unwrap_or(greeting),
            // Only a policy that traps gives this one.
            Verdict::Trap(_) => {
                return self.admit_trapped(served, verdict, greeting, client, limits)
            }
            _ => greeting,
        };
        Admission { verdict, greeting }
    }

    /// A client that listener entry `served`'s policy traps (`verdict`): sent its
    /// trap's lead, unless `--max-trapped` (or `--max-trapped-per-ip`) are trapped
    /// already: then closed at once (reason `trap-full`), never greeted.
    #[cold]
    #[inline(never)]
    fn admit_trapped<'a>(
        &'a self,
        served: &'a Served,
        verdict: Verdict,
        greeting: &'a Greeting,
        client: SocketAddr,
        limits: &impl ServerLimits,
    ) -> Admission<'a> {
        match &served.trap {
            Some(trap) if limits.admits_trapped(client) => Admission {
                verdict,
                greeting: &trap.lead,
            },
            _ => Admission {
                verdict: Verdict::Refuse(CloseReason::TrapFull),
                greeting,
            },
        }
    }

    /// [`PolicyTable::admit`] for a tarpit listener's client: its policy's verdict,
    /// but a client it would greet (at once or after a delay) is trapped instead,
    /// sent `tarpit`'s lead, unless `--max-trapped` (or `--max-trapped-per-ip`) are
    /// trapped already.
    #[cold]
    #[inline(never)]
    fn admit_to_tarpit<'a>(
        &'a self,
        served: &'a Served,
        tarpit: &'a Tarpit,
        greeting: &'a Greeting,
        client: SocketAddr,
        now: Instant,
        limits: &impl ServerLimits,
    ) -> Admission<'a> {
        let policy = served.policy.as_deref();
        // An address an allow entry matches is never trapped: greeted the ordinary
        // way (its policy's verdict, a delay included).
        let allowed = policy.is_some_and(|policy| policy.list.allows(client.ip()));
        match self.verdict(policy, client, now, limits) {
            verdict @ (Verdict::Greet | Verdict::Delay(_)) if allowed => {
                Admission { verdict, greeting }
            }
            Verdict::Greet | Verdict::Delay(_) if limits.admits_trapped(client) => Admission {
                verdict: Verdict::Trap(TrapWhy::Listener),
                greeting: &tarpit.lead,
            },
            Verdict::Greet | Verdict::Delay(_) => Admission {
                verdict: Verdict::Refuse(CloseReason::TrapFull),
                greeting,
            },
            Verdict::DenyMessage => Admission {
                verdict: Verdict::DenyMessage,
                greeting: policy
                    .and_then(|policy| policy.deny_message.as_ref())
                    .unwrap_or(greeting),
            },
            verdict @ Verdict::Trap(_) => {
                self.admit_trapped(served, verdict, greeting, client, limits)
            }
            verdict => Admission { verdict, greeting },
        }
    }

    /// The verdict of [`PolicyTable::admit`].
    #[inline(always)]
    fn verdict(
        &self,
        policy: Option<&Policy>,
        client: SocketAddr,
        now: Instant,
        limits: &impl ServerLimits,
    ) -> Verdict {
        if let Some(refused) = policy.and_then(|policy| policy.refuses(client.ip(), now)) {
            return refused;
        }
        if !limits.admits_client(client) {
            return Verdict::Refuse(CloseReason::PerIpLimit);
        }
        match policy {
            Some(policy) if !policy.greet_delay.is_zero() => {
                self.delay_verdict(policy, client.ip(), now, limits)
            }
            _ => Verdict::Greet,
        }
    }

    /// What a client at `ip` of a listener with a greet delay gets: its greeting at
    /// once if its source passed, else the delay if fewer than `--max-delayed` wait
    /// theirs, else nothing (postscreen's pre-queue limit): a flood of silent
    /// clients fills the delay's slots, never the greeting's.
    // Not inlined: the fast path of a listener without a delay never calls it.
    #[inline(never)]
    fn delay_verdict(
        &self,
        policy: &Policy,
        ip: IpAddr,
        now: Instant,
        limits: &impl ServerLimits,
    ) -> Verdict {
        if policy
            .pass
            .as_ref()
            .is_some_and(|pass| pass.passes(ip, now))
        {
            self.passed.set(self.passed.get() + 1);
            return Verdict::Greet;
        }
        if limits.delay_full() {
            return Verdict::Refuse(CloseReason::DelayFull);
        }
        Verdict::Delay(policy.pregreet)
    }
}
