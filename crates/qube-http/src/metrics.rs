//! The Prometheus text exposition (format 0.0.4) of `/metrics`, rendered
//! by hand: the counters are plain atomics, so no metrics registry is
//! needed, and each server owns its own (no process-global recorder),
//! which keeps tests that start several servers exact.
//!
//! What is counted where:
//! - queries by kind, their latency, rows returned and written, errors,
//!   sessions: the engine's statement counters (`qube_sql::metrics`,
//!   `Database::metrics`), recorded by every session whatever its way in,
//!   and rendered with an `interface` label: `embedded`, `pg` (the wire
//!   protocol) and `http` (this API).
//! - connections: HTTP connections counted by our listener (here);
//!   PostgreSQL connections read from the wire server when one is
//!   attached (`Config::pg_connections`).
//! - transactions, buffer pool and WAL: the engine's own counters
//!   (`Database::mvcc_status`, `Engine::status`), engine-wide.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use qube_sql::Database;
use qube_sql::metrics::{Interface, Kind, LATENCY_BUCKETS};

/// The counters only the HTTP server knows.
#[derive(Default)]
pub struct Metrics {
    pub http_connections_open: AtomicU64,
    pub http_connections_total: AtomicU64,
    pub http_requests_total: AtomicU64,
}

impl Metrics {
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
        let stats: Vec<_> =
            Interface::ALL.iter().map(|&i| (i.as_str(), db.metrics().snapshot(i))).collect();
        let mut body = String::new();
        for (iface, s) in &stats {
            for (k, n) in Kind::ALL.iter().zip(s.queries) {
                let kind = k.as_str();
                let _ = writeln!(
                    body,
                    "qubedb_queries_total{{interface=\"{iface}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        line("qubedb_queries_total", "counter", "Statements completed, by kind.", body);
        type Get = fn(&qube_sql::metrics::Snapshot) -> u64;
        let per_interface: [(&str, &str, &str, Get); 5] = [
            (
                "qubedb_query_errors_total",
                "counter",
                "Statements that failed (in parsing or while running).",
                |s| s.errors,
            ),
            (
                "qubedb_rows_returned_total",
                "counter",
                "Rows returned to clients (by queries, RETURNING and COPY TO).",
                |s| s.rows_returned,
            ),
            (
                "qubedb_rows_written_total",
                "counter",
                "Rows inserted, updated, deleted or copied in.",
                |s| s.rows_written,
            ),
            ("qubedb_sessions", "gauge", "Sessions open now.", |s| s.sessions_open),
            ("qubedb_sessions_total", "counter", "Sessions opened.", |s| s.sessions_total),
        ];
        for (name, kind, help, get) in per_interface {
            let mut body = String::new();
            for (iface, s) in &stats {
                let _ = writeln!(body, "{name}{{interface=\"{iface}\"}} {}", get(s));
            }
            line(name, kind, help, body);
        }
        let mut body = String::new();
        for (iface, s) in &stats {
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    body,
                    "qubedb_query_duration_seconds_bucket{{interface=\"{iface}\",le=\"{le}\"}} {}",
                    s.latency_cumulative[i]
                );
            }
            let count = s.latency_cumulative[LATENCY_BUCKETS.len()];
            let _ = writeln!(
                body,
                "qubedb_query_duration_seconds_bucket{{interface=\"{iface}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                body,
                "qubedb_query_duration_seconds_sum{{interface=\"{iface}\"}} {}",
                s.latency_sum_seconds
            );
            let _ = writeln!(
                body,
                "qubedb_query_duration_seconds_count{{interface=\"{iface}\"}} {count}"
            );
        }
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
