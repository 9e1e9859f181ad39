//! The live sessions of a `Database`: what `pg_stat_activity` shows, and
//! how one session cancels or terminates another (`pg_cancel_backend`,
//! `pg_terminate_backend`).
//!
//! # Shape
//!
//! ```text
//! Database ── Shared.sessions: Registry
//!               ├── next_pid: AtomicI32          one id space: embedded sessions,
//!               │                                 HTTP requests and wire connections
//!               └── RwLock<HashMap<pid, Arc<Activity>>>
//!                     written when a session opens or closes, read by
//!                     pg_stat_activity and pg_cancel/terminate_backend
//!
//! Activity (one per session, shared by the session and the registry)
//!   fixed at open: pid, database, user, client address, backend_start
//!   interrupt: Arc<AtomicU8>   0 none · 1 cancel · 2 terminate (the session's
//!                              statement checks it, exec::interrupt)
//!   state: Mutex<State>        written by its session at each statement's
//!                              start and end; read by pg_stat_activity
//!   on_terminate hook          set by the server: wakes an idle connection
//! ```
//!
//! The hot path (a statement) touches only its own session's `Activity`:
//! two uncontended lock/unlock pairs of a small mutex (start, end) and a
//! reference-count increment of the query text (`Arc<str>`); the
//! registry's lock is taken only when a session opens or closes and when
//! someone reads `pg_stat_activity`.
//!
//! Times are microseconds since 2000-01-01 (PostgreSQL's timestamptz).
//! There are no permissions yet: any session may cancel or terminate any
//! other (PostgreSQL requires the same role or pg_signal_backend).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use parking_lot::{Mutex, RwLock};

/// The interrupt flag's values (`Activity::interrupt`).
pub const INTERRUPT_NONE: u8 = 0;
pub const INTERRUPT_CANCEL: u8 = 1;
pub const INTERRUPT_TERMINATE: u8 = 2;

/// `pg_stat_activity.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Idle,
    IdleInTransaction,
    IdleInTransactionAborted,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Idle => "idle",
            SessionState::IdleInTransaction => "idle in transaction",
            SessionState::IdleInTransactionAborted => "idle in transaction (aborted)",
        }
    }
}

/// What changes per statement.
#[derive(Debug, Clone)]
pub struct State {
    pub state: SessionState,
    pub application_name: String,
    /// The running or last statement's text (the whole query string).
    pub query: Arc<str>,
    pub xact_start: Option<i64>,
    pub query_start: Option<i64>,
    pub state_change: i64,
}

type Hook = Box<dyn Fn() + Send + Sync>;

/// One session as others see it.
pub struct Activity {
    pub pid: i32,
    pub database_id: u64,
    pub database: String,
    pub user: String,
    /// The client's address (None for an embedded session).
    pub client: Option<SocketAddr>,
    pub backend_start: i64,
    pub(crate) interrupt: Arc<AtomicU8>,
    state: Mutex<State>,
    on_terminate: Mutex<Option<Hook>>,
}

impl Activity {
    pub(crate) fn new(
        pid: i32,
        database_id: u64,
        database: String,
        user: String,
        application_name: String,
        client: Option<SocketAddr>,
        now: i64,
    ) -> Activity {
        Activity {
            pid,
            database_id,
            database,
            user,
            client,
            backend_start: now,
            interrupt: Arc::default(),
            state: Mutex::new(State {
                state: SessionState::Idle,
                application_name,
                query: Arc::from(""),
                xact_start: None,
                query_start: None,
                state_change: now,
            }),
            on_terminate: Mutex::new(None),
        }
    }

    /// A copy of the per-statement state.
    pub fn state(&self) -> State {
        self.state.lock().clone()
    }

    /// A statement starts.
    pub(crate) fn start(&self, query: &Arc<str>, now: i64, xact_start: i64) {
        let mut s = self.state.lock();
        if !Arc::ptr_eq(&s.query, query) {
            s.query = query.clone();
        }
        s.state = SessionState::Active;
        s.query_start = Some(now);
        s.xact_start = Some(xact_start);
        s.state_change = now;
    }

    /// A statement ended, leaving the session in `state`.
    pub(crate) fn finish(&self, state: SessionState, xact_start: Option<i64>, now: i64) {
        let mut s = self.state.lock();
        s.state = state;
        s.xact_start = xact_start;
        s.state_change = now;
    }

    pub(crate) fn set_application_name(&self, name: &str) {
        let mut s = self.state.lock();
        if s.application_name != name {
            s.application_name = name.to_string();
        }
    }

    /// Cancels the running statement (if any).
    pub fn cancel(&self) {
        let _ = self.interrupt.compare_exchange(
            INTERRUPT_NONE,
            INTERRUPT_CANCEL,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Ends the session: its running statement stops with 57P01, later
    /// ones fail, and the hook (the server closing the connection) runs.
    pub fn terminate(&self) {
        self.interrupt.store(INTERRUPT_TERMINATE, Ordering::Relaxed);
        if let Some(h) = self.on_terminate.lock().as_ref() {
            h();
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed) == INTERRUPT_TERMINATE
    }

    pub(crate) fn set_on_terminate(&self, hook: Hook) {
        let terminated = self.is_terminated();
        *self.on_terminate.lock() = Some(hook);
        if terminated && let Some(h) = self.on_terminate.lock().as_ref() {
            h();
        }
    }
}

/// Every live session of a database (see the module doc).
pub struct Registry {
    next_pid: AtomicI32,
    sessions: RwLock<HashMap<i32, Arc<Activity>>>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry { next_pid: AtomicI32::new(1), sessions: RwLock::default() }
    }
}

impl Registry {
    /// A new process id (never reused while the database is open).
    pub fn next_pid(&self) -> i32 {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, a: Arc<Activity>) {
        self.sessions.write().insert(a.pid, a);
    }

    pub(crate) fn unregister(&self, pid: i32) {
        self.sessions.write().remove(&pid);
    }

    pub fn get(&self, pid: i32) -> Option<Arc<Activity>> {
        self.sessions.read().get(&pid).cloned()
    }

    /// Every session, by pid.
    pub fn list(&self) -> Vec<Arc<Activity>> {
        let mut v: Vec<Arc<Activity>> = self.sessions.read().values().cloned().collect();
        v.sort_by_key(|a| a.pid);
        v
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    /// The registry and pid of the session whose statement runs on this
    /// thread (set by `Session::statement`), for pg_stat_activity,
    /// pg_backend_pid and the signal functions.
    static CURRENT: RefCell<Option<(Arc<Registry>, i32)>> = const { RefCell::new(None) };
}

/// Runs `f` with the current session's registry and pid published.
pub(crate) fn with_current<T>(reg: &Arc<Registry>, pid: i32, f: impl FnOnce() -> T) -> T {
    let prev = CURRENT.with(|c| c.borrow_mut().replace((reg.clone(), pid)));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = prev);
    out
}

/// The registry and pid of the running statement's session, if any.
pub(crate) fn current() -> Option<(Arc<Registry>, i32)> {
    CURRENT.with(|c| c.borrow().clone())
}
