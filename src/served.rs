//! What each listener's connections get: a loop's one per-listener table (the
//! greeting and the access policy), indexed by the listener's place in
//! [`Config::listeners`]. It is built from a whole [`Config`], at start and at every
//! reload, never from the sockets a loop still has (a drain closes those while header
//! waiters and delayed clients still need their listener's policy).

use std::sync::Arc;

use crate::access::Policy;
use crate::config::Config;
use crate::greeting::Greeting;

/// What the connections of one listener get.
#[derive(Debug)]
pub(crate) struct Served {
    /// Its greeting (shared, never copied).
    pub(crate) greeting: Greeting,
    /// Who it greets and how (`--allow`, `--deny`, rates, delays); `None`: everyone,
    /// at once.
    pub(crate) policy: Option<Arc<Policy>>,
}

/// The table of `config`: one entry per listener, in its order.
pub(crate) fn table(config: &Config) -> Vec<Served> {
    config
        .listeners
        .iter()
        .map(|listener| Served {
            greeting: listener.greeting.clone(),
            policy: listener.policy.clone(),
        })
        .collect()
}
