//! A connection in its greet delay (`--greet-delay`): its greeting held back, and a
//! client that speaks meanwhile a pregreeter, greeted, dropped or trapped as
//! `--pregreet` says. The phase itself is [`Phase::Delaying`], beside the others.

use super::{Connection, Phase, Standing, Step};
use crate::admission::Pregreet;
use crate::close::CloseReason;

impl Connection {
    /// Holds back the greeting of a fresh connection for its `--greet-delay`
    /// (`pregreet`: what a pregreeter gets). Input that came with its PROXY header
    /// was sent before the greeting: it makes the client a pregreeter at once.
    pub(crate) fn delay(&mut self, pregreet: Pregreet) -> Step {
        if let Phase::Writing {
            sent: 0,
            header_len,
        } = self.phase
        {
            self.phase = Phase::Delaying {
                header_len,
                pregreet,
            };
        }
        self.pregreeting(pregreet).unwrap_or(Step::Wait)
    }

    /// A client that has sent input while its greeting is held back is a pregreeter;
    /// with `--pregreet drop` it is closed (that close), with `--pregreet tarpit` it
    /// is to be trapped ([`Step::Trap`]).
    pub(super) fn pregreeting(&mut self, pregreet: Pregreet) -> Option<Step> {
        if self.input == 0 {
            return None;
        }
        self.standing = Standing::Pregreeted;
        match pregreet {
            Pregreet::Greet => None,
            Pregreet::Drop => Some(Step::Close(CloseReason::Pregreet)),
            Pregreet::Tarpit => Some(Step::Trap),
        }
    }

    /// Whether it sent data during its `--greet-delay`.
    pub(crate) fn pregreeted(&self) -> bool {
        self.standing == Standing::Pregreeted
    }
}
