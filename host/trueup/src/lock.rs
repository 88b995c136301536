//! The one way this crate takes a `std::sync::Mutex`.
//!
//! Everything guarded by a mutex here (caches, counters, buckets, the
//! debouncer's marks) is plain data that is consistent after every
//! statement, so a panic in another thread cannot leave it half-written:
//! a poisoned lock is taken as it is rather than spreading the panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poison (see the module documentation).
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
