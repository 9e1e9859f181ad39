//! QubeDB's SQL engine: PostgreSQL-dialect SQL from parser to executor,
//! over MVCC transactions. This is the embeddable engine's public face.
//!
//! ```text
//! Database ── open a directory or memory: Engine + Mvcc + Catalog
//!   └── Session ── current schema, settings, transaction state
//!         execute(sql) → parse (sqlparser, PostgreSQL dialect)
//!                      → bind (names, types, SQLSTATEs)   plan/bind.rs
//!                      → plan (logical → physical)        plan/
//!                      → execute (operators over rows)    exec/
//!                      → QueryResult { columns, rows, tag }
//! ```
//!
//! Layers lean downwards only: `types` (values, casts, encodings) knows
//! nothing of plans; `plan` binds sqlparser's AST (the only module that
//! touches it, so that its AST changes stay in one place) into our own
//! plan types; `exec` runs plans against a transaction; `session` holds
//! transaction state and turns statements into results.

pub mod activity;
mod autoparam;
pub mod exec;
pub mod metrics;
pub mod names;
pub mod notice;
pub mod plan;
mod position;
mod published;
pub mod session;
pub mod storage;
pub mod system;
pub mod types;
pub mod utility;

pub use exec::copy::CopyOut;
pub use notice::Notice;
pub use qube_common::types::DataType;
pub use qube_common::{Error, Result};
pub use session::{
    Column, CopyIn, CopyKind, Database, Description, Prepared, QueryResult, RowSink, Session,
    SessionOptions,
};
pub use types::Value;
