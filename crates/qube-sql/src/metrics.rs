//! Per-statement counters for monitoring (`GET /metrics` renders them),
//! kept by the engine so that every way in is counted the same: embedded
//! sessions, the PostgreSQL wire protocol and the HTTP API.
//!
//! ```text
//! Database ── Shared.metrics: Metrics
//!               └── [Counters; 3]  indexed by Interface (embedded, pg, http)
//!                     queries[Kind]          statements completed, by kind
//!                     errors                 statements that failed
//!                     rows_returned          rows sent to the caller
//!                     rows_written           rows inserted, updated, deleted, copied in
//!                     latency[bucket]        per bucket (not cumulative), +Inf last
//!                     latency_sum_us
//!                     sessions_open / sessions_total
//! ```
//!
//!
//! Each session counts into its own `SessionCounters` (same fields), which
//! the `Metrics` list while the session is open:
//!
//! ```text
//! Metrics.live: Mutex<Vec<Arc<SessionCounters>>>   registered at open;
//!                                                  at close added to `by`
//!                                                  and removed (one lock)
//! ```
//!
//! `Session::statement` records each statement once when it ends (COPY
//! records in `Session::copy_out` and `CopyIn::finish`), with the
//! session's `Interface` (from `SessionOptions`). The session is the only
//! writer of its counters, so recording is a load and a store per counter
//! (relaxed atomics, no read-modify-write: an atomic add is ~10 ns on the
//! VMs we measure on, and a statement made four), no lock, no allocation.
//! A reader (`snapshot`) adds the interface's closed sessions' totals and
//! every open session's counters, under the list's lock, so a session
//! closing is counted once; it may see one statement's counters
//! half-applied, which monitoring tolerates.
//!
//! "Rows returned" counts rows given to the caller (streamed or in the
//! result), not rows the executor read from storage; statements that fail
//! during parsing count as errors without a latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

/// How a session reached the engine (the `interface` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// A session of a program that embeds the engine (`qubedb shell`).
    #[default]
    Embedded,
    /// The PostgreSQL wire protocol.
    Pg,
    /// The HTTP API.
    Http,
}

impl Interface {
    pub const ALL: [Interface; 3] = [Interface::Embedded, Interface::Pg, Interface::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Embedded => "embedded",
            Interface::Pg => "pg",
            Interface::Http => "http",
        }
    }
}

/// Statement kinds, by the first word of the command tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Select, Kind::Insert, Kind::Update, Kind::Delete, Kind::Ddl, Kind::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Ddl => "ddl",
            Kind::Other => "other",
        }
    }

    /// The kind of a statement from its PostgreSQL command tag, and the
    /// rows it wrote (the tag's count for INSERT, UPDATE, DELETE and
    /// MERGE).
    pub fn of_tag(tag: &str) -> (Kind, u64) {
        // This runs for every statement. Byte searches: `split_once(' ')` runs a char searcher, several
        // hundred instructions per statement.
        if tag == "INSERT 0 1" {
            // A one-row INSERT (a prepared INSERT per row): no parse.
            return (Kind::Insert, 1);
        }
        let b = tag.as_bytes();
        let first = &tag[..b.iter().position(|&c| c == b' ').unwrap_or(b.len())];
        let count =
            || tag[b.iter().rposition(|&c| c == b' ').map_or(0, |i| i + 1)..].parse().unwrap_or(0);
        match first {
            "SELECT" => (Kind::Select, 0),
            "INSERT" => (Kind::Insert, count()),
            "UPDATE" => (Kind::Update, count()),
            "DELETE" => (Kind::Delete, count()),
            "MERGE" => (Kind::Other, count()),
            "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE" => {
                (Kind::Ddl, 0)
            }
            _ => (Kind::Other, 0),
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds (as
/// rendered) and in microseconds (as compared).
pub const LATENCY_BUCKETS: [f64; 12] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const BUCKETS_US: [u64; 12] = [
    100, 500, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];

/// One interface's counters.
#[derive(Default)]
struct Counters {
    queries: [AtomicU64; 6],
    errors: AtomicU64,
    rows_returned: AtomicU64,
    rows_written: AtomicU64,
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    sessions_open: AtomicU64,
    sessions_total: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter this thread alone writes (a session's).
    fn bump(a: &AtomicU64, n: u64) {
        a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Records a statement (in a session's own counters: see `bump`).
    fn record(&self, kind: Kind, returned: u64, written: u64, elapsed: Duration) {
        Self::bump(&self.queries[kind as usize], 1);
        if returned > 0 {
            Self::bump(&self.rows_returned, returned);
        }
        if written > 0 {
            Self::bump(&self.rows_written, written);
        }
        self.latency(elapsed);
    }

    fn error(&self, elapsed: Option<Duration>) {
        Self::bump(&self.errors, 1);
        if let Some(e) = elapsed {
            self.latency(e);
        }
    }

    fn latency(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let b = BUCKETS_US.iter().position(|&le| us <= le).unwrap_or(BUCKETS_US.len());
        Self::bump(&self.latency[b], 1);
        Self::bump(&self.latency_sum_us, us);
    }

    /// Adds `from`'s statement counters to these (shared: atomic adds).
    fn absorb(&self, from: &Counters) {
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Relaxed), Relaxed);
        };
        for (to, from) in self.queries.iter().zip(&from.queries) {
            add(to, from);
        }
        for (to, from) in self.latency.iter().zip(&from.latency) {
            add(to, from);
        }
        add(&self.errors, &from.errors);
        add(&self.rows_returned, &from.rows_returned);
        add(&self.rows_written, &from.rows_written);
        add(&self.latency_sum_us, &from.latency_sum_us);
    }
}

/// One open session's statement counters (see the module doc): written by
/// that session alone, read by `Metrics::snapshot`.
pub struct SessionCounters {
    interface: Interface,
    c: Counters,
}

impl SessionCounters {
    /// Records a statement that completed with `tag`, having given
    /// `rows_returned` rows to the caller.
    pub(crate) fn statement(&self, tag: &str, rows_returned: u64, elapsed: Duration) {
        let (kind, written) = Kind::of_tag(tag);
        self.c.record(kind, rows_returned, written, elapsed);
    }

    /// Records a completed statement whose kind and counts are known.
    pub(crate) fn record(&self, kind: Kind, returned: u64, written: u64, elapsed: Duration) {
        self.c.record(kind, returned, written, elapsed);
    }

    /// Records a statement that failed; `elapsed` is None if it failed
    /// before it ran (in parsing).
    pub(crate) fn error(&self, elapsed: Option<Duration>) {
        self.c.error(elapsed);
    }
}

/// The engine's statement counters (see the module doc).
#[derive(Default)]
pub struct Metrics {
    /// By interface: closed sessions' statements, and sessions opened.
    by: [Counters; 3],
    live: Mutex<Vec<Arc<SessionCounters>>>,
}

/// A copy of one interface's counters, for rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// By `Kind::ALL`'s order.
    pub queries: [u64; 6],
    pub errors: u64,
    pub rows_returned: u64,
    pub rows_written: u64,
    /// Cumulative, by `LATENCY_BUCKETS`, then +Inf (which is the count).
    pub latency_cumulative: [u64; 13],
    pub latency_sum_seconds: f64,
    pub sessions_open: u64,
    pub sessions_total: u64,
}

impl Metrics {
    fn of(&self, i: Interface) -> &Counters {
        &self.by[i as usize]
    }

    /// A new session of interface `i`: its counters, listed until
    /// `session_closed`.
    pub(crate) fn session_opened(&self, i: Interface) -> Arc<SessionCounters> {
        let c = self.of(i);
        c.sessions_open.fetch_add(1, Relaxed);
        c.sessions_total.fetch_add(1, Relaxed);
        let s = Arc::new(SessionCounters { interface: i, c: Counters::default() });
        self.live.lock().push(s.clone());
        s
    }

    /// A session closed: its counts join its interface's totals.
    pub(crate) fn session_closed(&self, s: &Arc<SessionCounters>) {
        let mut live = self.live.lock();
        let c = self.of(s.interface);
        c.absorb(&s.c);
        c.sessions_open.fetch_sub(1, Relaxed);
        if let Some(at) = live.iter().position(|l| Arc::ptr_eq(l, s)) {
            live.swap_remove(at);
        }
    }

    /// One interface's counters now.
    pub fn snapshot(&self, i: Interface) -> Snapshot {
        let live = self.live.lock();
        let c = self.of(i);
        let mut s = Snapshot {
            sessions_open: c.sessions_open.load(Relaxed),
            sessions_total: c.sessions_total.load(Relaxed),
            ..Snapshot::default()
        };
        let mut sum_us = 0u64;
        let mut latency = [0u64; 13];
        let sessions = live.iter().filter(|l| l.interface == i).map(|l| &l.c);
        for c in std::iter::once(c).chain(sessions) {
            s.errors += c.errors.load(Relaxed);
            s.rows_returned += c.rows_returned.load(Relaxed);
            s.rows_written += c.rows_written.load(Relaxed);
            sum_us += c.latency_sum_us.load(Relaxed);
            for (q, a) in s.queries.iter_mut().zip(&c.queries) {
                *q += a.load(Relaxed);
            }
            for (l, a) in latency.iter_mut().zip(&c.latency) {
                *l += a.load(Relaxed);
            }
        }
        drop(live);
        s.latency_sum_seconds = sum_us as f64 / 1e6;
        let mut sum = 0;
        for (out, n) in s.latency_cumulative.iter_mut().zip(latency) {
            sum += n;
            *out = sum;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_written_rows_come_from_the_tag() {
        assert_eq!(Kind::of_tag("SELECT 3"), (Kind::Select, 0));
        assert_eq!(Kind::of_tag("INSERT 0 7"), (Kind::Insert, 7));
        assert_eq!(Kind::of_tag("INSERT 0 1"), (Kind::Insert, 1));
        assert_eq!(Kind::of_tag("INSERT 0 10"), (Kind::Insert, 10));
        assert_eq!(Kind::of_tag("INSERT 0 1 "), (Kind::Insert, 0));
        assert_eq!(Kind::of_tag("UPDATE 2"), (Kind::Update, 2));
        assert_eq!(Kind::of_tag("DELETE 0"), (Kind::Delete, 0));
        assert_eq!(Kind::of_tag("CREATE TABLE"), (Kind::Ddl, 0));
        assert_eq!(Kind::of_tag("BEGIN"), (Kind::Other, 0));
        assert_eq!(Kind::of_tag(""), (Kind::Other, 0));
    }

    #[test]
    fn latency_lands_in_its_bucket_and_the_histogram_is_cumulative() {
        let m = Metrics::default();
        let (a, b) = (m.session_opened(Interface::Pg), m.session_opened(Interface::Pg));
        a.statement("SELECT 1", 1, Duration::from_micros(50));
        b.statement("SELECT 1", 1, Duration::from_micros(100));
        a.statement("INSERT 0 4", 0, Duration::from_millis(2));
        b.error(Some(Duration::from_secs(10)));
        a.error(None);
        // The same counts while both sessions are open, after one closed
        // (its counts moved to the totals: counted once), and after both.
        let s = m.snapshot(Interface::Pg);
        m.session_closed(&a);
        assert_eq!(m.snapshot(Interface::Pg), Snapshot { sessions_open: 1, ..s.clone() });
        m.session_closed(&b);
        assert_eq!(m.snapshot(Interface::Pg), Snapshot { sessions_open: 0, ..s.clone() });
        assert_eq!((s.sessions_open, s.sessions_total), (2, 2));
        assert_eq!(s.queries, [2, 1, 0, 0, 0, 0]);
        assert_eq!((s.errors, s.rows_returned, s.rows_written), (2, 2, 4));
        // ≤ 100 µs: two; ≤ 5 ms: three; +Inf: four (the parse error has no latency).
        assert_eq!(s.latency_cumulative[0], 2);
        assert_eq!(s.latency_cumulative[3], 3);
        assert_eq!(s.latency_cumulative[11], 3);
        assert_eq!(s.latency_cumulative[12], 4);
        assert_eq!(m.snapshot(Interface::Http), Snapshot::default());
    }
}
