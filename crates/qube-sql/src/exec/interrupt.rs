//! Stopping a running statement: cancellation (PostgreSQL's CancelRequest,
//! `pg_cancel_backend`) and `statement_timeout`.
//!
//! A `Session` owns a cancel flag; `Session::canceller` hands out a
//! `Canceller` that another thread (the server's connection task) sets.
//! Before each statement the session clears the flag and publishes it, with
//! the statement's deadline, in a thread-local (statements run
//! synchronously on the caller's thread, as the time zone and `work_mem`
//! do); every `Ctx` takes them when created. Operators call `Ctx::tick`
//! once per row; every 1,024 ticks it reads the flag and the clock, and
//! the statement fails with 57014 as in PostgreSQL ("canceling statement
//! due to user request" / "… due to statement timeout"). The transaction
//! is then failed like after any other error.
//!
//! The flag is the session's `activity::Activity::interrupt`: 1 cancels
//! the running statement (cleared when the next one starts), 2 terminates
//! the session (`pg_terminate_backend`: 57P01, and it stays set).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use qube_common::{Error, Result};

/// Cancels the statement its session is running (if any) from any thread.
#[derive(Clone, Debug, Default)]
pub struct Canceller(pub(crate) Arc<AtomicU8>);

impl Canceller {
    pub fn cancel(&self) {
        let _ = self.0.compare_exchange(
            crate::activity::INTERRUPT_NONE,
            crate::activity::INTERRUPT_CANCEL,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

thread_local! {
    static CURRENT: RefCell<(Option<Arc<AtomicU8>>, Option<Instant>)> =
        const { RefCell::new((None, None)) };
}

/// Publishes the running statement's cancel flag and deadline. The same
/// flag as the one published (the same session's next statement) is left
/// as it is: no reference count changes hands.
pub fn set_current(flag: Option<&Arc<AtomicU8>>, deadline: Option<Instant>) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        match (&c.0, flag) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            _ => c.0 = flag.cloned(),
        }
        c.1 = deadline;
    });
}

/// A statement ended: its deadline is dropped; its session's flag stays
/// published for the session's next statement (see `set_current`), and
/// is read only by statements, each of which publishes its own first.
pub fn end_statement() {
    CURRENT.with(|c| c.borrow_mut().1 = None);
}

/// The published flag's value (0 if none).
fn flag_now() -> u8 {
    CURRENT.with(|c| c.borrow().0.as_ref().map_or(0, |f| f.load(Ordering::Relaxed)))
}

/// What one `Ctx` checks: the flag published on its thread (read when it
/// checks, not held: taking a reference costs an atomic increment per
/// `Ctx`) and the deadline of the statement it was made in.
pub(crate) struct Check {
    deadline: Option<Instant>,
    ticks: u32,
}

impl Check {
    pub fn current() -> Check {
        CURRENT.with(|c| Check { deadline: c.borrow().1, ticks: 0 })
    }

    #[inline]
    pub fn tick(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks & 1023 != 0 {
            return Ok(());
        }
        self.check()
    }

    /// Fails if the statement was cancelled, its session terminated or
    /// its deadline passed.
    #[cold]
    pub fn check(&self) -> Result<()> {
        match flag_now() {
            crate::activity::INTERRUPT_CANCEL => {
                return Err(Error::user("57014", "canceling statement due to user request"));
            }
            crate::activity::INTERRUPT_TERMINATE => return Err(terminated()),
            _ => {}
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::user("57014", "canceling statement due to statement timeout"));
        }
        Ok(())
    }
}

/// The error of a statement whose session was terminated.
pub fn terminated() -> Error {
    Error::user("57P01", "terminating connection due to administrator command")
}

/// Parses a time setting as PostgreSQL does: an integer number of
/// milliseconds, or a number with a unit us, ms, s, min, h or d; the
/// result in milliseconds (0: no limit), 22023 when invalid.
pub fn parse_duration_ms(name: &str, value: &str) -> Result<u64> {
    let invalid = || {
        Error::user(
            "22023",
            format!(
                "invalid value for parameter \"{name}\": \"{value}\" (valid units are \
                 \"us\", \"ms\", \"s\", \"min\", \"h\" and \"d\")"
            ),
        )
    };
    let (n, unit) = super::spill::number_and_unit(value).ok_or_else(invalid)?;
    let ms_per = match unit {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let ms = (n * ms_per).round();
    if !ms.is_finite() || !(0.0..=2_147_483_647.0).contains(&ms) {
        return Err(Error::user(
            "22023",
            format!(
                "{} ms is outside the valid range for parameter \"{name}\" (0 .. 2147483647)",
                ms as i64
            ),
        ));
    }
    Ok(ms as u64)
}

/// A time setting as SHOW prints it: the largest unit that divides it.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [("d", 86_400_000u64), ("h", 3_600_000), ("min", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
