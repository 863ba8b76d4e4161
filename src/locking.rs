//! A mutex locked for what it holds whether or not a thread panicked while holding
//! it: the values shared here (a table, a queue, a channel) stay valid across a
//! panicking holder, and a server thread must not panic in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, whose contents stay valid even if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
