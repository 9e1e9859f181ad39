//! Runs `tests/slt/*.slt` (sqllogictest-rs format) against the engine, one
//! `#[test]` per file, each on a fresh `Database::memory()`.
//!
//! Conventions (the same as `tests/slt/verify_pg.py`, which checks the files
//! against a real PostgreSQL 15):
//! - values in PostgreSQL's text output format (`Value`'s `Display`), NULL as
//!   `NULL`, the empty string as `(empty)`;
//! - column types are checked strictly: `I` for smallint/integer/bigint, `R`
//!   for real/double precision/numeric, `T` for everything else;
//! - an error reads `"<SQLSTATE>: <message>"`, so `statement error 42P01`
//!   matches on the SQLSTATE (the regex is searched in that text); the
//!   SQLSTATE is also reported to the runner, so `statement error (42P01)`
//!   works too;
//! - `statement count N` compares the affected-row count from the tag.
//!
//! Every record of a file runs even after a failure; the test then fails
//! listing each failed record with its `file:line`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use qube_sql::{DataType, Database, QueryResult, Session, Value};
use sqllogictest::{DB, DBOutput, DefaultColumnType, Record, Runner, strict_column_validator};

/// An engine error as the runner sees it: `"<SQLSTATE>: <message>"`.
#[derive(Debug)]
pub struct SltError {
    pub sqlstate: String,
    pub message: String,
}

impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)
    }
}

impl std::error::Error for SltError {}

impl From<qube_sql::Error> for SltError {
    fn from(e: qube_sql::Error) -> Self {
        SltError { sqlstate: e.sqlstate().to_string(), message: e.to_string() }
    }
}

/// One connection of the runner: a session over its own in-memory database.
pub struct QubeSlt {
    session: Session,
    _db: Database,
}

impl QubeSlt {
    pub fn new() -> Result<Self, SltError> {
        let db = Database::memory()?;
        let session = db.session()?;
        Ok(QubeSlt { session, _db: db })
    }
}

impl DB for QubeSlt {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let session = &mut self.session;
        let results = match catch_unwind(AssertUnwindSafe(|| session.execute(sql))) {
            Ok(results) => results?,
            Err(panic) => {
                return Err(SltError {
                    sqlstate: "XX000".into(),
                    message: format!("engine panicked: {}", panic_message(panic.as_ref())),
                });
            }
        };
        // Like psql and drivers, the output of several statements is the last one's.
        Ok(match results.last() {
            None => DBOutput::StatementComplete(0),
            Some(result) => output(result),
        })
    }

    fn engine_name(&self) -> &str {
        "qubedb"
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        Some(err.sqlstate.clone())
    }
}

fn output(result: &QueryResult) -> DBOutput<DefaultColumnType> {
    if result.columns.is_empty() {
        return DBOutput::StatementComplete(affected_rows(&result.tag));
    }
    DBOutput::Rows {
        types: result.columns.iter().map(|c| column_type(&c.data_type)).collect(),
        rows: result.rows.iter().map(|row| row.iter().map(format_value).collect()).collect(),
    }
}

/// The row count at the end of a command tag: "INSERT 0 3" → 3,
/// "UPDATE 2" → 2, "CREATE TABLE" → 0.
pub fn affected_rows(tag: &str) -> u64 {
    tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::SmallInt | DataType::Integer | DataType::BigInt => DefaultColumnType::Integer,
        DataType::Real | DataType::Double | DataType::Numeric(_) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

pub fn format_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Text(s) if s.is_empty() => "(empty)".into(),
        v => v.to_string(),
    }
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("slt")
}

/// Runs every record of one file; returns the number of records run and one
/// message per failed record.
pub fn run_slt_file(path: &Path) -> (usize, Vec<String>) {
    let records = match sqllogictest::parse_file::<DefaultColumnType>(path) {
        Ok(records) => records,
        Err(e) => return (0, vec![format!("{}: cannot parse: {e}", path.display())]),
    };
    let mut runner = Runner::new(|| async { QubeSlt::new() });
    runner.with_column_validator(strict_column_validator::<DefaultColumnType>);
    let mut run = 0;
    let mut failures = Vec::new();
    for record in records {
        match record {
            Record::Halt { .. } => break,
            Record::Statement { .. } | Record::Query { .. } => run += 1,
            _ => {}
        }
        if let Err(e) = runner.run(record) {
            failures.push(e.display(false).to_string());
        }
    }
    (run, failures)
}

fn run_slt(name: &str) {
    let path = slt_dir().join(format!("{name}.slt"));
    let (run, failures) = run_slt_file(&path);
    if !failures.is_empty() {
        panic!(
            "{} of {run} records failed in {}:\n\n{}",
            failures.len(),
            path.display(),
            failures.join("\n")
        );
    }
    assert!(run > 0, "{} has no records", path.display());
}

macro_rules! slt_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_slt(stringify!($name));
            }
        )*
        const SLT_FILES: &[&str] = &[$(stringify!($name)),*];
    };
}

// One test per file of tests/slt; `every_slt_file_has_a_test` keeps this list complete.
slt_tests!(
    types,
    numeric_big,
    regexp,
    ordered_scans,
    streamed_join,
    ddl,
    dml,
    select,
    joins,
    merge_join,
    index_in,
    aggregates,
    subqueries,
    cte,
    rows,
    prepare,
    setops,
    transactions,
    misc,
    returning,
    upsert,
    rowid_keys,
    literal_shapes,
    alter,
    functions,
    window,
    foreign_keys,
    schemas,
    sequences,
    dml_from,
    datetime,
    datetime_diff,
    json,
    arrays,
    uuid,
    catalog,
    catalog_writes,
    maintenance,
    pg_compat,
    projected_fetch
);

#[test]
fn every_slt_file_has_a_test() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(slt_dir()).expect("tests/slt is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "slt") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            if !SLT_FILES.contains(&stem.as_str()) {
                missing.push(stem);
            }
        }
    }
    assert!(missing.is_empty(), "add these files to slt_tests! in tests/it/slt.rs: {missing:?}");
}

#[test]
fn harness_helpers() {
    assert_eq!(affected_rows("INSERT 0 3"), 3);
    assert_eq!(affected_rows("UPDATE 12"), 12);
    assert_eq!(affected_rows("CREATE TABLE"), 0);
    assert_eq!(format_value(&Value::Null), "NULL");
    assert_eq!(format_value(&Value::Text(String::new())), "(empty)");
    assert_eq!(format_value(&Value::Bool(true)), "t");
    assert_eq!(column_type(&DataType::Numeric(Some((6, 2)))), DefaultColumnType::FloatingPoint);
    assert_eq!(column_type(&DataType::BigInt), DefaultColumnType::Integer);
    assert_eq!(column_type(&DataType::Varchar(Some(3))), DefaultColumnType::Text);
    let e = SltError::from(qube_sql::Error::user("42P01", "relation \"t\" does not exist"));
    assert_eq!(e.to_string(), "42P01: relation \"t\" does not exist");
}
