//! Notices and warnings a statement raises besides its result, as
//! PostgreSQL's `ereport(NOTICE | WARNING, …)`: `DROP TABLE IF EXISTS` of
//! a missing table, `COMMIT` outside a transaction block, and so on.
//!
//! ```text
//! exec / session code ── notice::raise(Notice) ──► thread-local buffer
//!                                                   │ drained after each statement
//! Session::statement ───────────────────────────────┘ into Session::notices
//! caller ── Session::take_notices() ──► the server sends NoticeResponse
//!                                       before the statement's CommandComplete
//! ```
//!
//! The buffer is thread-local because statements run synchronously on the
//! caller's thread (as the time zone and `work_mem` reach the executor),
//! so code deep in DDL needs no handle to the session. A session keeps the
//! notices of its last `execute*` call only, at most `MAX_KEPT`, so an
//! embedded caller that never takes them does not grow memory.

use std::cell::RefCell;

/// PostgreSQL's severities below ERROR that QubeDB raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Notice,
    Warning,
}

impl Severity {
    /// The text of the protocol's S and V fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// One notice: PostgreSQL's fields S/V, C, M, D and H.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Notice {
    /// A NOTICE with its SQLSTATE (00000 for most notices).
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Notice {
        Notice {
            severity: Severity::Notice,
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn warning(sqlstate: &'static str, message: impl Into<String>) -> Notice {
        Notice { severity: Severity::Warning, ..Notice::new(sqlstate, message) }
    }
}

/// The most notices a session keeps between two `take_notices`.
pub const MAX_KEPT: usize = 10_000;

thread_local! {
    static RAISED: RefCell<Vec<Notice>> = const { RefCell::new(Vec::new()) };
}

/// Raises a notice for the statement running on this thread.
pub fn raise(n: Notice) {
    RAISED.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() < MAX_KEPT {
            r.push(n);
        }
    });
}

/// `DROP … IF EXISTS` of something missing: NOTICE 00000 `KIND "NAME" does
/// not exist, skipping`.
pub fn skipping_missing(kind: &str, name: &str) {
    raise(Notice::new("00000", format!("{kind} \"{name}\" does not exist, skipping")));
}

/// `CREATE … IF NOT EXISTS` of something present: NOTICE `KIND "NAME"
/// already exists, skipping` with the duplicate-object SQLSTATE.
pub fn skipping_existing(sqlstate: &'static str, kind: &str, name: &str) {
    raise(Notice::new(sqlstate, format!("{kind} \"{name}\" already exists, skipping")));
}

/// Moves what this thread raised into `into` (up to `MAX_KEPT` in all).
pub(crate) fn drain_into(into: &mut Vec<Notice>) {
    RAISED.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_empty() {
            return;
        }
        let room = MAX_KEPT.saturating_sub(into.len());
        into.extend(r.drain(..).take(room));
    });
}

/// Forgets what this thread raised (a statement that never ran to the
/// point of draining, e.g. a panic caught above it).
pub(crate) fn discard() {
    RAISED.with(|r| r.borrow_mut().clear());
}
