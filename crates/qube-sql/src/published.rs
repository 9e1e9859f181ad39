//! Values a running statement publishes in thread-locals for code that has
//! no path to its session: the session registry and pid (pg_stat_activity,
//! pg_backend_pid, the signal functions) and the settings lookup
//! (`current_setting`, pg_settings).
//!
//! A published value stays in place after its statement ends. The next
//! statement of the same session on the same thread — the usual case, an
//! embedded session or a connection's task — finds it there (the same
//! `Arc`) and publishes nothing: no reference count changes hands. (Each
//! change is an atomic read-modify-write; publishing and taking back two
//! values cost four of them per statement, on VMs where one costs ~10 ns.)
//! A statement of another session replaces the value, and keeps it in
//! place in turn, unless it runs *inside* a statement (a row callback of
//! the embedded API that runs a statement of another session): then it
//! puts back what it replaced when it ends, so the outer statement goes on
//! seeing its own session.
//!
//! Code outside any statement may find the last statement's values; only
//! code that statements run reads them.

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

thread_local! {
    /// How many statements run on this thread (more than one: nested).
    static RUNNING: Cell<u32> = const { Cell::new(0) };
}

/// What `publish` replaced, put back by `restore` (nested statements
/// only).
#[must_use]
pub(crate) struct Replaced<T>(Option<Option<T>>);

/// Publishes a value in `slot` unless the value there is the same
/// (`same`); `make` builds the value to publish (a reference-count
/// increment).
pub(crate) fn publish<T: 'static>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    same: impl FnOnce(&T) -> bool,
    make: impl FnOnce() -> T,
) -> Replaced<T> {
    slot.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_some_and(same) {
            return Replaced(None);
        }
        let prev = c.replace(make());
        // Outside any statement what was there is left behind, not kept.
        Replaced((RUNNING.get() > 0).then_some(prev))
    })
}

/// Puts back what `publish` replaced inside another statement.
pub(crate) fn restore<T: 'static>(slot: &'static LocalKey<RefCell<Option<T>>>, r: Replaced<T>) {
    if let Some(prev) = r.0 {
        slot.with(|c| *c.borrow_mut() = prev);
    }
}

/// Counts a statement as running on this thread while `f` runs (see
/// `publish`). Call it after publishing the statement's values.
pub(crate) fn running<T>(f: impl FnOnce() -> T) -> T {
    RUNNING.set(RUNNING.get() + 1);
    let out = f();
    RUNNING.set(RUNNING.get() - 1);
    out
}
