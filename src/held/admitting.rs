//! A connection whose client is now known taking its admission: what its listener's
//! policy and the server's limits give it ([`PolicyTable::admit`]), and the one
//! place its [`Verdict`] becomes a step; and the table's rows, from each config.

use std::net::SocketAddr;
use std::time::Instant;

use super::traps::{trap, trap_pregreeter};
use crate::admission::{PolicyTable, Served, Verdict};
use crate::config::Config;
use crate::connection::{Connection, Step};
use crate::greeting::Greeting;
use crate::slots::Slots;

/// The entries of the loop's policy table, from `config`'s listeners, in their order.
pub(super) fn served(config: &Config) -> impl Iterator<Item = Served> + '_ {
    config.listeners.iter().map(|listener| Served {
        greeting: listener.greeting.clone(),
        policy: listener.policy.clone(),
        tarpit: listener.tarpit.clone(),
        trap: listener.trap.clone(),
        drip: listener.drip,
    })
}

/// A fresh connection whose client is now `client`, its `ACCEPT` line logged: what its
/// listener's policy and the server's limits give it ([`PolicyTable::admit`]), as its
/// step and the bytes it is being sent.
#[inline]
pub(super) fn greet<'a>(
    table: &'a PolicyTable,
    slots: &Slots,
    conn: &mut Connection,
    client: SocketAddr,
    greeting: &'a Greeting,
    now: Instant,
) -> (Step, &'a Greeting) {
    let admission = table.admit(conn.listener(), greeting, client, now, slots);
    match take_verdict(table, conn, admission.verdict, admission.greeting) {
        // Input that came with its PROXY header, `--pregreet tarpit`.
        Some(Step::Trap) => match trap_pregreeter(table, slots, conn) {
            (step, Some(lead)) => (step, lead),
            (step, None) => (step, admission.greeting),
        },
        Some(step) => (step, admission.greeting),
        None => (conn.advance(admission.greeting), admission.greeting),
    }
}

/// The one place a connection whose client is now known takes its [`Verdict`]: a
/// delay, a denial or a trap changes its phase, a refusal closes it. `Some`: the step
/// that decides (a refusal's close, a delay's wait, a trap's first drip); `None`: it
/// is to be advanced with `sent`, the bytes the admission chose.
#[inline]
pub(super) fn take_verdict(
    table: &PolicyTable,
    conn: &mut Connection,
    verdict: Verdict,
    sent: &Greeting,
) -> Option<Step> {
    match verdict {
        Verdict::Greet => None,
        Verdict::Delay(pregreet) => Some(conn.delay(pregreet)),
        Verdict::DenyMessage => {
            conn.deny();
            None
        }
        Verdict::Refuse(reason) => Some(Step::Close(reason)),
        Verdict::Trap(why) => Some(trap(table, conn, sent, why)),
    }
}
