//! Taking a `std::sync` lock, the one way the service does it: a poisoned lock is taken
//! all the same.
//!
//! A lock is poisoned when a thread panicked while holding it. Nothing the service keeps
//! behind a lock is left half-changed by a panic: each change is computed first and
//! written in one step at the end, so the data is still consistent enough to serve, and
//! carrying on beats failing every later request. No lock here is ever held across an
//! `.await` (clippy's `await_holding_lock` checks).

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The value inside a mutex held alone (`&mut`), poisoned or not.
pub fn get_mut<T: ?Sized>(mutex: &mut Mutex<T>) -> &mut T {
    mutex.get_mut().unwrap_or_else(PoisonError::into_inner)
}
