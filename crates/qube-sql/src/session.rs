//! The engine's public face: `Database` (a directory or memory) and
//! `Session` (transaction state, current schema, settings), which turns SQL
//! text into `QueryResult`s.
//!
//! Transactions follow PostgreSQL: a statement outside BEGIN runs in its
//! own transaction (autocommit); inside one, an error marks the
//! transaction failed and every later statement gets 25P02 until ROLLBACK
//! (COMMIT of a failed transaction rolls back).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qube_catalog::{Catalog, Namespace, ObjectId};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_storage::{BTreeEngine, Engine, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::exec::{self, Ctx};
use crate::names::SearchPath;
use crate::plan::bind::Binder;
use crate::storage::RowIds;
use crate::types::Value;
use crate::types::datetime;

/// How deep the parser may recurse (parenthesised nesting): 54001 beyond.
const PARSER_RECURSION_LIMIT: usize = 400;

/// Parses SQL text; a syntax error is 42601 with its line and column.
pub fn parse(sql: &str) -> Result<Vec<ast::Statement>> {
    let mut stmts = parse_raw(sql)?;
    if sql.as_bytes().windows(7).any(|w| w.eq_ignore_ascii_case(b"lateral")) {
        plain_lateral_functions(&mut stmts);
    }
    Ok(stmts)
}

/// `LATERAL f(…)` in FROM, which sqlparser parses as a `Function` item,
/// as the plain function call `f(…)`: a function in FROM may read the
/// items to its left anyway (it is implicitly LATERAL, as in PostgreSQL),
/// so `CROSS JOIN LATERAL unnest(t.a)` and `LEFT JOIN LATERAL
/// generate_series(1, t.n) ON true` bind as the forms without the word.
fn plain_lateral_functions(stmts: &mut [ast::Statement]) {
    use sqlparser::ast::VisitMut;
    struct Plain;
    impl ast::VisitorMut for Plain {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            f: &mut ast::TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if let ast::TableFactor::Function {
                lateral: true,
                name,
                args,
                with_ordinality,
                alias,
            } = f
            {
                *f = ast::TableFactor::Table {
                    name: name.clone(),
                    alias: alias.take(),
                    args: Some(ast::TableFunctionArgs {
                        args: std::mem::take(args),
                        settings: None,
                    }),
                    with_hints: Vec::new(),
                    version: None,
                    with_ordinality: *with_ordinality,
                    partitions: Vec::new(),
                    json_path: None,
                    sample: None,
                    index_directives: Vec::new(),
                    inheritance: None,
                };
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    for s in stmts {
        let _ = s.visit(&mut Plain);
    }
}

fn parse_raw(sql: &str) -> Result<Vec<ast::Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| parse_statements(&mut p))
        .map_err(|e| {
            let msg = match e {
                sqlparser::parser::ParserError::ParserError(m)
                | sqlparser::parser::ParserError::TokenizerError(m) => m,
                sqlparser::parser::ParserError::RecursionLimitExceeded => {
                    return Error::user("54001", "statement is too deeply nested");
                }
            };
            Error::user("42601", format!("syntax error: {msg}"))
        })
}

/// sqlparser's `parse_statements` loop, except that PostgreSQL's
/// `CREATE USER name [WITH] options` (which sqlparser reads as Snowflake's
/// CREATE USER) is read as CREATE ROLE with LOGIN by default, as
/// PostgreSQL defines it.
fn parse_statements(
    p: &mut Parser,
) -> std::result::Result<Vec<ast::Statement>, sqlparser::parser::ParserError> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::Token;
    let mut stmts = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while p.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if matches!(p.peek_token_ref().token, Token::EOF) {
            break;
        }
        if expecting_delimiter {
            return p.expected_ref("end of statement", p.peek_token_ref());
        }
        let is_kw = |t: &sqlparser::tokenizer::TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
        let [a, b, c] = p.peek_tokens_ref::<3>();
        let create_user =
            is_kw(a, Keyword::CREATE) && is_kw(b, Keyword::USER) && !is_kw(c, Keyword::MAPPING);
        if create_user {
            let _ = p.parse_keywords(&[Keyword::CREATE, Keyword::USER]);
            let mut role = p.parse_create_role(ast::RoleKeyword::Role)?;
            role.login.get_or_insert(true);
            stmts.push(ast::Statement::CreateRole(role));
        } else {
            stmts.push(p.parse_statement()?);
        }
        expecting_delimiter = true;
    }
    Ok(stmts)
}

/// A result column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    /// The table column it reads, as RowDescription reports it: the
    /// relation's oid (`pg_class.oid`) and the column's `attnum`; both 0
    /// for an expression (see `plan::ColumnOrigin`).
    pub table_oid: u32,
    pub column_id: i16,
}

impl Column {
    /// A column computed by an expression (no table column).
    pub fn new(name: impl Into<String>, data_type: DataType) -> Column {
        Column { name: name.into(), data_type, table_oid: 0, column_id: 0 }
    }

    /// The columns of a bound query, with their origins.
    pub fn of_query(q: &crate::plan::Query) -> Vec<Column> {
        q.columns
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let (table_oid, column_id) = q.origin(i).unwrap_or((0, 0));
                Column { name: name.clone(), data_type: t.clone(), table_oid, column_id }
            })
            .collect()
    }
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Empty for statements that return no rows. Shared: a prepared
    /// query's are made once per plan, not per execution.
    pub columns: Arc<[Column]>,
    pub rows: Vec<Vec<Value>>,
    /// PostgreSQL's command tag: "SELECT 3", "INSERT 0 1", "CREATE TABLE".
    pub tag: String,
}

impl QueryResult {
    fn command(tag: impl Into<String>) -> QueryResult {
        QueryResult { columns: no_columns(), rows: Vec::new(), tag: tag.into() }
    }
}

/// The columns of a statement that returns no rows: one shared empty
/// list (`Arc::new([])` allocates its counts at each call, and BEGIN,
/// UPDATE and COMMIT each make one).
pub(crate) fn no_columns() -> Arc<[Column]> {
    static EMPTY: std::sync::LazyLock<Arc<[Column]>> = std::sync::LazyLock::new(|| Arc::new([]));
    EMPTY.clone()
}

pub(crate) struct Shared {
    pub engine: Arc<dyn Engine>,
    pub mvcc: Arc<Mvcc>,
    pub catalog: Catalog,
    pub rowids: RowIds,
    /// See `Database::set_query_value_limit`.
    pub value_limit: std::sync::atomic::AtomicUsize,
    /// Numbers sessions (for their temporary schemas).
    pub next_session: std::sync::atomic::AtomicU64,
    /// Where sorts and aggregates spill (`exec::spill`); None: the
    /// system's temporary directory.
    pub temp_dir: Option<Arc<Path>>,
    /// The live sessions (`activity`).
    pub sessions: Arc<crate::activity::Registry>,
    /// What new sessions start with (`Database::set_session_default`).
    pub defaults: parking_lot::Mutex<Limits>,
    /// Statement counters of every session (`metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The buffer pool's size (`shared_buffers`; the memory engine has none
    /// and reports the default).
    pub buffer_pool_bytes: usize,
}

/// An open database; cheap to clone, shared by its sessions.
#[derive(Clone)]
pub struct Database {
    pub(crate) shared: Arc<Shared>,
}

impl Database {
    /// Opens (or creates) a database in a directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Database> {
        Self::open_with_buffer_pool(dir, Options::default().pool_bytes)
    }

    /// Opens (or creates) a database in a directory, with a buffer pool of
    /// `bytes` (PostgreSQL's `shared_buffers`; at least 192 kB).
    pub fn open_with_buffer_pool(dir: impl AsRef<Path>, bytes: usize) -> Result<Database> {
        if bytes < MIN_BUFFER_POOL {
            return Err(Error::user(
                "22023",
                format!(
                    "{bytes} bytes is outside the valid range for parameter \"shared_buffers\" \
                     (at least {MIN_BUFFER_POOL} bytes)"
                ),
            ));
        }
        let opts = Options { pool_bytes: bytes, ..Options::default() };
        let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.as_ref(), opts)?);
        Self::build(engine, Some(dir.as_ref().join("tmp").into()), bytes)
    }

    /// A database in memory, gone when dropped.
    pub fn memory() -> Result<Database> {
        Self::with_engine(Arc::new(MemoryEngine::new()))
    }

    pub fn with_engine(engine: Arc<dyn Engine>) -> Result<Database> {
        Self::build(engine, None, Options::default().pool_bytes)
    }

    fn build(
        engine: Arc<dyn Engine>,
        temp_dir: Option<Arc<Path>>,
        buffer_pool_bytes: usize,
    ) -> Result<Database> {
        let mvcc = Arc::new(Mvcc::open(
            engine.clone(),
            MvccOptions { gc_interval: Some(Duration::from_secs(1)), ..MvccOptions::default() },
        )?);
        crate::storage::check_key_layout(engine.as_ref())?;
        let catalog = Catalog::open(mvcc.clone())?;
        let db = Database {
            shared: Arc::new(Shared {
                engine,
                mvcc,
                catalog,
                rowids: RowIds::default(),
                value_limit: std::sync::atomic::AtomicUsize::new(exec::MAX_QUERY_VALUES),
                next_session: std::sync::atomic::AtomicU64::new(1),
                temp_dir,
                sessions: Arc::default(),
                defaults: parking_lot::Mutex::new(Limits {
                    work_mem: exec::spill::DEFAULT_WORK_MEM,
                    statement_timeout: 0,
                    idle_timeout: 0,
                    shared_buffers: buffer_pool_bytes,
                }),
                metrics: crate::metrics::Metrics::default(),
                buffer_pool_bytes,
            }),
        };
        db.drop_temp_schemas(None)?;
        Ok(db)
    }

    /// Drops temporary schemas with their tables: all of them at open (left
    /// by sessions of an earlier process), or one session's when it ends.
    fn drop_temp_schemas(&self, only: Option<&str>) -> Result<()> {
        let sh = &self.shared;
        let mut txn = sh.mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted))?;
        let mut any = false;
        for db in sh.catalog.list(&mut txn, Namespace::Database, 0)? {
            let schemas = match only {
                // One session's: a lookup by name (most sessions have none).
                Some(n) => {
                    sh.catalog.lookup(&mut txn, Namespace::Schema, db.id, n)?.into_iter().collect()
                }
                None => sh.catalog.list(&mut txn, Namespace::Schema, db.id)?,
            };
            for schema in schemas {
                let temp = schema.name.starts_with(crate::names::TEMP_SCHEMA_PREFIX);
                if temp {
                    crate::exec::namespace::clear_rows(sh, &mut txn, &schema)?;
                    sh.catalog.drop(&mut txn, schema.id, true)?;
                    any = true;
                }
            }
        }
        if any {
            txn.commit()?;
        } else {
            txn.rollback();
        }
        Ok(())
    }

    /// The most values one query's joins may hold in memory before it
    /// fails with 53200 (default `exec::MAX_QUERY_VALUES`).
    pub fn set_query_value_limit(&self, values: usize) {
        self.shared.value_limit.store(values, std::sync::atomic::Ordering::Relaxed);
    }

    /// The storage engine underneath (status, checkpoints).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }

    /// Statement counters of all sessions, by interface (`metrics`).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// The transaction layer's counters (commits, rollbacks, serialization
    /// failures), for monitoring.
    pub fn mvcc_status(&self) -> qube_txn::MvccStatus {
        self.shared.mvcc.status()
    }

    /// A new session on the default database `qubedb`, schema `public`.
    pub fn session(&self) -> Result<Session> {
        self.session_in(qube_catalog::BOOTSTRAP_NAME)
    }

    /// A new session in database `name` (3D000 if there is none), as the
    /// superuser `qubedb`.
    pub fn session_in(&self, name: &str) -> Result<Session> {
        self.open_session(SessionOptions {
            database: name.to_string(),
            ..SessionOptions::default()
        })
    }

    /// A new process id for a session (`SessionOptions::pid`): the wire
    /// server takes one per connection, before the session opens, for
    /// its BackendKeyData.
    pub fn next_pid(&self) -> i32 {
        self.shared.sessions.next_pid()
    }

    /// The live sessions (pg_stat_activity's rows).
    pub fn sessions(&self) -> &crate::activity::Registry {
        &self.shared.sessions
    }

    /// A role by name, for authentication (None if there is none).
    pub fn role(&self, name: &str) -> Result<Option<qube_catalog::RoleDef>> {
        let mut txn = self.shared.mvcc.begin(Mode::ReadOnly(Isolation::ReadCommitted))?;
        let r = self.shared.catalog.lookup(&mut txn, Namespace::Role, 0, name)?;
        txn.rollback();
        Ok(r.and_then(|o| match &o.def {
            qube_catalog::Def::Role(r) => Some(r.clone()),
            _ => None,
        }))
    }

    /// Sets what every new session starts with for `statement_timeout`,
    /// `idle_in_transaction_session_timeout` or `work_mem` (PostgreSQL's
    /// units; 22023 for a bad value, 42704 for another name).
    pub fn set_session_default(&self, name: &str, value: &str) -> Result<()> {
        let mut d = self.shared.defaults.lock();
        match name {
            "statement_timeout" | "idle_in_transaction_session_timeout" => {
                let ms = exec::interrupt::parse_duration_ms(name, value)?;
                if name == "statement_timeout" {
                    d.statement_timeout = ms;
                } else {
                    d.idle_timeout = ms;
                }
            }
            "work_mem" => {
                d.work_mem = exec::spill::parse_memory("work_mem", value, 64, 2_147_483_647)?;
            }
            _ => {
                return Err(Error::user(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                ));
            }
        }
        Ok(())
    }

    /// A new session in database `name` as role `user`: 3D000 if the
    /// database does not exist, 28000 if the role does not (the caller
    /// has authenticated it).
    pub fn session_as(&self, name: &str, user: &str) -> Result<Session> {
        self.open_session(SessionOptions {
            database: name.to_string(),
            user: Some(user.to_string()),
            ..SessionOptions::default()
        })
    }

    /// A new session as `options` describe it (3D000 if the database
    /// does not exist, 28000 if the role does not; the caller has
    /// authenticated it); it shows in `pg_stat_activity` until dropped.
    pub fn open_session(&self, options: SessionOptions) -> Result<Session> {
        let SessionOptions { database: name, user, application_name, client, pid, interface } =
            options;
        let name = if name.is_empty() { qube_catalog::BOOTSTRAP_NAME } else { name.as_str() };
        let user = user.unwrap_or_else(|| qube_catalog::BOOTSTRAP_NAME.to_string());
        let user = user.as_str();
        let c = &self.shared.catalog;
        let mut txn = self.shared.mvcc.begin(Mode::ReadOnly(Isolation::ReadCommitted))?;
        if c.lookup(&mut txn, Namespace::Role, 0, user)?.is_none() {
            return Err(Error::user("28000", format!("role \"{user}\" does not exist")));
        }
        let db = c
            .lookup(&mut txn, Namespace::Database, 0, name)?
            .ok_or_else(|| Error::user("3D000", format!("database \"{name}\" does not exist")))?;
        txn.rollback();
        let activity = Arc::new(crate::activity::Activity::new(
            pid.unwrap_or_else(|| self.next_pid()),
            db.id,
            db.name.clone(),
            user.to_string(),
            application_name,
            client,
            datetime::clock_now(),
        ));
        self.shared.sessions.register(activity.clone());
        let counters = self.shared.metrics.session_opened(interface);
        let defaults = *self.shared.defaults.lock();
        Ok(Session {
            db: self.clone(),
            database: db.id,
            db_name: db.name.clone(),
            user: user.to_string(),
            search_path: crate::names::parse_search_path(DEFAULT_SEARCH_PATH),
            seqs: Arc::default(),
            path_cache: None,
            settings_cache: None,
            temp_name: format!(
                "{}{}",
                crate::names::TEMP_SCHEMA_PREFIX,
                self.shared.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            txn: None,
            failed: false,
            settings: Arc::default(),
            work_mem: defaults.work_mem,
            statement_timeout: defaults.statement_timeout,
            idle_timeout: defaults.idle_timeout,
            implicit_pending: false,
            implicit: false,
            cancel: activity.interrupt.clone(),
            activity,
            counters,
            sql: Arc::from(""),
            notices: Vec::new(),
            default_isolation: Isolation::ReadCommitted,
            block_marks: BlockMarks::default(),
            plans: crate::exec::FastMap::default(),
            simple: Default::default(),
            sql_prepared: HashMap::new(),
            plan_key: None,
            zone: (datetime::Zone::UTC, "UTC".into()),
            txn_ts: 0,
            zone_saved: None,
        })
    }
}

/// One statement of a text: sqlparser's, or one `utility` recognises
/// (COPY, VACUUM, ANALYZE).
// Statements are parsed into a short-lived Vec; boxing the common
// variant would cost an allocation per statement.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Stmt {
    Sql(ast::Statement),
    Util(Box<crate::utility::Utility>),
}

impl Stmt {
    fn sql(&self) -> Option<&ast::Statement> {
        match self {
            Stmt::Sql(s) => Some(s),
            Stmt::Util(_) => None,
        }
    }
}

/// Parses SQL text into statements: those `utility` recognises by their
/// first word, the others with sqlparser (`parse`).
fn parse_stmts(sql: &str) -> Result<Vec<Stmt>> {
    if !crate::utility::mentions(sql) {
        return Ok(parse(sql)?.into_iter().map(Stmt::Sql).collect());
    }
    let pieces = crate::utility::split(sql);
    let mut ours = Vec::with_capacity(pieces.len());
    for &(a, b) in &pieces {
        ours.push(crate::utility::recognise(&sql[a..b])?);
    }
    if ours.iter().all(Option::is_none) {
        return Ok(parse(sql)?.into_iter().map(Stmt::Sql).collect());
    }
    let mut out = Vec::with_capacity(pieces.len());
    for (&(a, b), u) in pieces.iter().zip(ours) {
        match u {
            Some(u) => out.push(Stmt::Util(Box::new(u))),
            None => {
                // Blanked up to the piece, so that an error's line and
                // column are those of the whole text.
                let mut padded: String =
                    sql[..a].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
                padded.push_str(&sql[a..b]);
                out.extend(parse(&padded)?.into_iter().map(Stmt::Sql));
            }
        }
    }
    Ok(out)
}

/// What a statement of a `Prepared` does with the client's copy
/// sub-protocol (`Prepared::copy_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// COPY … FROM STDIN: run it with `Session::copy_in`.
    In,
    /// COPY … TO STDOUT: run it with `Session::copy_out`.
    Out,
}

/// Who opens a session and from where (`Database::open_session`).
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The database to connect to (empty: `qubedb`).
    pub database: String,
    /// The role the session runs as, which must exist (None: `qubedb`).
    pub user: Option<String>,
    pub application_name: String,
    /// The client's address, for a session of a network connection.
    pub client: Option<std::net::SocketAddr>,
    /// The process id (from `Database::next_pid`); a new one if None.
    pub pid: Option<i32>,
    /// How the session's statements are counted (`metrics`).
    pub interface: crate::metrics::Interface,
}

/// Parsed statements, ready to execute many times.
pub struct Prepared {
    id: u64,
    stmts: Arc<Stmts>,
    /// The text, for error positions and pg_stat_activity.
    sql: Arc<str>,
    /// Values for the parameters `Session::prepare_simple` made of the
    /// text's numbers (see `autoparam`); empty otherwise.
    literals: Vec<Value>,
}

/// A text's statements, shared by the `Prepared`s of the texts that differ
/// only in their numbers (`autoparam`).
pub(crate) struct Stmts(Vec<Stmt>);

impl std::ops::Deref for Stmts {
    type Target = Vec<Stmt>;
    fn deref(&self) -> &Vec<Stmt> {
        &self.0
    }
}

impl Drop for Stmts {
    fn drop(&mut self) {
        for s in std::mem::take(&mut self.0) {
            if let Stmt::Sql(s) = s {
                dismantle(s);
            }
        }
    }
}

/// A simple-query text and what one read of it found (its numbers,
/// `autoparam::scan`), for [`Session::prepare_simple_text`]. It holds the
/// text, so the scan cannot be paired with another.
pub struct SimpleText {
    sql: String,
    scan: Option<crate::autoparam::Scan>,
}

impl SimpleText {
    pub fn new(sql: String) -> SimpleText {
        let scan = crate::autoparam::scan(&sql);
        SimpleText { sql, scan }
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// A hash of the text with its numbers left out, the same for texts
    /// that differ only in them; None if the text is not read that way
    /// (it has no numbers, or forms the scanner leaves alone) or holds a
    /// string literal (the key keeps strings, and a caller's shape may
    /// want them left out as well).
    pub fn shape(&self) -> Option<u64> {
        self.scan.as_ref().filter(|s| !s.strings).map(crate::autoparam::Scan::shape)
    }
}

/// A statement text `prepare_simple` parsed, under its key (`autoparam`).
struct SimpleEntry {
    /// The prepared id its plans are cached under.
    id: u64,
    stmts: Arc<Stmts>,
    /// For each number of the text: its parameter, or None if it stayed
    /// literal (then a text matches only with the same number there).
    params: Vec<Option<usize>>,
    /// For each number that is a parameter under unary minus: the class
    /// of its negative value (a text whose number there has another is a
    /// miss).
    negated: Vec<Option<crate::autoparam::Class>>,
    /// The numbers that stayed literal, in order.
    fixed: Vec<Box<str>>,
}

/// Texts whose parsed statements a session keeps (`prepare_simple`).
const SIMPLE_ENTRIES: usize = 256;

impl Prepared {
    /// How many statements the text holds.
    pub fn len(&self) -> usize {
        self.stmts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stmts.is_empty()
    }

    /// The parameter values to run with: the text's numbers for a
    /// statement of `Session::prepare_simple`, else the caller's.
    fn params<'a>(&'a self, given: &'a [Value]) -> &'a [Value] {
        if self.literals.is_empty() { given } else { &self.literals }
    }

    /// The statement whose spans locate an error in `sql`: not a shared
    /// one, whose spans are those of another text.
    fn positioned<'a>(&self, s: &'a Stmt) -> Option<&'a ast::Statement> {
        if self.literals.is_empty() { s.sql() } else { None }
    }

    /// Whether statement `index` is a COPY from or to the client.
    pub fn copy_kind(&self, index: usize) -> Option<CopyKind> {
        match self.stmts.get(index)? {
            Stmt::Util(u) => match u.as_ref() {
                crate::utility::Utility::Copy(c)
                    if c.target == crate::utility::CopyTarget::Client =>
                {
                    Some(if c.to { CopyKind::Out } else { CopyKind::In })
                }
                _ => None,
            },
            Stmt::Sql(_) => None,
        }
    }
}

static NEXT_PREPARED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A bound query or INSERT kept for a prepared statement, valid while no
/// DDL has committed since (`Mvcc::ddl_version`).
type CachedPlan = (qube_txn::Ts, Bound);

#[derive(Clone)]
enum Bound {
    Query(Arc<QueryPlan>),
    Insert(Arc<crate::exec::dml::InsertPlan>),
    Update(Arc<crate::exec::dml::UpdatePlan>),
    Delete(Arc<crate::exec::dml::DeletePlan>),
}

/// A kind of plan a prepared statement keeps in its `Bound` slot.
trait Cacheable: Sized {
    fn get(b: &Bound) -> Option<&Arc<Self>>;
    fn wrap(p: Arc<Self>) -> Bound;
}

macro_rules! cacheable {
    ($($variant:ident => $plan:ty),* $(,)?) => {$(
        impl Cacheable for $plan {
            fn get(b: &Bound) -> Option<&Arc<Self>> {
                match b {
                    Bound::$variant(p) => Some(p),
                    _ => None,
                }
            }
            fn wrap(p: Arc<Self>) -> Bound {
                Bound::$variant(p)
            }
        }
    )*};
}

/// A bound query and its result's columns (`Column::of_query`), which
/// each execution of a prepared query shares.
struct QueryPlan {
    query: crate::plan::Query,
    columns: Arc<[Column]>,
}

impl QueryPlan {
    fn new(query: crate::plan::Query) -> QueryPlan {
        let columns = Column::of_query(&query).into();
        QueryPlan { query, columns }
    }
}

cacheable! {
    Query => QueryPlan,
    Insert => crate::exec::dml::InsertPlan,
    Update => crate::exec::dml::UpdatePlan,
    Delete => crate::exec::dml::DeletePlan,
}

/// The plan in `slot` if it is of kind `P` and was bound against the
/// catalog this transaction sees, else a new one from `bind`, kept in
/// `slot` when it may be reused.
fn cached_plan<P: Cacheable>(
    shared: &Shared,
    txn: &mut Transaction,
    slot: Option<&mut CachedPlan>,
    bind: impl FnOnce(&mut Transaction) -> Result<P>,
) -> Result<Arc<P>> {
    let version = shared.mvcc.ddl_version();
    let usable = !txn.has_ddl() && txn.read_ts() >= version && version > 0;
    if usable
        && let Some((v, b)) = slot.as_deref()
        && *v == version
        && let Some(p) = P::get(b)
    {
        return Ok(p.clone());
    }
    let p = Arc::new(bind(txn)?);
    if let Some(slot) = slot
        && usable
    {
        *slot = (version, P::wrap(p.clone()));
    }
    Ok(p)
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            t.rollback();
        }
        // The session's temporary tables go with it (best effort: what a
        // failure leaves is dropped at the next open).
        let _ = self.db.drop_temp_schemas(Some(&self.temp_name));
        self.db.shared.sessions.unregister(self.activity.pid);
        self.db.shared.metrics.session_closed(&self.counters);
    }
}

/// What a statement's `SearchPath` is resolved from.
struct Names<'s> {
    catalog: &'s qube_catalog::Catalog,
    db: ObjectId,
    db_name: &'s str,
    path: &'s [String],
    user: &'s str,
    seqs: &'s Arc<parking_lot::Mutex<crate::exec::sequence::SeqValues>>,
    temp: &'s str,
}

/// The resolved search path, kept while the catalog does not change.
type PathCache = Option<(qube_txn::Ts, Arc<SearchPath>)>;

impl Names<'_> {
    /// The statement's search path: resolved again only when DDL has
    /// committed since, or the transaction has DDL of its own (a per-
    /// statement resolution cost a few catalog lookups and allocations on
    /// every point query).
    fn cached(&self, cache: &mut PathCache, txn: &mut Transaction) -> Result<Arc<SearchPath>> {
        let version = self.catalog.mvcc().ddl_version();
        let usable = !txn.has_ddl() && txn.read_ts() >= version;
        if usable
            && let Some((v, p)) = cache
            && *v == version
        {
            return Ok(p.clone());
        }
        let path = Arc::new(self.resolve(txn)?);
        if usable {
            *cache = Some((version, path.clone()));
        }
        Ok(path)
    }

    fn resolve(&self, txn: &mut Transaction) -> Result<SearchPath> {
        SearchPath::resolve(
            self.catalog,
            txn,
            self.db,
            self.db_name,
            self.path,
            self.user,
            self.seqs,
            self.temp,
        )
    }
}

/// Where `Session::execute_streaming` sends result rows. The row is
/// lent: the executor decodes the next row into the same buffers (a
/// sink that keeps a row copies it, `row.to_vec()`).
pub type RowSink<'a> = dyn FnMut(&[Column], &[Value]) -> Result<()> + 'a;

/// PostgreSQL's default `search_path`.
pub const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// One connection's state.
pub struct Session {
    db: Database,
    /// The current database, its name, and the session's role name.
    database: ObjectId,
    db_name: String,
    user: String,
    /// `search_path`, parsed (see `names`).
    search_path: Vec<String>,
    /// What `currval` and `lastval` return.
    seqs: Arc<parking_lot::Mutex<crate::exec::sequence::SeqValues>>,
    /// This session's schema for temporary tables (see `names`).
    temp_name: String,
    /// The last resolved search path (see `Names::cached`).
    path_cache: PathCache,
    /// The settings snapshot statements share (`settings_lookup`).
    settings_cache: Option<SettingsCache>,
    /// The explicit transaction (between BEGIN and COMMIT/ROLLBACK).
    txn: Option<Transaction>,
    failed: bool,
    /// SET values without a field of their own (shared with running
    /// statements' `current_setting`, copied on write).
    settings: Arc<HashMap<String, String>>,
    /// `work_mem` in bytes (see `exec::spill`).
    work_mem: usize,
    /// `statement_timeout` in milliseconds (0: none).
    statement_timeout: u64,
    /// In an implicit block (`begin_implicit`): whether one is requested,
    /// and whether `txn` is its transaction.
    implicit_pending: bool,
    implicit: bool,
    /// `idle_in_transaction_session_timeout` in milliseconds (0: none);
    /// the server enforces it.
    idle_timeout: u64,
    /// Set by a `Canceller` to stop the running statement, or to end the
    /// session (`activity::INTERRUPT_*`); the activity's flag.
    cancel: Arc<std::sync::atomic::AtomicU8>,
    /// This session in the database's registry (pg_stat_activity).
    activity: Arc<crate::activity::Activity>,
    /// This session's statement counters (`metrics`; it alone writes them).
    counters: Arc<crate::metrics::SessionCounters>,
    /// The text of the statements being run (pg_stat_activity.query).
    sql: Arc<str>,
    /// Notices raised by the last `execute*` call (`take_notices`).
    notices: Vec<crate::notice::Notice>,
    default_isolation: Isolation,
    /// What the open transaction did that SET TRANSACTION depends on.
    block_marks: BlockMarks,
    /// Bound plans of prepared statements, by (prepared id, statement).
    plans: crate::exec::FastMap<(u64, usize), CachedPlan>,
    /// Statement texts of the simple protocol, by key (`prepare_simple`).
    simple: crate::exec::FastMap<String, SimpleEntry>,
    /// Statements of SQL's `PREPARE name AS …`, by name, with their
    /// parameters' types (`EXECUTE`, `DEALLOCATE`).
    sql_prepared: HashMap<String, (Prepared, Vec<DataType>)>,
    /// The prepared statement being executed, if any.
    plan_key: Option<(u64, usize)>,
    /// The `TimeZone` setting and its name as SHOW gives it.
    zone: (datetime::Zone, String),
    /// When the current transaction started (`now()`), µs since 2000.
    txn_ts: i64,
    /// The zone before the transaction block changed it, and whether the
    /// change was SET LOCAL (see `statement`).
    zone_saved: Option<((datetime::Zone, String), bool)>,
}

impl Session {
    /// Runs every statement of `sql` in order; stops at the first error.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<QueryResult>> {
        self.execute_with(sql, &[])
    }

    /// As `execute`, with values for `$1`, `$2`, ….
    pub fn execute_with(&mut self, sql: &str, params: &[Value]) -> Result<Vec<QueryResult>> {
        self.run_sql(sql, params, None)
    }

    /// As `execute_with`, but each row of a query's result goes to
    /// `on_row` (with the result's columns) as the executor produces it,
    /// instead of being collected: the returned results of queries have
    /// their columns and tag and no rows. An error from `on_row` (a client
    /// gone) stops the statement with that error.
    pub fn execute_streaming(
        &mut self,
        sql: &str,
        params: &[Value],
        on_row: &mut RowSink,
    ) -> Result<Vec<QueryResult>> {
        self.run_sql(sql, params, Some(on_row))
    }

    fn run_sql(
        &mut self,
        sql: &str,
        params: &[Value],
        sink: Option<&mut RowSink>,
    ) -> Result<Vec<QueryResult>> {
        self.notices.clear();
        if *self.sql != *sql {
            self.sql = Arc::from(sql);
        }
        let stmts = match parse_stmts(sql) {
            Ok(s) => s,
            Err(e) => {
                self.fail();
                self.counters.error(None);
                return Err(crate::position::locate(e, sql, None));
            }
        };
        let res = self.run_parsed(sql, &stmts, params, sink);
        for s in stmts {
            if let Stmt::Sql(s) = s {
                dismantle(s);
            }
        }
        res
    }

    /// Parses once, for `execute_prepared` many times (the statements are
    /// bound at each execution, so they see the catalog as it is then).
    pub fn prepare(&mut self, sql: &str) -> Result<Prepared> {
        let stmts = parse_stmts(sql).map_err(|e| {
            self.counters.error(None);
            crate::position::locate(e, sql, None)
        })?;
        Ok(Prepared {
            id: NEXT_PREPARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stmts: Arc::new(Stmts(stmts)),
            sql: Arc::from(sql),
            literals: Vec::new(),
        })
    }

    /// As `prepare`, for a text that comes without parameters and runs
    /// once (the wire protocol's simple query): a text that differs from
    /// one prepared before only in numbers in value positions reuses its
    /// parsed statement and bound plan, with the numbers as parameter
    /// values (`autoparam`). Execute it with no parameters.
    pub fn prepare_simple(&mut self, sql: &str) -> Result<Prepared> {
        self.prepare_simple_text(SimpleText::new(sql.to_owned()))
    }

    /// `prepare_simple` of a text the caller has already read with
    /// [`SimpleText::new`] (the wire protocol reads it for its shape).
    pub fn prepare_simple_text(&mut self, text: SimpleText) -> Result<Prepared> {
        let SimpleText { sql, scan } = text;
        let sql = sql.as_str();
        let Some(scan) = scan else {
            return self.prepare(sql);
        };
        if let Some(e) = self.simple.get(&scan.key)
            && let Some(literals) = simple_values(sql, &scan, e)
        {
            return Ok(Prepared {
                id: e.id,
                stmts: e.stmts.clone(),
                sql: Arc::from(sql),
                literals,
            });
        }
        let mut p = self.prepare(sql)?;
        let Some(Stmt::Sql(stmt)) = p.stmts.first() else { return Ok(p) };
        if p.stmts.len() != 1
            || !matches!(
                stmt,
                ast::Statement::Query(_)
                    | ast::Statement::Insert(_)
                    | ast::Statement::Update(_)
                    | ast::Statement::Delete(_)
            )
        {
            return Ok(p);
        }
        let Some(Stmts(stmts)) = Arc::get_mut(&mut p.stmts) else { return Ok(p) };
        let Some(Stmt::Sql(stmt)) = stmts.first_mut() else { return Ok(p) };
        let crate::autoparam::Params { params, negated } =
            crate::autoparam::parameterize(stmt, sql, &scan.numbers);
        if params.iter().all(Option::is_none) {
            return Ok(p);
        }
        let fixed = (scan.numbers.iter().zip(&params))
            .filter(|(_, k)| k.is_none())
            .map(|(n, _)| Box::from(&sql[n.start..n.end]))
            .collect();
        let entry = SimpleEntry { id: p.id, stmts: p.stmts.clone(), params, negated, fixed };
        let Some(literals) = simple_values(sql, &scan, &entry) else { return self.prepare(sql) };
        p.literals = literals;
        if self.simple.len() >= SIMPLE_ENTRIES {
            self.simple.clear();
        }
        self.simple.insert(scan.key, entry);
        Ok(p)
    }

    /// What a prepared statement takes and returns, bound against the
    /// catalog as this session sees it now, without running it (the wire
    /// protocol's Describe). Parameters get the type of the first context
    /// that gives them one (`id = $1`, `VALUES ($1)` into a column,
    /// `$1::int`), `None` where nothing does. A statement that does not
    /// return rows has no columns. Only the first statement is described.
    pub fn describe(&mut self, p: &Prepared) -> Result<Description> {
        let count = placeholder_count(&p.sql);
        let Some(s) = p.stmts.first().and_then(Stmt::sql) else {
            return Ok(Description { params: vec![None; count], columns: Vec::new() });
        };
        let (mut params, columns) = match self.describe_statement(s) {
            Ok(d) => d,
            Err(e) => return Err(crate::position::locate(e, &p.sql, Some(s))),
        };
        params.resize(count.max(params.len()), None);
        Ok(Description { params, columns })
    }

    fn describe_statement(
        &mut self,
        s: &ast::Statement,
    ) -> Result<(Vec<Option<DataType>>, Vec<Column>)> {
        use ast::Statement as S;
        let text = |name: String| vec![Column::new(name, DataType::Text)];
        match s {
            S::ShowVariable { variable } => {
                let name =
                    variable.iter().map(crate::plan::bind::ident).collect::<Vec<_>>().join(" ");
                return Ok((Vec::new(), text(name)));
            }
            S::Explain { .. } => return Ok((Vec::new(), text("QUERY PLAN".into()))),
            // EXECUTE answers with its statement's columns.
            S::Execute { name: Some(name), .. } => {
                let name = crate::plan::bind::object_name(name)?.pop().unwrap_or_default();
                let Some(stmt) = self
                    .sql_prepared
                    .get(&name)
                    .and_then(|(p, _)| p.stmts.first().and_then(Stmt::sql).cloned())
                else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let (_, columns) = self.describe_statement(&stmt)?;
                return Ok((Vec::new(), columns));
            }
            S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_) => {}
            _ => return Ok((Vec::new(), Vec::new())),
        }
        if self.failed {
            return Err(Error::user(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let shared = self.db.shared.clone();
        let names = Names {
            catalog: &shared.catalog,
            db: self.database,
            db_name: &self.db_name,
            path: &self.search_path,
            user: &self.user,
            seqs: &self.seqs,
            temp: &self.temp_name,
        };
        let mut own = None;
        let txn = match self.txn.as_mut() {
            Some(t) => t,
            None => own.insert(shared.mvcc.begin(Mode::ReadOnly(Isolation::ReadCommitted))?),
        };
        crate::plan::bind::take_param_types();
        let res = names
            .cached(&mut self.path_cache, txn)
            .and_then(|path| describe_bound(&shared, txn, &path, s));
        let params = crate::plan::bind::take_param_types();
        if let Some(t) = own {
            t.rollback();
        }
        Ok((params, res?))
    }

    /// Drops the statement SQL's `PREPARE` made under `name` (None: all of
    /// them); an unknown name is 26000. The wire protocol's named
    /// statements are the connection's, not the session's.
    pub fn deallocate(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => self.sql_prepared.clear(),
            Some(n) if self.sql_prepared.remove(n).is_some() => {}
            Some(n) => {
                return Err(Error::user(
                    "26000",
                    format!("prepared statement \"{n}\" does not exist"),
                ));
            }
        }
        Ok(())
    }

    /// `PREPARE name [(types)] AS statement`: bound now, as PostgreSQL
    /// binds it (errors show here, and each parameter gets its type: the
    /// declared one, else the one its context gives, else text).
    fn sql_prepare(
        &mut self,
        name: &ast::Ident,
        declared: &[ast::DataType],
        stmt: &ast::Statement,
    ) -> Result<QueryResult> {
        use ast::Statement as S;
        let name = crate::plan::bind::ident(name);
        if self.sql_prepared.contains_key(&name) {
            return Err(Error::user(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        if !matches!(stmt, S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_)) {
            return Err(Error::user(
                "42601",
                "PREPARE takes SELECT, VALUES, INSERT, UPDATE or DELETE",
            ));
        }
        let declared: Vec<DataType> =
            declared.iter().map(crate::plan::bind::data_type_of).collect::<Result<_>>()?;
        let p = Prepared {
            id: NEXT_PREPARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stmts: Arc::new(Stmts(vec![Stmt::Sql(stmt.clone())])),
            sql: Arc::from(stmt.to_string()),
            literals: Vec::new(),
        };
        let (inferred, _) = self.describe_statement(stmt)?;
        let count = placeholder_count(&p.sql).max(declared.len()).max(inferred.len());
        let mut types = Vec::with_capacity(count);
        for i in 0..count {
            let t = declared.get(i).cloned().or_else(|| inferred.get(i).cloned().flatten());
            types.push(t.unwrap_or(DataType::Text));
        }
        self.sql_prepared.insert(name, (p, types));
        Ok(QueryResult::command("PREPARE"))
    }

    /// `EXECUTE name [(arguments)]`: the arguments are evaluated (they may
    /// use the enclosing statement's own parameters) and cast to the
    /// parameters' types, then the statement runs with them and answers
    /// with its own rows and command tag, as in PostgreSQL.
    fn sql_execute(
        &mut self,
        name: &ast::ObjectName,
        args: &[ast::Expr],
        outer: &[Value],
        sink: Option<&mut RowSink>,
    ) -> Result<QueryResult> {
        let parts = crate::plan::bind::object_name(name)?;
        let name = parts.last().cloned().unwrap_or_default();
        let Some((p, types)) = self.sql_prepared.get(&name) else {
            return Err(Error::user(
                "26000",
                format!("prepared statement \"{name}\" does not exist"),
            ));
        };
        let (stmts, types, id) = (p.stmts.clone(), types.clone(), p.id);
        if args.len() != types.len() {
            return Err(Error::user(
                "42601",
                format!("wrong number of parameters for prepared statement \"{name}\""),
            )
            .with_detail(format!(
                "Expected {} parameters but got {}.",
                types.len(),
                args.len()
            )));
        }
        let mut values = Vec::with_capacity(args.len());
        if !args.is_empty() {
            let list: Vec<String> = args.iter().map(ToString::to_string).collect();
            let select = parse_stmts(&format!("SELECT {}", list.join(", ")))?;
            let Some(Stmt::Sql(select)) = select.first() else {
                return Err(Error::Internal("EXECUTE's arguments did not parse".into()));
            };
            // Not under the EXECUTE's own cached plan (`plan_key`): that
            // slot is the EXECUTE text's.
            let key = self.plan_key.take();
            let r = self.statement_inner(select, outer, None);
            self.plan_key = key;
            for (v, t) in r?.rows.into_iter().next().unwrap_or_default().into_iter().zip(&types) {
                values.push(crate::types::cast::cast(v, t)?);
            }
        }
        let Some(stmt) = stmts.first().and_then(Stmt::sql) else {
            return Err(Error::Internal("a prepared statement without its statement".into()));
        };
        // The prepared statement keeps its plan from one EXECUTE to the
        // next, as a wire-protocol statement does (bound again after DDL).
        let key = self.plan_key.replace((id, 0));
        let r = self.statement_inner(stmt, &values, sink);
        self.plan_key = key;
        r
    }

    pub fn execute_prepared(&mut self, p: &Prepared, params: &[Value]) -> Result<Vec<QueryResult>> {
        self.run_prepared(p, params, None)
    }

    /// As `execute_prepared`, streaming query rows to `on_row` (see
    /// `execute_streaming`).
    pub fn execute_prepared_streaming(
        &mut self,
        p: &Prepared,
        params: &[Value],
        on_row: &mut RowSink,
    ) -> Result<Vec<QueryResult>> {
        self.run_prepared(p, params, Some(on_row))
    }

    /// Runs statement `index` of `p` only, streaming query rows to
    /// `on_row` (the wire protocol's simple query answers each statement
    /// before it runs the next).
    pub fn execute_prepared_nth_streaming(
        &mut self,
        p: &Prepared,
        index: usize,
        params: &[Value],
        on_row: &mut RowSink,
    ) -> Result<QueryResult> {
        let s = p.stmts.get(index).ok_or_else(|| {
            Error::Internal(format!("statement {index} of {} prepared", p.stmts.len()))
        })?;
        self.notices.clear();
        self.use_sql(&p.sql);
        self.plan_key = Some((p.id, index));
        let r = self.statement(s, p.params(params), Some(on_row));
        self.plan_key = None;
        r.map_err(|e| crate::position::locate(e, &p.sql, p.positioned(s)))
    }

    /// The query text pg_stat_activity shows from now on. A prepared
    /// statement run again keeps its text's `Arc` as it is: no reference
    /// count changes hands (each is an atomic read-modify-write, and a
    /// statement's bookkeeping did twenty of them).
    fn use_sql(&mut self, sql: &Arc<str>) {
        if !Arc::ptr_eq(&self.sql, sql) {
            self.sql = sql.clone();
        }
    }

    fn run_prepared(
        &mut self,
        p: &Prepared,
        params: &[Value],
        mut sink: Option<&mut RowSink>,
    ) -> Result<Vec<QueryResult>> {
        self.notices.clear();
        self.use_sql(&p.sql);
        let mut out = Vec::with_capacity(p.stmts.len());
        for (i, s) in p.stmts.iter().enumerate() {
            self.plan_key = Some((p.id, i));
            let r = self.statement(s, p.params(params), sink.as_deref_mut());
            self.plan_key = None;
            out.push(r.map_err(|e| crate::position::locate(e, &p.sql, p.positioned(s)))?);
        }
        Ok(out)
    }

    fn run_parsed(
        &mut self,
        sql: &str,
        stmts: &[Stmt],
        params: &[Value],
        mut sink: Option<&mut RowSink>,
    ) -> Result<Vec<QueryResult>> {
        let mut out = Vec::with_capacity(stmts.len());
        let implicit = stmts.len() > 1;
        if implicit {
            self.begin_implicit();
        }
        for s in stmts {
            match self.statement(s, params, sink.as_deref_mut()) {
                Ok(r) => out.push(r),
                Err(e) => {
                    if implicit {
                        self.end_implicit(false)?;
                    }
                    return Err(crate::position::locate(e, sql, s.sql()));
                }
            }
        }
        if implicit {
            self.end_implicit(true)?;
        }
        Ok(out)
    }

    /// Starts an implicit transaction block, as PostgreSQL runs the
    /// statements of one multi-statement query string: statements outside
    /// an explicit block share one transaction (begun by the first that
    /// needs one) until `end_implicit`, instead of committing one by one.
    /// BEGIN turns it into an explicit block; COMMIT/ROLLBACK end it, and
    /// later statements begin another.
    pub fn begin_implicit(&mut self) {
        self.implicit_pending = true;
    }

    /// Ends an implicit block: commits its transaction if `ok` and it did
    /// not fail, else rolls it back. An explicit block begun inside stays
    /// open.
    pub fn end_implicit(&mut self, ok: bool) -> Result<()> {
        self.implicit_pending = false;
        if !std::mem::replace(&mut self.implicit, false) {
            return Ok(());
        }
        let failed = std::mem::replace(&mut self.failed, false);
        let mut rolled_back = true;
        let res = match self.txn.take() {
            Some(t) if ok && !failed => {
                rolled_back = false;
                t.commit().map(|_| ())
            }
            Some(t) => {
                t.rollback();
                Ok(())
            }
            None => Ok(()),
        };
        if let Some((zone, local)) = self.zone_saved.take()
            && (rolled_back || local || res.is_err())
        {
            self.zone = zone;
            self.plans.clear();
        }
        res
    }

    /// Whether an explicit transaction is open (and whether it failed).
    pub fn transaction_status(&self) -> (bool, bool) {
        (self.txn.is_some(), self.failed)
    }

    /// How long the session may sit idle inside a transaction block
    /// (`idle_in_transaction_session_timeout`), if limited.
    pub fn idle_in_transaction_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_millis(self.idle_timeout))
    }

    fn fail(&mut self) {
        if self.txn.is_some() {
            self.failed = true;
        }
    }

    /// Marks an open transaction block failed, as an error inside one
    /// does: for errors found outside `execute` (a statement that does not
    /// parse, a parameter that does not decode).
    pub fn fail_transaction(&mut self) {
        self.fail();
    }

    /// The `TimeZone` setting as SHOW gives it.
    /// The role this session runs as (`current_user`).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn time_zone_name(&self) -> &str {
        &self.zone.1
    }

    /// The session's time zone (timestamptz values are printed in it).
    pub fn time_zone(&self) -> datetime::Zone {
        self.zone.0
    }

    /// Sets `TimeZone` as a client's startup parameter does (JDBC sends
    /// its JVM zone, e.g. 'Europe/Berlin'); 22023 if it is not a zone.
    pub fn set_time_zone(&mut self, name: &str) -> Result<()> {
        let v = ast::Expr::Value(ast::Value::SingleQuotedString(name.to_string()).into());
        self.set_time_zone_expr(&v, false).map(|_| ())
    }

    /// Sets a setting as `SET name TO 'value'` does, for a client's startup
    /// parameters (`statement_timeout=5s`, or `-c statement_timeout=5s` in
    /// `options`, which PostgreSQL also applies at connection start); the
    /// same errors as SET.
    pub fn set_parameter(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(Error::user(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        if name.eq_ignore_ascii_case("timezone") {
            return self.set_time_zone(value);
        }
        let sql = format!("SET {name} TO '{}'", value.replace('\'', "''"));
        let stmt = parse(&sql)?;
        match stmt.as_slice() {
            [ast::Statement::Set(set)] => self.set(set).map(|_| ()),
            _ => Err(Error::user(
                "22023",
                format!("invalid value for parameter \"{name}\": \"{value}\""),
            )),
        }
    }

    /// Publishes a statement's environment on the thread that runs it:
    /// now() is the transaction's start, casts and operators read the
    /// session's zone and clock, sorts its work_mem, operators its cancel
    /// flag and deadline. Returns the statement's clock and deadline.
    fn enter_statement(&mut self) -> Result<(i64, Option<std::time::Instant>)> {
        self.enter_statement_at(datetime::clock_now())
    }

    /// `enter_statement` with the clock already read (`now`).
    fn enter_statement_at(&mut self, now: i64) -> Result<(i64, Option<std::time::Instant>)> {
        if self.txn.is_none() {
            self.txn_ts = now;
        }
        // A cancel that arrived before this statement began is dropped; a
        // terminated session runs nothing more. (Read first: the swap is
        // an atomic read-modify-write, rarely needed.)
        use std::sync::atomic::Ordering::Relaxed;
        match self.cancel.load(Relaxed) {
            crate::activity::INTERRUPT_CANCEL => {
                let (cancel, none) =
                    (crate::activity::INTERRUPT_CANCEL, crate::activity::INTERRUPT_NONE);
                let _ = self.cancel.compare_exchange(cancel, none, Relaxed, Relaxed);
            }
            crate::activity::INTERRUPT_TERMINATE => return Err(exec::interrupt::terminated()),
            _ => {}
        }
        let deadline = (self.statement_timeout > 0)
            .then(|| std::time::Instant::now() + Duration::from_millis(self.statement_timeout));
        self.resume_statement(now, deadline);
        Ok((now, deadline))
    }

    /// As `enter_statement`, for a statement that goes on (the next chunk
    /// of a COPY FROM): the same clock and deadline, the cancel flag kept.
    fn resume_statement(&self, now: i64, deadline: Option<std::time::Instant>) {
        datetime::set_env(datetime::Env { zone: self.zone.0, txn_ts: self.txn_ts, stmt_ts: now });
        exec::spill::set_env(self.work_mem, self.db.shared.temp_dir.as_ref());
        let off = |name: &str| {
            !self.settings.is_empty() && self.settings.get(name).is_some_and(|v| v == "off")
        };
        exec::binary_join::set_methods(!off("enable_hashjoin"), !off("enable_mergejoin"));
        exec::interrupt::set_current(Some(&self.cancel), deadline);
    }

    /// Runs one statement: its environment, pg_stat_activity, notices,
    /// the end of a transaction block, and its counters (`metrics`).
    fn statement(
        &mut self,
        s: &Stmt,
        params: &[Value],
        sink: Option<&mut RowSink>,
    ) -> Result<QueryResult> {
        // The statement's one clock read before it runs (its
        // statement_timestamp, pg_stat_activity's query_start, the start
        // of its duration); one more when it ends. A clock read costs ~50
        // ns on this project's VMs, a tenth of a prepared INSERT's time.
        let started = datetime::clock_now();
        let mut returned = 0u64;
        let mut counting;
        let sink = match sink {
            Some(f) => {
                counting = |c: &[Column], row: &[Value]| {
                    returned += 1;
                    f(c, row)
                };
                Some(&mut counting as &mut RowSink)
            }
            None => None,
        };
        let mut took = None;
        let res = self.statement_counted(s, params, sink, started, &mut took);
        let took = took.unwrap_or_else(|| micros_since(started, datetime::clock_now()));
        match &res {
            Ok(r) => self.counters.statement(&r.tag, returned + r.rows.len() as u64, took),
            Err(_) => self.counters.error(Some(took)),
        }
        res
    }

    /// `took` gets the statement's duration (from `started`, the wall
    /// clock in µs) once it has run, read from the clock at its end, which
    /// is pg_stat_activity's state_change too.
    fn statement_counted(
        &mut self,
        s: &Stmt,
        params: &[Value],
        sink: Option<&mut RowSink>,
        started: i64,
        took: &mut Option<Duration>,
    ) -> Result<QueryResult> {
        let in_block = self.txn.is_some();
        let (now, _) = self.enter_statement_at(started)?;
        self.activity.start(&self.sql, now, self.txn_ts);
        // current_setting() and pg_settings read the session's settings;
        // pg_stat_activity and the signal functions the session registry.
        let current = crate::activity::enter(&self.db.shared.sessions, self.activity.pid);
        let settings = crate::system::enter_settings(self.settings_lookup());
        crate::notice::discard();
        let res = crate::published::running(|| match s {
            Stmt::Sql(s) => self.statement_inner(s, params, sink),
            Stmt::Util(u) => self.utility(u),
        });
        crate::system::leave_settings(settings);
        crate::activity::leave(current);
        exec::interrupt::end_statement();
        crate::notice::drain_into(&mut self.notices);
        let state = match (self.txn.is_some(), self.failed || (res.is_err() && self.txn.is_some()))
        {
            (false, _) => crate::activity::SessionState::Idle,
            (true, false) => crate::activity::SessionState::IdleInTransaction,
            (true, true) => crate::activity::SessionState::IdleInTransactionAborted,
        };
        let xact_start = self.txn.is_some().then_some(self.txn_ts);
        let end = datetime::clock_now().max(now);
        *took = Some(micros_since(now, end));
        self.activity.finish(state, xact_start, end);
        // The end of a transaction block: a TimeZone set in it reverts on
        // ROLLBACK, and on COMMIT too if it was SET LOCAL.
        if in_block
            && self.txn.is_none()
            && let Some((zone, local)) = self.zone_saved.take()
        {
            let rolled_back = res.as_ref().is_ok_and(|r| r.tag == "ROLLBACK");
            if rolled_back || local {
                self.zone = zone;
                self.plans.clear();
            }
        }
        res
    }

    fn statement_inner(
        &mut self,
        s: &ast::Statement,
        params: &[Value],
        sink: Option<&mut RowSink>,
    ) -> Result<QueryResult> {
        use ast::Statement as S;
        match s {
            S::StartTransaction { modes, .. } => {
                if self.txn.is_some() {
                    // An implicit block becomes an explicit one; in an
                    // explicit one PostgreSQL warns and carries on.
                    if !self.implicit {
                        crate::notice::raise(crate::notice::Notice::warning(
                            "25001",
                            "there is already a transaction in progress",
                        ));
                    }
                    self.implicit = false;
                    return Ok(QueryResult::command("BEGIN"));
                }
                let mut iso = self.default_isolation;
                let mut read_only = self.default_read_only();
                for m in modes {
                    match m {
                        ast::TransactionMode::IsolationLevel(l) => iso = isolation_of(l),
                        ast::TransactionMode::AccessMode(a) => {
                            read_only = matches!(a, ast::TransactionAccessMode::ReadOnly)
                        }
                    }
                }
                let mode = if read_only { Mode::ReadOnly(iso) } else { Mode::ReadWrite(iso) };
                self.txn = Some(self.db.shared.mvcc.begin(mode)?);
                self.failed = false;
                Ok(QueryResult::command("BEGIN"))
            }
            S::Commit { chain, .. } => {
                if *chain {
                    self.chain_allowed("COMMIT")?;
                }
                let failed = std::mem::replace(&mut self.failed, false);
                if self.txn.is_none() || self.implicit {
                    no_transaction_warning();
                }
                self.implicit = false;
                let mode = self.txn.as_ref().map(|t| t.mode());
                let tag = match self.txn.take() {
                    None => "COMMIT",
                    Some(t) if failed => {
                        t.rollback();
                        "ROLLBACK"
                    }
                    Some(t) => {
                        t.commit()?;
                        "COMMIT"
                    }
                };
                // AND CHAIN: a new block with the same characteristics.
                if *chain && let Some(mode) = mode {
                    self.txn = Some(self.db.shared.mvcc.begin(mode)?);
                }
                Ok(QueryResult::command(tag))
            }
            S::Rollback { savepoint: Some(name), .. } => {
                let Some(t) = self.txn.as_mut() else {
                    return Err(Error::user(
                        "25P01",
                        "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
                    ));
                };
                t.rollback_to(&crate::plan::bind::ident(name)).map_err(|_| {
                    Error::user(
                        "3B001",
                        format!("savepoint \"{}\" does not exist", crate::plan::bind::ident(name)),
                    )
                })?;
                self.failed = false;
                Ok(QueryResult::command("ROLLBACK"))
            }
            S::Rollback { chain, .. } => {
                if *chain {
                    self.chain_allowed("ROLLBACK")?;
                }
                self.failed = false;
                if self.txn.is_none() || self.implicit {
                    no_transaction_warning();
                }
                self.implicit = false;
                let mode = self.txn.as_ref().map(|t| t.mode());
                if let Some(t) = self.txn.take() {
                    t.rollback();
                }
                if *chain && let Some(mode) = mode {
                    self.txn = Some(self.db.shared.mvcc.begin(mode)?);
                }
                Ok(QueryResult::command("ROLLBACK"))
            }
            _ if self.failed => Err(Error::user(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            S::Prepare { name, data_types, statement } => {
                self.sql_prepare(name, data_types, statement)
            }
            S::Execute { name: Some(name), parameters, immediate: false, into, using, .. }
                if into.is_empty() && using.is_empty() =>
            {
                self.sql_execute(name, parameters, params, sink)
            }
            S::Deallocate { name, .. } => {
                let name = crate::plan::bind::ident(name);
                let all = name == "all";
                self.deallocate(if all { None } else { Some(&name) })?;
                Ok(QueryResult::command(if all { "DEALLOCATE ALL" } else { "DEALLOCATE" }))
            }
            // A write in a read-only transaction fails as a statement, as
            // in PostgreSQL, whether or not it would change a row.
            S::Insert(_) | S::Update { .. } | S::Delete(_) | S::Truncate { .. }
                if self.read_only_now() =>
            {
                let what = match s {
                    S::Insert(_) => "INSERT",
                    S::Update { .. } => "UPDATE",
                    S::Delete(_) => "DELETE",
                    _ => "TRUNCATE TABLE",
                };
                Err(Error::user(
                    "25006",
                    format!("cannot execute {what} in a read-only transaction"),
                ))
            }
            S::Savepoint { name } => {
                let Some(t) = self.txn.as_mut() else {
                    return Err(Error::user(
                        "25P01",
                        "SAVEPOINT can only be used in transaction blocks",
                    ));
                };
                t.savepoint(&crate::plan::bind::ident(name));
                self.block_marks.mark(t.id(), false, true);
                Ok(QueryResult::command("SAVEPOINT"))
            }
            S::ReleaseSavepoint { name } => {
                let Some(t) = self.txn.as_mut() else {
                    return Err(Error::user(
                        "25P01",
                        "RELEASE SAVEPOINT can only be used in transaction blocks",
                    ));
                };
                t.release(&crate::plan::bind::ident(name)).map_err(|_| {
                    Error::user(
                        "3B001",
                        format!("savepoint \"{}\" does not exist", crate::plan::bind::ident(name)),
                    )
                })?;
                Ok(QueryResult::command("RELEASE"))
            }
            S::Set(set) => self.set(set),
            S::Reset(r) => self.reset(&r.reset),
            S::ShowVariable { variable } => {
                let name =
                    variable.iter().map(crate::plan::bind::ident).collect::<Vec<_>>().join(" ");
                let value = self.setting(&name)?;
                Ok(QueryResult {
                    columns: Arc::new([Column::new(name.clone(), DataType::Text)]),
                    rows: vec![vec![Value::Text(value)]],
                    tag: "SHOW".into(),
                })
            }
            S::CreateDatabase { .. } | S::Drop { object_type: ast::ObjectType::Database, .. }
                if self.txn.is_some() =>
            {
                let what = if matches!(s, S::CreateDatabase { .. }) { "CREATE" } else { "DROP" };
                self.fail();
                Err(Error::user(
                    "25001",
                    format!("{what} DATABASE cannot run inside a transaction block"),
                ))
            }
            other => self.in_transaction(other, params, sink),
        }
    }

    /// COMMIT/ROLLBACK AND CHAIN need an explicit block (25P01).
    fn chain_allowed(&self, what: &str) -> Result<()> {
        if self.txn.is_none() || self.implicit {
            return Err(Error::user(
                "25P01",
                format!("{what} AND CHAIN can only be used in transaction blocks"),
            ));
        }
        Ok(())
    }

    fn setting(&self, name: &str) -> Result<String> {
        setting_of(&self.settings, &self.zone.1, self.limits(), self.tx_state(), name)
    }

    /// Whether transactions start read-only (`default_transaction_read_only`,
    /// or SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY).
    fn default_read_only(&self) -> bool {
        self.settings.get("default_transaction_read_only").is_some_and(|v| v == "on")
    }

    /// Whether a statement now runs read-only: the open block's mode, else
    /// the session default.
    fn read_only_now(&self) -> bool {
        match &self.txn {
            Some(t) => !matches!(t.mode(), Mode::ReadWrite(_)),
            None => self.default_read_only(),
        }
    }

    /// What the transaction settings show: the isolation level and
    /// whether statements run read-only.
    fn tx_state(&self) -> (Isolation, bool) {
        (self.isolation(), self.read_only_now())
    }

    /// The isolation level of the open block, else the session default.
    fn isolation(&self) -> Isolation {
        self.txn.as_ref().map_or(self.default_isolation, Transaction::isolation)
    }

    /// The session's settings as a running statement reads them
    /// (`current_setting`, `pg_settings`): a snapshot, as of the
    /// statement's start. The snapshot is kept and shared by the
    /// statements that follow until a setting changes (`settings_cache`):
    /// a SET replaces `settings` (copy on write: the cache holds the old
    /// map) or the zone, limits or transaction state, which the check below sees.
    fn settings_lookup(&mut self) -> &crate::system::SettingsLookup {
        let (limits, tx) = (self.limits(), self.tx_state());
        let fresh = self.settings_cache.as_ref().is_some_and(|c| {
            Arc::ptr_eq(&c.settings, &self.settings)
                && c.zone == self.zone.1
                && c.limits == limits
                && c.tx == tx
        });
        if !fresh {
            self.settings_cache = None;
        }
        let (settings, zone) = (&self.settings, &self.zone.1);
        &self
            .settings_cache
            .get_or_insert_with(|| {
                let (s, z) = (settings.clone(), zone.clone());
                let lookup: crate::system::SettingsLookup = Arc::new(move |name: &str| {
                    let lower = name.to_lowercase();
                    setting_of(&s, &z, limits, tx, &lower).ok()
                });
                SettingsCache { settings: settings.clone(), zone: zone.clone(), limits, tx, lookup }
            })
            .lookup
    }

    fn limits(&self) -> Limits {
        Limits {
            work_mem: self.work_mem,
            statement_timeout: self.statement_timeout,
            idle_timeout: self.idle_timeout,
            shared_buffers: self.db.shared.buffer_pool_bytes,
        }
    }

    /// A handle that cancels the statement this session is running, from
    /// any thread (the statement fails with 57014).
    pub fn canceller(&self) -> exec::interrupt::Canceller {
        exec::interrupt::Canceller(self.cancel.clone())
    }

    /// The session's process id (pg_backend_pid, pg_stat_activity.pid).
    pub fn pid(&self) -> i32 {
        self.activity.pid
    }

    /// Whether `pg_terminate_backend` ended this session: its statements
    /// fail with 57P01, and a server closes its connection.
    pub fn is_terminated(&self) -> bool {
        self.activity.is_terminated()
    }

    /// Runs `hook` (from any thread) when another session terminates this
    /// one; at once if that already happened. The server uses it to wake
    /// a connection that waits for its client.
    pub fn on_terminate(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.activity.set_on_terminate(Box::new(hook));
    }

    /// The notices and warnings raised by the last `execute*` call, in
    /// order (taken: a second call returns none).
    pub fn take_notices(&mut self) -> Vec<crate::notice::Notice> {
        std::mem::take(&mut self.notices)
    }

    /// SET TIME ZONE / SET timezone: a name, a POSIX offset string, a
    /// number of hours or an interval (east), LOCAL or DEFAULT.
    fn set_time_zone_expr(&mut self, value: &ast::Expr, local: bool) -> Result<QueryResult> {
        let invalid = |v: &str| {
            Error::user("22023", format!("invalid value for parameter \"TimeZone\": \"{v}\""))
        };
        // A numeric offset (hours, or an interval) beyond a week from UTC.
        let out_of_range = |v: &str| invalid(v).with_detail("UTC timezone offset is out of range.");
        let zone = match value {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                    if s.eq_ignore_ascii_case("default") || s.eq_ignore_ascii_case("local") {
                        (datetime::Zone::UTC, "UTC".to_string())
                    } else if let Ok(h) = s.trim().parse::<f64>() {
                        // A plain number is hours east (the SQL convention), unlike
                        // '+05:30', which is POSIX (west), as in PostgreSQL.
                        if !datetime::zone_offset_in_range(h * 3600.0) {
                            return Err(out_of_range(s));
                        }
                        let secs = (h * 3600.0).round() as i32;
                        (datetime::Zone::Fixed(secs), datetime::offset_zone_name(secs))
                    } else {
                        let z = datetime::parse_zone(s).ok_or_else(|| invalid(s))?;
                        let name = match z {
                            datetime::Zone::Named(tz) => tz.name().to_string(),
                            _ => s.clone(),
                        };
                        (z, name)
                    }
                }
                ast::Value::Number(n, _) => {
                    let h: f64 = n.parse().map_err(|_| invalid(n))?;
                    if !datetime::zone_offset_in_range(h * 3600.0) {
                        return Err(out_of_range(n));
                    }
                    let secs = (h * 3600.0).round() as i32;
                    (datetime::Zone::Fixed(secs), datetime::offset_zone_name(secs))
                }
                other => return Err(invalid(&other.to_string())),
            },
            ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => {
                let ast::Expr::Value(v) = expr.as_ref() else {
                    return Err(invalid(&value.to_string()));
                };
                let n = v.value.to_string();
                let h: f64 = n.parse().map_err(|_| invalid(&n))?;
                if !datetime::zone_offset_in_range(h * 3600.0) {
                    return Err(out_of_range(&format!("-{n}")));
                }
                let secs = -(h * 3600.0).round() as i32;
                (datetime::Zone::Fixed(secs), datetime::offset_zone_name(secs))
            }
            ast::Expr::Identifier(i) => {
                let s = &i.value;
                if s.eq_ignore_ascii_case("default") || s.eq_ignore_ascii_case("local") {
                    (datetime::Zone::UTC, "UTC".to_string())
                } else {
                    let z = datetime::parse_zone(s).ok_or_else(|| invalid(s))?;
                    let name = match z {
                        datetime::Zone::Named(tz) => tz.name().to_string(),
                        _ => s.clone(),
                    };
                    (z, name)
                }
            }
            ast::Expr::Interval(iv) => {
                let text = match iv.value.as_ref() {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                let unit = iv
                    .leading_field
                    .as_ref()
                    .and_then(|f| datetime::unit_of(&f.to_string().to_ascii_lowercase()));
                let i = datetime::parse_interval(&text, unit)?;
                if i.months != 0 || i.days != 0 {
                    return Err(Error::user(
                        "22023",
                        format!("invalid interval value for time zone: \"{text}\""),
                    ));
                }
                let secs = i.micros / datetime::USECS_PER_SEC;
                if !datetime::zone_offset_in_range(secs as f64) {
                    let (neg, abs) = (i.micros < 0, i.micros.unsigned_abs() / 1_000_000);
                    let sign = if neg { "-" } else { "" };
                    let shown = format!(
                        "INTERVAL '{sign}{:02}:{:02}:{:02}'",
                        abs / 3600,
                        abs / 60 % 60,
                        abs % 60
                    );
                    return Err(out_of_range(&shown));
                }
                let secs = secs as i32;
                (datetime::Zone::Fixed(secs), datetime::offset_zone_name(secs))
            }
            other => return Err(invalid(&other.to_string())),
        };
        if self.txn.is_some() {
            // Remembered for ROLLBACK (and COMMIT, for SET LOCAL).
            let saved = self.zone_saved.get_or_insert_with(|| (self.zone.clone(), false));
            saved.1 |= local;
        } else if local {
            // Outside a transaction block PostgreSQL warns and does nothing.
            crate::notice::raise(crate::notice::Notice::warning(
                "25P01",
                "SET LOCAL can only be used in transaction blocks",
            ));
            return Ok(QueryResult::command("SET"));
        }
        self.zone = zone;
        Arc::make_mut(&mut self.settings).remove("timezone");
        // Bound plans may hold constants read in the old zone.
        self.plans.clear();
        datetime::set_env(datetime::Env { zone: self.zone.0, ..datetime::env() });
        Ok(QueryResult::command("SET"))
    }

    /// RESET name / RESET ALL: back to the default.
    fn reset(&mut self, r: &ast::Reset) -> Result<QueryResult> {
        let name = match r {
            ast::Reset::ALL => None,
            ast::Reset::ConfigurationParameter(n) => {
                Some(crate::plan::bind::object_name(n)?.join(".").to_ascii_lowercase())
            }
            ast::Reset::SessionAuthorization => {
                return Err(crate::plan::bind::unsupported("RESET SESSION AUTHORIZATION"));
            }
        };
        let all = name.is_none();
        let is = |n: &str| all || name.as_deref() == Some(n);
        if is("timezone") {
            self.set_time_zone("UTC")?;
        }
        if is("work_mem") {
            self.work_mem = exec::spill::DEFAULT_WORK_MEM;
        }
        if is("statement_timeout") {
            self.statement_timeout = 0;
        }
        if is("idle_in_transaction_session_timeout") {
            self.idle_timeout = 0;
        }
        if is("search_path") {
            self.search_path = crate::names::parse_search_path(DEFAULT_SEARCH_PATH);
            self.plans.clear();
            self.path_cache = None;
        }
        match &name {
            None => Arc::make_mut(&mut self.settings).clear(),
            Some(n) => {
                if !self.settings.contains_key(n) {
                    // An unknown name is an error, as SHOW's.
                    self.setting(n)?;
                }
                Arc::make_mut(&mut self.settings).remove(n);
            }
        }
        Ok(QueryResult::command("RESET"))
    }

    fn set(&mut self, set: &ast::Set) -> Result<QueryResult> {
        match set {
            ast::Set::SetTimeZone { value, local } => self.set_time_zone_expr(value, *local),
            ast::Set::SingleAssignment { variable, values, scope, .. }
                if values.len() == 1
                    && crate::plan::bind::object_name(variable)?
                        .join(".")
                        .eq_ignore_ascii_case("timezone") =>
            {
                let local = matches!(scope, Some(ast::ContextModifier::Local));
                self.set_time_zone_expr(&values[0], local)
            }
            ast::Set::SingleAssignment { variable, values, .. } => {
                let name = crate::plan::bind::object_name(variable)?.join(".");
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                for (setting, slot) in [
                    ("statement_timeout", &mut self.statement_timeout),
                    ("idle_in_transaction_session_timeout", &mut self.idle_timeout),
                ] {
                    if name.eq_ignore_ascii_case(setting) {
                        *slot = if value.eq_ignore_ascii_case("default") {
                            0
                        } else {
                            exec::interrupt::parse_duration_ms(setting, &value)?
                        };
                        return Ok(QueryResult::command("SET"));
                    }
                }
                let lower = name.to_ascii_lowercase();
                if lower == "default_transaction_read_only" {
                    if value.eq_ignore_ascii_case("default") {
                        Arc::make_mut(&mut self.settings).remove(&lower);
                    } else {
                        let v = parse_bool_setting(&lower, &value)?;
                        Arc::make_mut(&mut self.settings).insert(lower, v.to_string());
                    }
                    return Ok(QueryResult::command("SET"));
                }
                if BOOLEAN_SETTINGS.contains(&lower.as_str()) {
                    let v = if value.eq_ignore_ascii_case("default") {
                        "on"
                    } else {
                        parse_bool_setting(&lower, &value)?
                    };
                    Arc::make_mut(&mut self.settings).insert(lower, v.to_string());
                    return Ok(QueryResult::command("SET"));
                }
                if name.eq_ignore_ascii_case("shared_buffers") {
                    return Err(Error::user(
                        "55P02",
                        "parameter \"shared_buffers\" cannot be changed without restarting the server",
                    ));
                }
                if name.eq_ignore_ascii_case("work_mem") {
                    self.work_mem = if value.eq_ignore_ascii_case("default") {
                        exec::spill::DEFAULT_WORK_MEM
                    } else {
                        // PostgreSQL's range: 64 kB to 2147483647 kB.
                        exec::spill::parse_memory("work_mem", &value, 64, 2_147_483_647)?
                    };
                    return Ok(QueryResult::command("SET"));
                }
                if name == "search_path" {
                    let v = if value.eq_ignore_ascii_case("default") {
                        DEFAULT_SEARCH_PATH.to_string()
                    } else {
                        value
                    };
                    self.search_path = crate::names::parse_search_path(&v);
                    // Plans bound under the old path may name other tables.
                    self.plans.clear();
                    self.path_cache = None;
                    Arc::make_mut(&mut self.settings).insert(name, v);
                    return Ok(QueryResult::command("SET"));
                }
                if name.eq_ignore_ascii_case("application_name") {
                    self.activity.set_application_name(&value);
                }
                Arc::make_mut(&mut self.settings).insert(name, value);
                Ok(QueryResult::command("SET"))
            }
            ast::Set::SetTransaction { modes, session: true, .. } => {
                for m in modes {
                    match m {
                        ast::TransactionMode::IsolationLevel(l) => {
                            self.default_isolation = isolation_of(l)
                        }
                        // SET SESSION CHARACTERISTICS AS TRANSACTION READ
                        // ONLY is default_transaction_read_only, as in
                        // PostgreSQL (it was ignored: writes went through).
                        ast::TransactionMode::AccessMode(a) => {
                            let on = matches!(a, ast::TransactionAccessMode::ReadOnly);
                            Arc::make_mut(&mut self.settings).insert(
                                "default_transaction_read_only".into(),
                                if on { "on" } else { "off" }.into(),
                            );
                        }
                    }
                }
                Ok(QueryResult::command("SET"))
            }
            ast::Set::SetTransaction { modes, .. } => {
                let res = self.set_transaction(modes);
                if res.is_err() {
                    self.fail();
                }
                res
            }
            other => Err(crate::plan::bind::unsupported(format!("{other}"))),
        }
    }

    /// `SET TRANSACTION` in a block, as PostgreSQL allows it: the isolation
    /// level changes only before the block's first query (and not in a
    /// subtransaction); READ WRITE in a read-only block likewise; READ ONLY
    /// anywhere. The engine fixes a transaction's mode when it begins, so a
    /// change restarts the block's transaction, which has read nothing yet;
    /// READ ONLY after the first query or in a subtransaction is not done.
    fn set_transaction(&mut self, modes: &[ast::TransactionMode]) -> Result<QueryResult> {
        let Some(t) = self.txn.as_ref() else {
            // Outside a transaction block PostgreSQL warns and does nothing.
            crate::notice::raise(crate::notice::Notice::warning(
                "25P01",
                "SET TRANSACTION can only be used in transaction blocks",
            ));
            return Ok(QueryResult::command("SET"));
        };
        let (queried, subtransaction) = self.block_marks.of(t.id());
        let (mut iso, mut read_only) = match t.mode() {
            Mode::ReadWrite(iso) => (iso, false),
            Mode::ReadOnly(iso) => (iso, true),
            Mode::AsOf(_) => {
                return Err(crate::plan::bind::unsupported(
                    "SET TRANSACTION in a transaction reading as of a commit",
                ));
            }
        };
        let before = (iso, read_only);
        for m in modes {
            match m {
                ast::TransactionMode::IsolationLevel(l) => {
                    let new = isolation_of(l);
                    if new != iso && queried {
                        return Err(Error::user(
                            "25001",
                            "SET TRANSACTION ISOLATION LEVEL must be called before any query",
                        ));
                    }
                    if new != iso && subtransaction {
                        return Err(Error::user(
                            "25001",
                            "SET TRANSACTION ISOLATION LEVEL must not be called in a subtransaction",
                        ));
                    }
                    iso = new;
                }
                ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadWrite) => {
                    if read_only && subtransaction {
                        return Err(Error::user(
                            "25001",
                            "cannot set transaction read-write mode inside a read-only transaction",
                        ));
                    }
                    if read_only && queried {
                        return Err(Error::user(
                            "25001",
                            "transaction read-write mode must be set before any query",
                        ));
                    }
                    read_only = false;
                }
                ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadOnly) => {
                    if !read_only && (queried || subtransaction) {
                        return Err(crate::plan::bind::unsupported(
                            "SET TRANSACTION READ ONLY after the first query of a transaction block \
                             or in a subtransaction (use BEGIN READ ONLY)",
                        ));
                    }
                    read_only = true;
                }
            }
        }
        if (iso, read_only) != before {
            let mode = if read_only { Mode::ReadOnly(iso) } else { Mode::ReadWrite(iso) };
            let new = self.db.shared.mvcc.begin(mode)?;
            if let Some(old) = self.txn.replace(new) {
                old.rollback();
            }
        }
        Ok(QueryResult::command("SET"))
    }

    /// COPY, VACUUM and ANALYZE run through `execute` (COPY from or to
    /// the client needs `copy_in` / `copy_out`).
    fn utility(&mut self, u: &crate::utility::Utility) -> Result<QueryResult> {
        use crate::utility::{CopyTarget, Utility};
        if self.failed {
            return Err(Error::user(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        match u {
            Utility::Maintenance(m) => {
                if m.vacuum && (self.txn.is_some() || self.implicit_pending) {
                    self.fail();
                    return Err(Error::user(
                        "25001",
                        "VACUUM cannot run inside a transaction block",
                    ));
                }
                // The tables must exist (42P01); no statistics are kept.
                self.with_statement_txn(|shared, txn, path| {
                    let mut b = Binder::new(&shared.catalog, txn, path);
                    for t in &m.tables {
                        let name = ast::ObjectName::from(
                            t.iter()
                                .map(|p| ast::Ident::with_quote('"', p.clone()))
                                .collect::<Vec<_>>(),
                        );
                        b.table(&name)?;
                    }
                    Ok(())
                })?;
                if m.vacuum {
                    // VACUUM removes the versions no snapshot can see any
                    // more, in every table (the MVCC layer's collector).
                    self.db.shared.mvcc.gc()?;
                }
                Ok(QueryResult::command(if m.vacuum { "VACUUM" } else { "ANALYZE" }))
            }
            Utility::AlterSequence(a) => self.with_statement_txn(|shared, txn, path| {
                exec::namespace::alter_sequence(shared, txn, path, a)
            }),
            Utility::Copy(c) => {
                self.fail();
                Err(match &c.target {
                    CopyTarget::Client => Error::user(
                        "0A000",
                        if c.to {
                            "COPY TO STDOUT needs a client of the copy protocol (Session::copy_out)"
                        } else {
                            "COPY FROM STDIN needs a client of the copy protocol (Session::copy_in)"
                        },
                    ),
                    CopyTarget::File(_) | CopyTarget::Program(_) => Error::user(
                        "0A000",
                        "COPY to or from a file or program on the server is not supported; \
                         use COPY … FROM STDIN / TO STDOUT (psql's \\copy)",
                    ),
                })
            }
        }
    }

    /// Runs `f` in the transaction block's transaction (failing the block
    /// if `f` fails) or in one of its own, committed if `f` succeeds.
    fn with_statement_txn<R>(
        &mut self,
        f: impl FnOnce(&Shared, &mut Transaction, &SearchPath) -> Result<R>,
    ) -> Result<R> {
        let shared = self.db.shared.clone();
        let names = Names {
            catalog: &shared.catalog,
            db: self.database,
            db_name: &self.db_name,
            path: &self.search_path,
            user: &self.user,
            seqs: &self.seqs,
            temp: &self.temp_name,
        };
        if self.txn.is_none() && self.implicit_pending {
            self.txn = Some(
                shared
                    .mvcc
                    .begin(default_mode(self.default_isolation, self.default_read_only()))?,
            );
            self.implicit = true;
        }
        match self.txn.as_mut() {
            Some(t) => {
                t.new_statement();
                self.block_marks.mark(t.id(), true, false);
                let res = names.cached(&mut self.path_cache, t).and_then(|p| f(&shared, t, &p));
                if res.is_err() {
                    self.failed = true;
                }
                res
            }
            None => {
                let mut t = shared
                    .mvcc
                    .begin(default_mode(self.default_isolation, self.default_read_only()))?;
                let res =
                    names.cached(&mut self.path_cache, &mut t).and_then(|p| f(&shared, &mut t, &p));
                match res {
                    Ok(r) => {
                        t.commit()?;
                        Ok(r)
                    }
                    Err(e) => {
                        t.rollback();
                        Err(e)
                    }
                }
            }
        }
    }

    fn copy_stmt(p: &Prepared, index: usize) -> Result<&crate::utility::CopyStmt> {
        match p.stmts.get(index) {
            Some(Stmt::Util(u)) => match u.as_ref() {
                crate::utility::Utility::Copy(c) => Ok(c),
                _ => Err(Error::Internal(format!("statement {index} is not COPY"))),
            },
            _ => Err(Error::Internal(format!("statement {index} is not COPY"))),
        }
    }

    /// Runs statement `index` of `p`, a COPY … TO STDOUT: `on` gets the
    /// number of columns first, then each encoded line as the rows are
    /// read (the result is never held whole). The tag is `COPY n`.
    pub fn copy_out(
        &mut self,
        p: &Prepared,
        index: usize,
        params: &[Value],
        on: &mut dyn FnMut(crate::exec::copy::CopyOut<'_>) -> Result<()>,
    ) -> Result<QueryResult> {
        let c = Self::copy_stmt(p, index)?;
        let started = std::time::Instant::now();
        self.enter_statement()?;
        let settings = crate::system::enter_settings(self.settings_lookup());
        let res = crate::published::running(|| {
            if self.failed {
                return Err(Error::user(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                ));
            }
            self.with_statement_txn(|shared, txn, path| {
                crate::exec::copy::copy_out(shared, txn, path, c, params, on)
            })
        });
        crate::system::leave_settings(settings);
        exec::interrupt::end_statement();
        let counters = &self.counters;
        let n = res.map_err(|e| {
            counters.error(Some(started.elapsed()));
            crate::position::locate(e, &p.sql, None)
        })?;
        let kind = crate::metrics::Kind::Other;
        counters.record(kind, n, 0, started.elapsed());
        Ok(QueryResult::command(format!("COPY {n}")))
    }

    /// Starts statement `index` of `p`, a COPY … FROM STDIN: the returned
    /// `CopyIn` takes the data in chunks and inserts the rows as they
    /// complete, in the transaction block or (outside one) in a
    /// transaction of its own that `CopyIn::finish` commits.
    pub fn copy_in(&mut self, p: &Prepared, index: usize) -> Result<CopyIn<'_>> {
        let c = Self::copy_stmt(p, index)?;
        if self.failed {
            return Err(Error::user(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let begun = std::time::Instant::now();
        let (now, deadline) = self.enter_statement()?;
        let shared = self.db.shared.clone();
        if self.txn.is_none() && self.implicit_pending {
            self.txn = Some(
                shared
                    .mvcc
                    .begin(default_mode(self.default_isolation, self.default_read_only()))?,
            );
            self.implicit = true;
        }
        let mut own = match self.txn.as_mut() {
            Some(t) => {
                t.new_statement();
                self.block_marks.mark(t.id(), true, false);
                None
            }
            None => Some(
                shared
                    .mvcc
                    .begin(default_mode(self.default_isolation, self.default_read_only()))?,
            ),
        };
        let names = Names {
            catalog: &shared.catalog,
            db: self.database,
            db_name: &self.db_name,
            path: &self.search_path,
            user: &self.user,
            seqs: &self.seqs,
            temp: &self.temp_name,
        };
        let started = match own.as_mut().or(self.txn.as_mut()) {
            Some(txn) => names
                .cached(&mut self.path_cache, txn)
                .and_then(|path| crate::exec::copy::Loader::new(shared.clone(), txn, path, c)),
            None => Err(Error::Internal("COPY without a transaction".into())),
        };
        match started {
            Ok(loader) => {
                Ok(CopyIn { session: self, own, loader, now, deadline, open: true, started: begun })
            }
            Err(e) => {
                exec::interrupt::end_statement();
                self.counters.error(Some(begun.elapsed()));
                match own {
                    Some(t) => t.rollback(),
                    None => self.failed = true,
                }
                Err(crate::position::locate(e, &p.sql, None))
            }
        }
    }

    /// Runs a statement in the explicit transaction, or in its own.
    fn in_transaction(
        &mut self,
        s: &ast::Statement,
        params: &[Value],
        sink: Option<&mut RowSink>,
    ) -> Result<QueryResult> {
        let shared = self.db.shared.clone();
        if self.plans.len() > 1000 {
            self.plans.clear();
        }
        let names = Names {
            catalog: &shared.catalog,
            db: self.database,
            db_name: &self.db_name,
            path: &self.search_path,
            user: &self.user,
            seqs: &self.seqs,
            temp: &self.temp_name,
        };
        let mode = default_mode(self.default_isolation, self.default_read_only());
        if self.txn.is_none() && self.implicit_pending {
            self.txn = Some(shared.mvcc.begin(mode)?);
            self.implicit = true;
        }
        let slot = self.plan_key.map(|k| {
            self.plans
                .entry(k)
                .or_insert_with(|| (0, Bound::Query(Arc::new(QueryPlan::new(empty_query())))))
        });
        match self.txn.as_mut() {
            Some(t) => {
                t.new_statement();
                self.block_marks.mark(t.id(), true, false);
                let res = names
                    .cached(&mut self.path_cache, t)
                    .and_then(|path| run_statement(&shared, t, &path, s, params, slot, sink));
                if res.is_err() {
                    self.failed = true;
                }
                res
            }
            None => {
                let mut t = shared.mvcc.begin(mode)?;
                let res = names
                    .cached(&mut self.path_cache, &mut t)
                    .and_then(|path| run_statement(&shared, &mut t, &path, s, params, slot, sink));
                match res {
                    Ok(r) => {
                        t.commit()?;
                        Ok(r)
                    }
                    Err(e) => {
                        t.rollback();
                        Err(e)
                    }
                }
            }
        }
    }
}

/// A COPY … FROM STDIN in progress (`Session::copy_in`): `write` the data
/// in chunks of any size (a line may be split anywhere), then `finish`,
/// or `abort`. Dropping it unfinished aborts it. After a failed `write`
/// the COPY is over (its transaction rolled back, or the block failed);
/// only dropping it remains.
pub struct CopyIn<'s> {
    session: &'s mut Session,
    /// The COPY's own transaction, outside a transaction block.
    own: Option<Transaction>,
    loader: crate::exec::copy::Loader,
    /// The statement's clock and deadline (`Session::resume_statement`).
    now: i64,
    deadline: Option<std::time::Instant>,
    open: bool,
    /// When the COPY began (its latency in `metrics`).
    started: std::time::Instant,
}

impl CopyIn<'_> {
    /// The number of columns each line carries.
    pub fn columns(&self) -> usize {
        self.loader.columns()
    }

    /// Takes the next chunk of data; the complete lines in it are inserted.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if !self.open {
            return Err(Error::user("57014", "COPY was already ended by an error"));
        }
        self.session.resume_statement(self.now, self.deadline);
        let r = {
            let CopyIn { session, own, loader, .. } = self;
            match own.as_mut().or(session.txn.as_mut()) {
                Some(txn) => loader.write(txn, &[], data),
                None => Err(Error::Internal("COPY without a transaction".into())),
            }
        };
        exec::interrupt::end_statement();
        if r.is_err() {
            self.fail();
        }
        r
    }

    /// The end of the data: the last line, then the commit of the COPY's
    /// own transaction. The tag is `COPY n`.
    pub fn finish(mut self) -> Result<QueryResult> {
        if !self.open {
            return Err(Error::user("57014", "COPY was already ended by an error"));
        }
        self.session.resume_statement(self.now, self.deadline);
        let r = {
            let CopyIn { session, own, loader, .. } = &mut self;
            match own.as_mut().or(session.txn.as_mut()) {
                Some(txn) => loader.finish(txn, &[]),
                None => Err(Error::Internal("COPY without a transaction".into())),
            }
        };
        exec::interrupt::end_statement();
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.fail();
                return Err(e);
            }
        };
        self.open = false;
        if let Some(t) = self.own.take() {
            t.commit()?;
        }
        let kind = crate::metrics::Kind::Other;
        self.session.counters.record(kind, 0, n, self.started.elapsed());
        Ok(QueryResult::command(format!("COPY {n}")))
    }

    /// The client gave up (CopyFail): nothing the COPY wrote stays. The
    /// error to report (57014, as PostgreSQL).
    pub fn abort(mut self, message: &str) -> Error {
        self.fail();
        Error::user("57014", format!("COPY from stdin failed: {message}"))
    }

    fn fail(&mut self) {
        self.open = false;
        let s = &self.session;
        s.counters.error(Some(self.started.elapsed()));
        match self.own.take() {
            Some(t) => t.rollback(),
            None => self.session.fail(),
        }
    }
}

impl Drop for CopyIn<'_> {
    fn drop(&mut self) {
        if self.open {
            self.fail();
        }
    }
}

/// COMMIT or ROLLBACK without BEGIN: PostgreSQL's WARNING.
fn no_transaction_warning() {
    crate::notice::raise(crate::notice::Notice::warning(
        "25P01",
        "there is no transaction in progress",
    ));
}

/// A prepared statement's parameters and result columns (`Session::describe`).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// `$1` first; `None` where no context gives the parameter a type.
    pub params: Vec<Option<DataType>>,
    pub columns: Vec<Column>,
}

/// The highest `$n` in the text (0 without parameters).
/// The parameter values of `sql` for `entry` (its key's entry), or None
/// if a number that stayed literal in the entry differs in `sql`.
fn simple_values(
    sql: &str,
    scan: &crate::autoparam::Scan,
    entry: &SimpleEntry,
) -> Option<Vec<Value>> {
    use crate::autoparam::Class;
    let mut values = vec![Value::Null; entry.params.len() - entry.fixed.len()];
    let mut fixed = entry.fixed.iter();
    let mut negative = String::new();
    for ((n, k), neg) in scan.numbers.iter().zip(&entry.params).zip(&entry.negated) {
        let mut text = &sql[n.start..n.end];
        let mut class = n.class;
        if let Some(c) = neg {
            negative.clear();
            negative.push('-');
            negative.push_str(text);
            text = &negative;
            class = Class::of(text);
            if class != *c {
                return None;
            }
        }
        match k {
            None => {
                if **fixed.next()? != *text {
                    return None;
                }
            }
            Some(k) => {
                *values.get_mut(*k)? = match class {
                    Class::Int4 => Value::Int4(text.parse().ok()?),
                    Class::Int8 => Value::Int8(text.parse().ok()?),
                    Class::Numeric => Value::Numeric(crate::types::cast::parse_numeric(text).ok()?),
                };
            }
        }
    }
    Some(values)
}

fn placeholder_count(sql: &str) -> usize {
    let Ok(tokens) = sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize()
    else {
        return 0;
    };
    tokens
        .iter()
        .filter_map(|t| match t {
            sqlparser::tokenizer::Token::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
            _ => None,
        })
        .filter(|n: &usize| *n <= 65_535)
        .max()
        .unwrap_or(0)
}

/// Binds a query, INSERT, UPDATE or DELETE without running it: its result
/// columns (the parameter types are noted by the binder on the way).
fn describe_bound(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    s: &ast::Statement,
) -> Result<Vec<Column>> {
    let cols = |c: &[(String, DataType)]| {
        c.iter().map(|(name, t)| Column::new(name.clone(), t.clone())).collect()
    };
    match s {
        ast::Statement::Query(q) => {
            let mut b = Binder::new(&shared.catalog, txn, schema);
            Ok(Column::of_query(&b.query(q)?))
        }
        ast::Statement::Insert(i) => {
            Ok(cols(crate::exec::dml::bind_insert(shared, txn, schema, i)?.returning_columns()))
        }
        ast::Statement::Update(u) if crate::exec::dml::is_single_update(u) => {
            Ok(cols(crate::exec::dml::bind_update(shared, txn, schema, u)?.returning_columns()))
        }
        ast::Statement::Delete(d) if crate::exec::dml::is_single_delete(d) => {
            Ok(cols(crate::exec::dml::bind_delete(shared, txn, schema, d)?.returning_columns()))
        }
        ast::Statement::Update(_) | ast::Statement::Delete(_) => {
            // UPDATE … FROM and DELETE … USING bind as they run; the same table, WHERE
            // and RETURNING as a query give the columns, and `col = (value)`
            // for each assignment the parameters' types. If the
            // comparisons do not bind (json has no `=`), the types of the
            // assigned parameters stay unknown.
            let (with_sets, plain) = dml_as_query(s);
            let mut bind = |sql: &str| -> Result<crate::plan::Query> {
                let stmts = parse(sql)?;
                let [ast::Statement::Query(q)] = stmts.as_slice() else {
                    return Err(Error::Internal("describe: not a query".into()));
                };
                Binder::new(&shared.catalog, txn, schema).query(q)
            };
            let q = match with_sets.as_deref().map(&mut bind) {
                Some(Ok(q)) => q,
                _ => {
                    crate::plan::bind::take_param_types();
                    bind(&plain).map_err(|e| match e {
                        // Positions in the rewritten text mean nothing.
                        Error::User { sqlstate, message, .. } => Error::user(sqlstate, message),
                        e => e,
                    })?
                }
            };
            Ok(if has_returning(s) { cols(&q.columns) } else { Vec::new() })
        }
        _ => Ok(Vec::new()),
    }
}

fn has_returning(s: &ast::Statement) -> bool {
    match s {
        ast::Statement::Update(u) => u.returning.is_some(),
        ast::Statement::Delete(d) => d.returning.is_some(),
        _ => false,
    }
}

/// An UPDATE or DELETE as a SELECT over the same rows: with a comparison
/// per assignment (if any), and without.
fn dml_as_query(s: &ast::Statement) -> (Option<String>, String) {
    let list = |items: &[ast::SelectItem]| {
        items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    };
    let (projection, from, conds, sets) = match s {
        ast::Statement::Update(u) => {
            let mut from = u.table.to_string();
            if let Some(
                ast::UpdateTableFromKind::AfterSet(f) | ast::UpdateTableFromKind::BeforeSet(f),
            ) = &u.from
            {
                for t in f {
                    from.push_str(&format!(", {t}"));
                }
            }
            let sets: Vec<String> = u
                .assignments
                .iter()
                .filter(|a| {
                    !matches!(&a.value, ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default"))
                })
                .map(|a| format!("({}) = ({})", a.target, a.value))
                .collect();
            (u.returning.as_deref().map(list), from, u.selection.as_ref(), sets)
        }
        ast::Statement::Delete(d) => {
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
            };
            let mut from = tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            for t in d.using.iter().flatten() {
                from.push_str(&format!(", {t}"));
            }
            (d.returning.as_deref().map(list), from, d.selection.as_ref(), Vec::new())
        }
        _ => return (None, "SELECT 1".into()),
    };
    let projection = projection.unwrap_or_else(|| "1".into());
    let mut plain = format!("SELECT {projection} FROM {from}");
    if let Some(w) = conds {
        plain.push_str(&format!(" WHERE ({w})"));
    }
    if sets.is_empty() {
        return (None, plain);
    }
    let join = if conds.is_some() { " AND " } else { " WHERE " };
    (Some(format!("{plain}{join}{}", sets.join(" AND "))), plain)
}

fn empty_query() -> crate::plan::Query {
    crate::plan::Query {
        plan: crate::plan::Plan::unit(),
        columns: vec![],
        unknown: vec![],
        origins: vec![],
    }
}

/// `SELECT n`, the tag of a query, written without the formatting
/// machinery (it is made for every query).
fn select_tag(n: u64) -> String {
    let mut buf = [0u8; 20];
    let digits = qube_common::decimal_digits(n, &mut buf);
    let mut tag = Vec::with_capacity(7 + digits.len());
    tag.extend_from_slice(b"SELECT ");
    tag.extend_from_slice(digits);
    String::from_utf8(tag).unwrap_or_default()
}

/// The duration from `from` to `to`, wall-clock µs (0 if the clock went
/// back).
fn micros_since(from: i64, to: i64) -> Duration {
    Duration::from_micros(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

fn run_statement(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    s: &ast::Statement,
    params: &[Value],
    plan_slot: Option<&mut CachedPlan>,
    sink: Option<&mut RowSink>,
) -> Result<QueryResult> {
    use ast::Statement as S;
    match s {
        S::Query(q) => {
            // A prepared query's plan is reused while the catalog it was
            // bound against is the one this transaction sees.
            let bound = cached_plan(shared, txn, plan_slot, |txn| {
                Binder::new(&shared.catalog, txn, schema).query(q).map(QueryPlan::new)
            })?;
            let (q, columns) = (&bound.query, bound.columns.clone());
            let limit = shared.value_limit.load(std::sync::atomic::Ordering::Relaxed);
            let mut ctx = Ctx::new(txn, params).with_limit(limit).with_env(&shared.catalog, schema);
            if let Some(sink) = sink {
                // Rows go to the caller as the executor produces them.
                // A top LIMIT is applied here, not by a layer of its own.
                let (mut rows, mut limited) = exec::stream::open_limited(&mut ctx, &q.plan)?;
                let mut n = 0u64;
                while let Some(r) = limited.next(&mut ctx, &mut rows)? {
                    sink(&columns, &r)?;
                    // The scan below decodes a later row into it.
                    rows.recycle(r);
                    n += 1;
                }
                return Ok(QueryResult { columns, rows: Vec::new(), tag: select_tag(n) });
            }
            let rows = exec::run(&mut ctx, &q.plan)?;
            let n = rows.len();
            Ok(QueryResult { columns, rows, tag: select_tag(n as u64) })
        }
        S::Explain { analyze, statement, .. } => {
            let ast::Statement::Query(q) = statement.as_ref() else {
                return Err(crate::plan::bind::unsupported("EXPLAIN of anything but a query"));
            };
            let mut b = Binder::new(&shared.catalog, txn, schema);
            let q = b.query(q)?;
            drop(b);
            let mut est = crate::plan::explain::Estimates::new();
            let mut sizes: HashMap<u64, f64> = HashMap::new();
            let mut failed = None;
            crate::plan::explain::estimate(
                &q.plan,
                &mut |table| {
                    *sizes.entry(table).or_insert_with(|| {
                        crate::storage::estimate_rows(txn, table).unwrap_or_else(|e| {
                            failed = Some(e);
                            0
                        }) as f64
                    })
                },
                &mut est,
            );
            if let Some(e) = failed {
                return Err(e);
            }
            let lines = if *analyze {
                // Runs the query, counting rows and time per node.
                let limit = shared.value_limit.load(std::sync::atomic::Ordering::Relaxed);
                let mut ctx =
                    Ctx::new(txn, params).with_limit(limit).with_env(&shared.catalog, schema);
                ctx.stats = Some(HashMap::new());
                let start = std::time::Instant::now();
                exec::run(&mut ctx, &q.plan)?;
                let total = start.elapsed();
                let stats = ctx.stats.take().unwrap_or_default();
                let mut lines = crate::plan::explain::explain_analyze(&q.plan, &est, &stats);
                lines.push(format!("Execution Time: {:.3} ms", total.as_secs_f64() * 1000.0));
                lines
            } else {
                crate::plan::explain::explain(&q.plan, &est)
            };
            let rows: Vec<Vec<Value>> = lines.into_iter().map(|l| vec![Value::Text(l)]).collect();
            Ok(QueryResult {
                columns: Arc::new([Column::new("QUERY PLAN", DataType::Text)]),
                rows,
                tag: "EXPLAIN".into(),
            })
        }
        // As for queries: a prepared INSERT, UPDATE or DELETE binds once
        // per catalog version.
        S::Insert(i) => {
            let plan = cached_plan(shared, txn, plan_slot, |txn| {
                crate::exec::dml::bind_insert(shared, txn, schema, i)
            })?;
            crate::exec::dml::run_insert(shared, txn, schema, &plan, params)
        }
        S::Update(u) if crate::exec::dml::is_single_update(u) => {
            let plan = cached_plan(shared, txn, plan_slot, |txn| {
                crate::exec::dml::bind_update(shared, txn, schema, u)
            })?;
            crate::exec::dml::run_update(shared, txn, schema, &plan, params)
        }
        S::Delete(d) if crate::exec::dml::is_single_delete(d) => {
            let plan = cached_plan(shared, txn, plan_slot, |txn| {
                crate::exec::dml::bind_delete(shared, txn, schema, d)
            })?;
            crate::exec::dml::run_delete(shared, txn, schema, &plan, params)
        }
        S::Update(u) => crate::exec::dml::update(shared, txn, schema, u, params),
        S::Delete(d) => crate::exec::dml::delete(shared, txn, schema, d, params),
        other => crate::exec::ddl::ddl(shared, txn, schema, other),
    }
}

/// Drops a statement without recursing down long operator chains (a
/// 10,000-term OR is a 10,000-deep tree; the derived drop would recurse
/// that deep): their subtrees are taken apart with an explicit stack.
fn dismantle(s: ast::Statement) {
    let mut exprs: Vec<ast::Expr> = Vec::new();
    let mut queries: Vec<ast::Query> = Vec::new();
    match s {
        ast::Statement::Query(q) => queries.push(*q),
        ast::Statement::Delete(mut d) => exprs.extend(d.selection.take()),
        ast::Statement::Update(mut u) => exprs.extend(u.selection.take()),
        _ => {}
    }
    while let Some(q) = queries.pop() {
        let mut bodies = vec![*q.body];
        while let Some(b) = bodies.pop() {
            match b {
                ast::SetExpr::Select(mut sel) => {
                    exprs.extend(sel.selection.take());
                    exprs.extend(sel.having.take());
                    for item in std::mem::take(&mut sel.projection) {
                        match item {
                            ast::SelectItem::UnnamedExpr(e)
                            | ast::SelectItem::ExprWithAlias { expr: e, .. } => exprs.push(e),
                            _ => {}
                        }
                    }
                }
                ast::SetExpr::SetOperation { left, right, .. } => {
                    bodies.push(*left);
                    bodies.push(*right);
                }
                ast::SetExpr::Query(q) => queries.push(*q),
                _ => {}
            }
        }
    }
    while let Some(e) = exprs.pop() {
        match e {
            ast::Expr::BinaryOp { left, right, .. } => {
                exprs.push(*left);
                exprs.push(*right);
            }
            ast::Expr::Nested(x) | ast::Expr::UnaryOp { expr: x, .. } => exprs.push(*x),
            ast::Expr::Subquery(q) => queries_drop(*q),
            _ => {}
        }
    }
}

fn queries_drop(q: ast::Query) {
    dismantle(ast::Statement::Query(Box::new(q)));
}

/// A setting's value (SHOW, current_setting): explicit settings, then
/// the computed and default ones.
/// The snapshot of the settings `Session::settings_lookup` last built,
/// with what it was built from.
struct SettingsCache {
    settings: Arc<HashMap<String, String>>,
    zone: String,
    limits: Limits,
    /// The transaction's isolation level and whether it is read-only.
    tx: (Isolation, bool),
    lookup: crate::system::SettingsLookup,
}

/// The settings a session keeps as numbers: work_mem (bytes),
/// statement_timeout and idle_in_transaction_session_timeout (ms).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    work_mem: usize,
    statement_timeout: u64,
    idle_timeout: u64,
    /// Not a session's to change: the database's buffer pool.
    shared_buffers: usize,
}

/// The smallest buffer pool the B+Tree engine takes (24 pages).
const MIN_BUFFER_POOL: usize = 24 * 8192;

/// PostgreSQL's planner switches, all on by default. `enable_hashjoin`
/// and `enable_mergejoin` choose how binary joins run
/// (`exec::binary_join`); the others are accepted and shown, and change
/// nothing.
/// What an open transaction block did that SET TRANSACTION depends on;
/// marks of an earlier transaction (another id) do not count.
#[derive(Debug, Default, Clone, Copy)]
struct BlockMarks {
    txn: qube_txn::locks::TxnId,
    /// A statement took a snapshot (PostgreSQL's FirstSnapshotSet).
    queried: bool,
    /// A SAVEPOINT was set (the block may be in a subtransaction).
    savepoint: bool,
}

impl BlockMarks {
    fn mark(&mut self, txn: qube_txn::locks::TxnId, queried: bool, savepoint: bool) {
        if self.txn != txn {
            *self = BlockMarks { txn, queried: false, savepoint: false };
        }
        self.queried |= queried;
        self.savepoint |= savepoint;
    }

    /// (queried, savepoint) of transaction `txn`.
    fn of(&self, txn: qube_txn::locks::TxnId) -> (bool, bool) {
        if self.txn == txn { (self.queried, self.savepoint) } else { (false, false) }
    }
}

/// The engine's isolation level for a SQL one (READ UNCOMMITTED is READ
/// COMMITTED, as in PostgreSQL).
fn isolation_of(l: &ast::TransactionIsolationLevel) -> Isolation {
    match l {
        ast::TransactionIsolationLevel::ReadUncommitted
        | ast::TransactionIsolationLevel::ReadCommitted => Isolation::ReadCommitted,
        ast::TransactionIsolationLevel::RepeatableRead
        | ast::TransactionIsolationLevel::Snapshot => Isolation::RepeatableRead,
        ast::TransactionIsolationLevel::Serializable => Isolation::Serializable,
    }
}

const BOOLEAN_SETTINGS: &[&str] = &[
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_nestloop",
    "enable_seqscan",
    "enable_indexscan",
    "enable_indexonlyscan",
    "enable_bitmapscan",
    "enable_sort",
    "enable_hashagg",
    "enable_material",
];

/// A boolean setting's value as PostgreSQL spells it: "on" or "off"
/// (from on/off, true/false, yes/no, 1/0 or a unique prefix of them).
fn parse_bool_setting(name: &str, value: &str) -> Result<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    let is_prefix = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if v == "1" || is_prefix("true", 1) || is_prefix("yes", 1) || is_prefix("on", 2) {
        Ok("on")
    } else if v == "0" || is_prefix("false", 1) || is_prefix("no", 1) || is_prefix("off", 2) {
        Ok("off")
    } else {
        Err(Error::user("22023", format!("parameter \"{name}\" requires a Boolean value")))
    }
}

fn setting_of(
    settings: &HashMap<String, String>,
    zone: &str,
    limits: Limits,
    (iso, read_only): (Isolation, bool),
    name: &str,
) -> Result<String> {
    // Parameter names are case-insensitive, even quoted ("TimeZone").
    if name.eq_ignore_ascii_case("timezone") || name.eq_ignore_ascii_case("time zone") {
        return Ok(zone.to_string());
    }
    if let Some(v) = settings.get(name) {
        return Ok(v.clone());
    }
    Ok(match name {
        "transaction isolation level" | "transaction_isolation" => match iso {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        }
        .into(),
        "transaction_read_only" => if read_only { "on" } else { "off" }.into(),
        // DEFERRABLE is not supported: no transaction is deferrable.
        "transaction_deferrable" => "off".into(),
        "server_version" => "16.0".into(),
        "search_path" => DEFAULT_SEARCH_PATH.into(),
        "work_mem" => exec::spill::format_memory(limits.work_mem),
        "shared_buffers" => exec::spill::format_memory(limits.shared_buffers),
        "statement_timeout" => exec::interrupt::format_duration_ms(limits.statement_timeout),
        "idle_in_transaction_session_timeout" => {
            exec::interrupt::format_duration_ms(limits.idle_timeout)
        }
        "client_encoding" | "server_encoding" => "UTF8".into(),
        n if BOOLEAN_SETTINGS.contains(&n) => "on".into(),
        "datestyle" => "ISO, MDY".into(),
        "standard_conforming_strings" => "on".into(),
        _ => {
            return Err(Error::user(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
    })
}

/// How a transaction the session starts by itself (a block's BEGIN, an
/// implicit block, a statement's own) begins.
fn default_mode(iso: Isolation, read_only: bool) -> Mode {
    if read_only { Mode::ReadOnly(iso) } else { Mode::ReadWrite(iso) }
}

#[cfg(test)]
mod tests {
    use super::select_tag;

    #[test]
    fn simple_texts_share_a_shape_when_only_their_numbers_differ() {
        let shape = |sql: &str| super::SimpleText::new(sql.to_owned()).shape();
        let a = shape("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
        assert!(a.is_some());
        assert_eq!(a, shape("SELECT abalance FROM pgbench_accounts WHERE aid = 7;"));
        assert_ne!(a, shape("SELECT abalance FROM pgbench_accounts WHERE bid = 7;"));
        // Another class of number is another shape (it binds another type).
        assert_ne!(a, shape("SELECT abalance FROM pgbench_accounts WHERE aid = 3000000000;"));
        // No numbers, or a string literal: no shape from the engine.
        assert_eq!(shape("SELECT abalance FROM pgbench_accounts"), None);
        assert_eq!(shape("SELECT 1 WHERE 'a' = 'b'"), None);
        // A quoted name is not a string.
        assert!(shape("SELECT \"x\" FROM t WHERE id = 1").is_some());
    }

    #[test]
    fn select_tag_writes_the_count_in_decimal() {
        for n in [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(select_tag(n), format!("SELECT {n}"));
        }
    }
}
