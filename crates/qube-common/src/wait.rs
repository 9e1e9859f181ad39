//! The places where an engine thread waits for something other than the
//! CPU: a row lock held by another transaction, the WAL's fsync at commit,
//! `pg_sleep`. Every such wait goes through [`wait`].
//!
//! Why: the wire server runs short statements on its async runtime's own
//! threads instead of handing each one to a blocking thread (two thread
//! hand-offs per statement cost more than a point select). A statement
//! that then waits must not hold that runtime thread: with two of them
//! waiting for a lock whose holder's COMMIT is queued behind them, nothing
//! would run. So the server installs a *hook* for the duration of such a
//! statement ([`with_hook`]); `wait` passes the waiting closure to it
//! (tokio's `block_in_place`, which moves the runtime's other work to
//! another thread first). Outside a hook, `wait` just runs the closure.
//!
//! `wait` also adds the time it spent to a per-thread total
//! ([`waited`]), so that the server can tell a statement that computed for
//! long from one that waited for long.
//!
//! The hook is a plain function pointer in a thread-local: no allocation
//! and no lock on the path, and the engine knows nothing of the runtime.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Runs a wait (the closure) so that the caller's runtime can go on
/// meanwhile. Called with the hook removed, so a wait inside a wait runs
/// plainly.
pub type Hook = fn(&mut dyn FnMut());

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
    static WAITED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f`, which waits (for a lock, an fsync, a timer), through the
/// thread's hook if one is installed.
pub fn wait<R>(f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = match HOOK.with(|h| h.take()) {
        None => f(),
        Some(hook) => {
            let mut f = Some(f);
            let mut r = None;
            hook(&mut || {
                if let Some(f) = f.take() {
                    r = Some(f());
                }
            });
            HOOK.with(|h| h.set(Some(hook)));
            match r {
                Some(r) => r,
                // A hook must call its closure; one that did not is a bug
                // in the server, and running the wait here is still right.
                None => (f.take().expect("closure not taken"))(),
            }
        }
    };
    let spent = start.elapsed();
    WAITED.with(|w| w.set(w.get() + spent));
    r
}

/// Runs `f` with `hook` installed on this thread (restoring what was
/// there before, also if `f` panics).
pub fn with_hook<R>(hook: Hook, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOOK.with(|h| h.set(self.0));
        }
    }
    let _restore = Restore(HOOK.with(|h| h.replace(Some(hook))));
    f()
}

/// The time this thread has spent in [`wait`] so far (a running total:
/// subtract two readings).
pub fn waited() -> Duration {
    WAITED.with(|w| w.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static CALLS: Cell<u32> = const { Cell::new(0) };
    }

    fn counting(f: &mut dyn FnMut()) {
        CALLS.with(|c| c.set(c.get() + 1));
        // A wait inside the hook's wait runs without the hook.
        assert_eq!(wait(|| 5), 5);
        f();
    }

    #[test]
    fn waits_run_through_the_hook_only_while_it_is_installed() {
        assert_eq!(wait(|| 1), 1);
        assert_eq!(CALLS.with(|c| c.get()), 0);
        let r = with_hook(counting, || wait(|| 2) + wait(|| 3));
        assert_eq!(r, 5);
        assert_eq!(CALLS.with(|c| c.get()), 2);
        assert_eq!(wait(|| 4), 4);
        assert_eq!(CALLS.with(|c| c.get()), 2, "the hook is gone after with_hook");
    }

    #[test]
    fn time_spent_waiting_is_counted() {
        let before = waited();
        wait(|| std::thread::sleep(Duration::from_millis(20)));
        assert!(waited() - before >= Duration::from_millis(20));
    }

    #[test]
    fn the_hook_is_restored_after_a_panic() {
        let r = std::panic::catch_unwind(|| with_hook(counting, || panic!("boom")));
        assert!(r.is_err());
        let before = CALLS.with(|c| c.get());
        wait(|| ());
        assert_eq!(CALLS.with(|c| c.get()), before);
    }
}
