//! Counters and their Prometheus text exposition (format 0.0.4), rendered
//! by hand: a few atomics and one fixed-bucket histogram need no metrics
//! registry, and each server owns its own counters (no process-global
//! recorder), which keeps tests that start several servers exact.
//!
//! What is counted where:
//! - queries by kind, their latency, rows returned and written, errors:
//!   statements run through this HTTP API (`interface="http"`). The wire
//!   protocol server does not report per-statement counters yet.
//! - connections: HTTP connections counted by our listener; PostgreSQL
//!   connections read from the wire server when one is attached
//!   (`Config::pg_connections`).
//! - transactions, buffer pool and WAL: the engine's own counters
//!   (`Database::mvcc_status`, `Engine::status`), so they cover every
//!   interface.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use qube_sql::Database;

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

const KINDS: [(Kind, &str); 6] = [
    (Kind::Select, "select"),
    (Kind::Insert, "insert"),
    (Kind::Update, "update"),
    (Kind::Delete, "delete"),
    (Kind::Ddl, "ddl"),
    (Kind::Other, "other"),
];

impl Kind {
    /// The kind of a statement from its PostgreSQL command tag, and the
    /// rows it wrote (the tag's count for INSERT, UPDATE and DELETE).
    pub fn of_tag(tag: &str) -> (Kind, u64) {
        let first = tag.split(' ').next().unwrap_or("");
        let count = || tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        match first {
            "SELECT" => (Kind::Select, 0),
            "INSERT" => (Kind::Insert, count()),
            "UPDATE" => (Kind::Update, count()),
            "DELETE" => (Kind::Delete, count()),
            "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE" => {
                (Kind::Ddl, 0)
            }
            _ => (Kind::Other, 0),
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    pub http_connections_open: AtomicU64,
    pub http_connections_total: AtomicU64,
    pub http_requests_total: AtomicU64,
    queries: [AtomicU64; 6],
    query_errors: AtomicU64,
    rows_returned: AtomicU64,
    rows_written: AtomicU64,
    /// Per bucket (not cumulative; summed when rendered), then +Inf.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Records one statement that completed.
    pub fn statement(&self, tag: &str, rows_returned: u64, elapsed: Duration) {
        let (kind, written) = Kind::of_tag(tag);
        let i = KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(5);
        self.queries[i].fetch_add(1, Relaxed);
        self.rows_returned.fetch_add(rows_returned, Relaxed);
        self.rows_written.fetch_add(written, Relaxed);
        self.latency(elapsed);
    }

    /// Records one statement that failed.
    pub fn error(&self, elapsed: Duration) {
        self.query_errors.fetch_add(1, Relaxed);
        self.latency(elapsed);
    }

    fn latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        self.latency_buckets[b].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// The exposition text. Reads the engine's counters (takes a short
    /// lock in the storage engine: call it off the async runtime).
    pub fn render(&self, db: &Database, pg_connections: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP qubedb_connections Client connections open now.\n\
             # TYPE qubedb_connections gauge\n",
        );
        let _ = writeln!(
            out,
            "qubedb_connections{{interface=\"http\"}} {}",
            self.http_connections_open.load(Relaxed)
        );
        if let Some(n) = pg_connections {
            let _ = writeln!(out, "qubedb_connections{{interface=\"pg\"}} {n}");
        }
        let mut line = |name: &str, kind: &str, help: &str, body: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            out.push_str(&body);
        };
        line(
            "qubedb_http_connections_total",
            "counter",
            "HTTP connections accepted.",
            format!(
                "qubedb_http_connections_total {}\n",
                self.http_connections_total.load(Relaxed)
            ),
        );
        line(
            "qubedb_http_requests_total",
            "counter",
            "HTTP requests to /v1/query.",
            format!("qubedb_http_requests_total {}\n", self.http_requests_total.load(Relaxed)),
        );
        let mut body = String::new();
        for (i, (_, name)) in KINDS.iter().enumerate() {
            let _ = writeln!(
                body,
                "qubedb_queries_total{{interface=\"http\",kind=\"{name}\"}} {}",
                self.queries[i].load(Relaxed)
            );
        }
        line("qubedb_queries_total", "counter", "Statements completed, by kind.", body);
        line(
            "qubedb_query_errors_total",
            "counter",
            "Statements that failed.",
            format!(
                "qubedb_query_errors_total{{interface=\"http\"}} {}\n",
                self.query_errors.load(Relaxed)
            ),
        );
        line(
            "qubedb_rows_returned_total",
            "counter",
            "Rows returned to clients.",
            format!(
                "qubedb_rows_returned_total{{interface=\"http\"}} {}\n",
                self.rows_returned.load(Relaxed)
            ),
        );
        line(
            "qubedb_rows_written_total",
            "counter",
            "Rows inserted, updated or deleted.",
            format!(
                "qubedb_rows_written_total{{interface=\"http\"}} {}\n",
                self.rows_written.load(Relaxed)
            ),
        );
        let mut body = String::new();
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                body,
                "qubedb_query_duration_seconds_bucket{{interface=\"http\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.latency_buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            body,
            "qubedb_query_duration_seconds_bucket{{interface=\"http\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            body,
            "qubedb_query_duration_seconds_sum{{interface=\"http\"}} {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            body,
            "qubedb_query_duration_seconds_count{{interface=\"http\"}} {cumulative}"
        );
        line(
            "qubedb_query_duration_seconds",
            "histogram",
            "Statement execution time (successful and failed).",
            body,
        );

        let m = db.mvcc_status();
        line(
            "qubedb_transactions_total",
            "counter",
            "Transactions ended, by outcome (all interfaces). rolled_back includes read-only \
             transactions, which end by rollback; conflicted counts serialization failures (40001).",
            format!(
                "qubedb_transactions_total{{outcome=\"committed\"}} {}\n\
                 qubedb_transactions_total{{outcome=\"rolled_back\"}} {}\n\
                 qubedb_transactions_total{{outcome=\"conflicted\"}} {}\n",
                m.commits, m.rollbacks, m.serialization_failures
            ),
        );
        line(
            "qubedb_transactions_active",
            "gauge",
            "Transactions open now.",
            format!("qubedb_transactions_active {}\n", m.active_transactions),
        );
        match db.engine().status() {
            Ok(s) => {
                let counters = [
                    (
                        "qubedb_buffer_pool_hits_total",
                        "counter",
                        "Buffer pool page hits.",
                        s.cache_hits,
                    ),
                    (
                        "qubedb_buffer_pool_misses_total",
                        "counter",
                        "Buffer pool page misses (reads from disk).",
                        s.cache_misses,
                    ),
                    (
                        "qubedb_buffer_pool_evictions_total",
                        "counter",
                        "Pages evicted from the buffer pool.",
                        s.cache_evictions,
                    ),
                    (
                        "qubedb_buffer_pool_bytes",
                        "gauge",
                        "Bytes the buffer pool holds.",
                        s.cache_bytes,
                    ),
                    ("qubedb_wal_bytes", "gauge", "Bytes of WAL on disk.", s.wal_bytes),
                    (
                        "qubedb_wal_last_lsn",
                        "gauge",
                        "LSN of the last committed batch.",
                        s.last_lsn,
                    ),
                    ("qubedb_wal_fsyncs_total", "counter", "WAL fsyncs since open.", s.wal_fsyncs),
                    (
                        "qubedb_checkpoints_total",
                        "counter",
                        "Checkpoints since open.",
                        s.checkpoints,
                    ),
                    (
                        "qubedb_disk_bytes",
                        "gauge",
                        "Bytes on disk (data file and WAL).",
                        s.disk_bytes,
                    ),
                ];
                for (name, kind, help, v) in counters {
                    line(name, kind, help, format!("{name} {v}\n"));
                }
            }
            Err(e) => tracing::warn!("engine status failed: {e}"),
        }
        out
    }
}
