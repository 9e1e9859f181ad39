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
//!   text: Mutex<Text>          the query text and application_name
//!   times: Times               state, xact_start, query_start, state_change:
//!                              atomics under a sequence count (a seqlock)
//!   on_terminate hook          set by the server: wakes an idle connection
//! ```
//!
//! The hot path (a statement) touches only its own session's `Activity`,
//! and with plain stores: the session is the only writer of its `times`,
//! so a write is the sequence count made odd, the fields, and the count
//! made even again (PostgreSQL's `st_changecount` protocol); a reader
//! retries while the count is odd or changed under it. The text mutex is
//! taken only when the query text changes (a prepared statement run again
//! keeps its `Arc<str>`), and then the times are written under it too, so
//! that a reader, which takes the mutex, never pairs one statement's text
//! with another's times. (Two lock/unlock pairs per statement were four
//! atomic read-modify-writes, ~10 ns each on the VMs we measure on.) The
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
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};

use parking_lot::{Mutex, RwLock};

use crate::published::Replaced;

/// The interrupt flag's values (`Activity::interrupt`).
pub const INTERRUPT_NONE: u8 = 0;
pub const INTERRUPT_CANCEL: u8 = 1;
pub const INTERRUPT_TERMINATE: u8 = 2;

/// `pg_stat_activity.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    // The codes `Times` stores (`code`, `of_code`).
    Active = 0,
    Idle = 1,
    IdleInTransaction = 2,
    IdleInTransactionAborted = 3,
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

/// What changes only with the query string or a SET.
struct Text {
    query: Arc<str>,
    application_name: String,
}

/// `State`'s per-statement fields, written by the session alone under a
/// sequence count (see the module doc). `NO_TIME` stands for None.
struct Times {
    seq: AtomicU64,
    state: AtomicU8,
    xact_start: AtomicI64,
    query_start: AtomicI64,
    state_change: AtomicI64,
}

const NO_TIME: i64 = i64::MIN;

fn time_of(t: i64) -> Option<i64> {
    (t != NO_TIME).then_some(t)
}

impl SessionState {
    fn code(self) -> u8 {
        self as u8
    }

    fn of_code(c: u8) -> SessionState {
        match c {
            0 => SessionState::Active,
            1 => SessionState::Idle,
            2 => SessionState::IdleInTransaction,
            _ => SessionState::IdleInTransactionAborted,
        }
    }
}

impl Times {
    /// One write by the session (the only writer).
    fn write(
        &self,
        state: SessionState,
        xact_start: Option<i64>,
        query_start: Option<i64>,
        now: i64,
    ) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.state.store(state.code(), Ordering::Relaxed);
        self.xact_start.store(xact_start.unwrap_or(NO_TIME), Ordering::Relaxed);
        if let Some(q) = query_start {
            self.query_start.store(q, Ordering::Relaxed);
        }
        self.state_change.store(now, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent read: state, xact_start, query_start, state_change.
    fn read(&self) -> (SessionState, Option<i64>, Option<i64>, i64) {
        loop {
            let s = self.seq.load(Ordering::Acquire);
            if s & 1 == 0 {
                let v = (
                    SessionState::of_code(self.state.load(Ordering::Relaxed)),
                    time_of(self.xact_start.load(Ordering::Relaxed)),
                    time_of(self.query_start.load(Ordering::Relaxed)),
                    self.state_change.load(Ordering::Relaxed),
                );
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s {
                    return v;
                }
            }
            std::hint::spin_loop();
        }
    }
}

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
    text: Mutex<Text>,
    /// The address of `text.query`'s bytes (written by the session only).
    query_at: AtomicUsize,
    times: Times,
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
            text: Mutex::new(Text { query: Arc::from(""), application_name }),
            query_at: AtomicUsize::new(0),
            times: Times {
                seq: AtomicU64::new(0),
                state: AtomicU8::new(SessionState::Idle.code()),
                xact_start: AtomicI64::new(NO_TIME),
                query_start: AtomicI64::new(NO_TIME),
                state_change: AtomicI64::new(now),
            },
            on_terminate: Mutex::new(None),
        }
    }

    /// A copy of the per-statement state.
    pub fn state(&self) -> State {
        let t = self.text.lock();
        let (state, xact_start, query_start, state_change) = self.times.read();
        State {
            state,
            application_name: t.application_name.clone(),
            query: t.query.clone(),
            xact_start,
            query_start,
            state_change,
        }
    }

    /// A statement starts.
    pub(crate) fn start(&self, query: &Arc<str>, now: i64, xact_start: i64) {
        let (active, xact) = (SessionState::Active, Some(xact_start));
        // The text held is the one last given while its address is (an
        // allocation alive in `text` is not reused): the same query string
        // takes no lock.
        let at = Arc::as_ptr(query).cast::<u8>() as usize;
        if self.query_at.load(Ordering::Relaxed) == at {
            self.times.write(active, xact, Some(now), now);
            return;
        }
        let mut t = self.text.lock();
        t.query = query.clone();
        self.query_at.store(at, Ordering::Relaxed);
        self.times.write(active, xact, Some(now), now);
    }

    /// A statement ended, leaving the session in `state`.
    pub(crate) fn finish(&self, state: SessionState, xact_start: Option<i64>, now: i64) {
        self.times.write(state, xact_start, None, now);
    }

    pub(crate) fn set_application_name(&self, name: &str) {
        let mut t = self.text.lock();
        if t.application_name != name {
            t.application_name = name.to_string();
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

/// Publishes the running statement's session registry and pid (kept in
/// place after the statement, see `published`).
pub(crate) fn enter(reg: &Arc<Registry>, pid: i32) -> Replaced<(Arc<Registry>, i32)> {
    crate::published::publish(
        &CURRENT,
        |(r, p)| Arc::ptr_eq(r, reg) && *p == pid,
        || (reg.clone(), pid),
    )
}

/// Ends what `enter` began.
pub(crate) fn leave(r: Replaced<(Arc<Registry>, i32)>) {
    crate::published::restore(&CURRENT, r);
}

/// The registry and pid of the running statement's session, if any.
pub(crate) fn current() -> Option<(Arc<Registry>, i32)> {
    CURRENT.with(|c| c.borrow().clone())
}
