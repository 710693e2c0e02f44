//! Poison-tolerant locking.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data a panic cannot leave inconsistent (each holder makes its changes
/// in one go), recovering it if a panicking holder poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
