//! Locking shared state that holds plain data.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data even if a panic elsewhere poisoned it:
/// every mutex in this crate guards plain data (declarations, memos, the
/// cache of compiled versions), so a panic elsewhere must not make the
/// rules unusable.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
