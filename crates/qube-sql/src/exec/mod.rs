//! Runs bound plans against a transaction.
//!
//! Joins, set operations and window functions materialise their rows
//! (`Vec<Row>`); scans, filters, projections, sorts, LIMIT, aggregation
//! and the inputs of joins pull rows through `stream.rs` instead, so a
//! LIMIT stops the scan below it and a full scan holds one batch at a
//! time. Sorts and hash aggregates hold at most `work_mem` and spill the
//! rest to temporary files (`spill.rs`); the materialising operators are
//! bounded by the query's value limit instead (`Ctx::charge`, 53200). Joins of several inputs
//! pick their order at run time: the smallest input first, then repeatedly
//! an input linked to what is joined by an equality (a hash join, built on
//! the smaller of the two sides), each condition applied as soon as its
//! inputs are present.

pub mod binary_join;
pub(crate) mod copy;
pub mod datetime;
pub(crate) mod ddl;
pub mod decorrelate;
pub(crate) mod dml;
pub mod eval;
pub mod funcs;
pub mod interrupt;
pub mod morefuncs;
pub(crate) mod namespace;
pub mod regexp;
pub(crate) mod role;
pub mod sequence;
pub mod spill;
pub mod stream;
pub mod typefuncs;
mod window;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use crate::types::numeric::Numeric;
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;
use rust_decimal::prelude::ToPrimitive;

use crate::plan::{
    AggCall, AggFunc, BinOp, Expr, InputSet, JoinKind, Plan, SetOpKind, SortKey, inputs_of,
};
use crate::storage;
use crate::types::Value;
use crate::types::encoding::encode_key;
use eval::{eval, truthy};

pub type Row = Vec<Value>;

/// Default for the most values one statement's joins, set operations,
/// DISTINCT and growing aggregate states may hold in memory (a few GiB;
/// `Database::set_query_value_limit` changes it): these do not spill, so
/// a runaway cross join fails with 53200 instead of taking the process
/// down. (Sorts and hash aggregation spill beyond `work_mem`.)
pub const MAX_QUERY_VALUES: usize = 50_000_000;

/// The width of the rows in `out` (1 for an empty output: a first row).
fn width_hint(out: &[Row]) -> usize {
    out.first().map_or(1, |r| r.len().max(1))
}

/// Execution state of one statement.
pub struct Ctx<'a> {
    pub txn: &'a mut Transaction,
    pub params: &'a [Value],
    /// Current rows of the enclosing queries (innermost last).
    pub outer: Vec<Row>,
    /// Work tables of running recursive CTEs.
    worktables: FastMap<usize, Rc<Vec<Row>>>,
    /// Rows of the materialized WITH queries run so far (`Plan::CteScan`).
    ctes: FastMap<usize, Rc<Vec<Row>>>,
    cache: FastMap<usize, Rc<Vec<Row>>>,
    /// Hashed values of uncorrelated `IN (subquery)`s (None: not hashable).
    in_sets: FastMap<usize, Option<Rc<InSet>>>,
    /// Decorrelated EXISTS subqueries (None: not decorrelatable).
    exists_sets: FastMap<usize, Option<Rc<decorrelate::ExistsSet>>>,
    /// Per-node statistics, when running for EXPLAIN ANALYZE (by node address).
    pub stats: Option<HashMap<usize, NodeStats>>,
    /// Values materialised by join outputs so far, and the limit.
    values: usize,
    limit: usize,
    /// The catalog and the session's names, for functions that need them
    /// (`nextval`); None where a statement runs without a session.
    pub env: Option<Env<'a>>,
    /// Cancellation and statement_timeout (see `interrupt`).
    interrupt: interrupt::Check,
}

/// See `Ctx::env`.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub catalog: &'a qube_catalog::Catalog,
    pub path: &'a crate::names::SearchPath,
}

impl<'a> Ctx<'a> {
    pub fn new(txn: &'a mut Transaction, params: &'a [Value]) -> Ctx<'a> {
        Ctx {
            txn,
            params,
            outer: Vec::new(),
            // Keyed by plan addresses: the fast hasher needs no per-map
            // random state (four `RandomState::new` per statement).
            cache: FastMap::default(),
            in_sets: FastMap::default(),
            exists_sets: FastMap::default(),
            worktables: FastMap::default(),
            ctes: FastMap::default(),
            values: 0,
            limit: MAX_QUERY_VALUES,
            stats: None,
            env: None,
            interrupt: interrupt::Check::current(),
        }
    }

    /// Called for every row an operator handles: fails with 57014 once the
    /// statement is cancelled or past its statement_timeout (checked every
    /// 1,024 calls).
    #[inline]
    pub fn tick(&mut self) -> Result<()> {
        self.interrupt.tick()
    }

    /// The same context with the session's catalog and names.
    pub fn with_env(
        mut self,
        catalog: &'a qube_catalog::Catalog,
        path: &'a crate::names::SearchPath,
    ) -> Self {
        self.env = Some(Env { catalog, path });
        self
    }

    /// Counts `n` more values held in memory; past `MAX_QUERY_VALUES` the
    /// query fails with 53200 rather than exhaust the process's memory.
    pub fn charge(&mut self, n: usize) -> Result<()> {
        self.values = self.values.saturating_add(n);
        if self.values > self.limit {
            return Err(Error::user(
                "53200",
                format!(
                    "out of memory: the query would hold more than {} values in memory \
                     (joins, set operations, DISTINCT and aggregate states do not spill to disk)",
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    /// The same context with another limit on materialised values.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Runs a subquery for the current row (once, if uncorrelated).
    pub fn subquery(
        &mut self,
        plan: &Plan,
        correlated: bool,
        row: &[Value],
    ) -> Result<Rc<Vec<Row>>> {
        let key = plan as *const Plan as usize;
        if !correlated && let Some(r) = self.cache.get(&key) {
            return Ok(r.clone());
        }
        self.outer.push(row.to_vec());
        let res = run(self, plan);
        self.outer.pop();
        let rows = Rc::new(res?);
        if !correlated {
            self.cache.insert(key, rows.clone());
        }
        Ok(rows)
    }

    /// Correlated `[NOT] EXISTS (plan)` for `row` through a hash set of
    /// the subquery's keys (see `decorrelate`); None if it cannot be.
    pub(crate) fn exists_hashed(&mut self, plan: &Plan, row: &[Value]) -> Result<Option<bool>> {
        let key = plan as *const Plan as usize;
        let set = match self.exists_sets.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = decorrelate::exists_set(self, plan)?;
                self.exists_sets.insert(key, s.clone());
                s
            }
        };
        match set {
            Some(s) => s.probe(self, row),
            None => Ok(None),
        }
    }

    /// The values of uncorrelated subquery `plan` as a hash set, if they
    /// can be compared by their key bytes (see `InSet`).
    pub(crate) fn in_set(&mut self, plan: &Plan, row: &[Value]) -> Result<Option<Rc<InSet>>> {
        let key = plan as *const Plan as usize;
        if let Some(s) = self.in_sets.get(&key) {
            return Ok(s.clone());
        }
        let rows = self.subquery(plan, false, row)?;
        let mut set = InSet {
            keys: HashSet::default(),
            has_null: false,
            class: None,
            scratch: Default::default(),
        };
        let mut buf = Vec::new();
        let mut usable = true;
        for r in rows.iter() {
            let v = r.first().unwrap_or(&Value::Null);
            if v.is_null() {
                set.has_null = true;
                continue;
            }
            let c = hash_class(v);
            if c.is_none() || set.class.is_some_and(|k| Some(k) != c) {
                usable = false;
                break;
            }
            set.class = c;
            key_bytes(std::slice::from_ref(v), &mut buf);
            set.keys.insert(buf.clone());
        }
        let out = usable.then(|| Rc::new(set));
        if out.is_some() {
            decorrelate::HASHED.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.in_sets.insert(key, out.clone());
        Ok(out)
    }
}

/// The values of an `IN (subquery)` as a hash set: used when every value
/// is of one class whose SQL equality is equality of key bytes (so a date
/// is never looked up among timestamps; those compare across types).
pub(crate) struct InSet {
    keys: HashSet<Vec<u8>, std::hash::BuildHasherDefault<FastHasher>>,
    has_null: bool,
    /// The class of the values (None: no non-null value).
    class: Option<u8>,
    /// Key bytes of the value looked up (reused).
    scratch: std::cell::RefCell<Vec<u8>>,
}

/// Classes of values whose SQL `=` is equality of their key bytes.
pub fn hash_class(v: &Value) -> Option<u8> {
    Some(match v {
        Value::Bool(_) => 1,
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => 2,
        Value::Text(_) => 3,
        Value::Uuid(_) => 4,
        Value::Date(_) => 5,
        Value::Timestamp(_) => 6,
        Value::TimestampTz(_) => 7,
        Value::Bytea(_) => 8,
        _ => return None,
    })
}

impl InSet {
    /// `v IN (…)` for a non-null `v`; None when the set cannot answer
    /// (another class of value).
    pub fn contains(&self, v: &Value) -> Option<Value> {
        let Some(class) = self.class else {
            // Only NULLs, or nothing.
            return Some(if self.has_null { Value::Null } else { Value::Bool(false) });
        };
        if hash_class(v) != Some(class) {
            return None;
        }
        let mut buf = self.scratch.borrow_mut();
        key_bytes(std::slice::from_ref(v), &mut buf);
        Some(if self.keys.contains(buf.as_slice()) {
            Value::Bool(true)
        } else if self.has_null {
            Value::Null
        } else {
            Value::Bool(false)
        })
    }
}

/// A multiply-rotate hasher for the executor's own hash tables (group
/// keys, join keys: short memcomparable byte strings): a few cycles a key
/// where SipHash takes tens of nanoseconds. Not collision-resistant
/// against chosen keys, which an embedded engine's queries over their own
/// data do not need to be.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown takes its control bits from the top.
        self.0 ^ (self.0 >> 29)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
pub(crate) type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;

/// Hashable form of values (memcomparable bytes); integral numbers of any
/// type hash alike, so `int = numeric` joins and groups work.
fn key_bytes(values: &[Value], out: &mut Vec<u8>) {
    out.clear();
    for v in values {
        push_key(v, out);
    }
}

/// Appends one value's part of `key_bytes`.
fn push_key(v: &Value, out: &mut Vec<u8>) {
    let norm = match v {
        Value::Numeric(crate::types::numeric::Numeric::Small(d)) if d.fract().is_zero() => {
            d.to_i64().map(Value::Int8)
        }
        // An integral value with more than 28 zero decimals (5.000…0).
        Value::Numeric(n @ crate::types::numeric::Numeric::Big(_)) if n.min_scale() == 0 => {
            n.to_i128_round().and_then(|i| i64::try_from(i).ok()).map(Value::Int8)
        }
        Value::Float4(_) | Value::Float8(_) => {
            let f = v.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 9e15 { Some(Value::Int8(f as i64)) } else { None }
        }
        _ => None,
    };
    encode_key(norm.as_ref().unwrap_or(v), out);
}

/// `key_bytes` of `exprs` over `row`; false if one is NULL (it joins with
/// nothing). A plain column is read in place, not evaluated into a copy.
fn row_key<'e>(
    ctx: &mut Ctx,
    exprs: impl Iterator<Item = &'e Expr>,
    row: &[Value],
    out: &mut Vec<u8>,
) -> Result<bool> {
    out.clear();
    for e in exprs {
        let v = value_over(ctx, e, row)?;
        if v.is_null() {
            return Ok(false);
        }
        push_key(&v, out);
    }
    Ok(true)
}

/// `e` over `row`: a plain column read in place, anything else evaluated.
fn value_over<'r>(ctx: &mut Ctx, e: &Expr, row: &'r [Value]) -> Result<Cow<'r, Value>> {
    Ok(match e {
        Expr::Column(c) if *c < row.len() => Cow::Borrowed(&row[*c]),
        e => Cow::Owned(eval(ctx, e, row)?),
    })
}

pub fn run(ctx: &mut Ctx, plan: &Plan) -> Result<Vec<Row>> {
    if ctx.stats.is_none() {
        return run_node(ctx, plan);
    }
    // EXPLAIN ANALYZE: rows and time of every execution of this node.
    let start = std::time::Instant::now();
    let res = run_node(ctx, plan);
    let elapsed = start.elapsed();
    if let (Ok(rows), Some(stats)) = (&res, ctx.stats.as_mut()) {
        let e = stats.entry(plan as *const Plan as usize).or_default();
        e.rows += rows.len() as u64;
        e.loops += 1;
        e.time += elapsed;
    }
    res
}

/// What EXPLAIN ANALYZE reports for one plan node.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeStats {
    pub rows: u64,
    pub loops: u64,
    pub time: std::time::Duration,
}

fn run_node(ctx: &mut Ctx, plan: &Plan) -> Result<Vec<Row>> {
    match plan {
        Plan::Values { rows, .. } => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut row = Vec::with_capacity(r.len());
                for e in r {
                    row.push(eval(ctx, e, &[])?);
                }
                out.push(row);
            }
            Ok(out)
        }
        Plan::IndexScan { .. } | Plan::Scan { .. } => {
            stream::open_scan(ctx, plan, None, None)?.collect(ctx)
        }
        Plan::ScanRowids { table } => Ok(storage::scan(ctx.txn, table.id, table.columns.len())?
            .into_iter()
            .map(|(id, mut r)| {
                r.push(Value::Int8(id as i64));
                r
            })
            .collect()),
        Plan::Window { input, calls } => {
            let rows = run(ctx, input)?;
            window::run(ctx, rows, calls)
        }
        Plan::WorkTable { id, .. } => {
            Ok(ctx.worktables.get(id).map(|r| r.as_ref().clone()).unwrap_or_default())
        }
        Plan::CteScan { input, .. } => {
            let key = Arc::as_ptr(input) as usize;
            let rows = match ctx.ctes.get(&key) {
                Some(r) => r.clone(),
                None => {
                    let r = Rc::new(run(ctx, input)?);
                    ctx.ctes.insert(key, r.clone());
                    r
                }
            };
            Ok(rows.as_ref().clone())
        }
        Plan::RecursiveUnion { id, anchor, recursive, all } => {
            let mut seen = HashSet::new();
            let mut buf = Vec::new();
            let mut fresh = |rows: Vec<Row>, seen: &mut HashSet<Vec<u8>>| -> Vec<Row> {
                if *all {
                    return rows;
                }
                rows.into_iter()
                    .filter(|r| {
                        key_bytes(r, &mut buf);
                        seen.insert(buf.clone())
                    })
                    .collect()
            };
            let first = run(ctx, anchor)?;
            let mut result = fresh(first, &mut seen);
            let mut working = result.clone();
            while !working.is_empty() {
                if result.len() > 10_000_000 {
                    return Err(Error::user(
                        "54000",
                        "recursive query produced more than 10,000,000 rows (is it infinite?)",
                    ));
                }
                ctx.worktables.insert(*id, Rc::new(working));
                // Subqueries may read the work table: nothing is cached
                // across iterations.
                ctx.cache.clear();
                ctx.ctes.clear();
                ctx.in_sets.clear();
                ctx.exists_sets.clear();
                let next = run(ctx, recursive)?;
                working = fresh(next, &mut seen);
                result.extend(working.iter().cloned());
            }
            ctx.worktables.remove(id);
            Ok(result)
        }
        Plan::Series { start, stop, step } => {
            let start = eval(ctx, start, &[])?;
            let stop = eval(ctx, stop, &[])?;
            let step = match step {
                Some(s) => eval(ctx, s, &[])?,
                None => Value::Int4(1),
            };
            series(start, stop, step)
        }
        Plan::System { table, .. } => crate::system::rows(ctx, *table),
        Plan::SetFunction { func, args, record, .. } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(ctx, a, &[])?);
            }
            if let crate::plan::SetFunc::ToRecord { set } = func {
                return typefuncs::to_record(vals.pop().unwrap_or(Value::Null), record, *set);
            }
            typefuncs::set_function(*func, vals)
        }
        Plan::Filter { .. } | Plan::Project { .. }
            if ctx.stats.is_none()
                && !matches!(plan, Plan::Project { exprs, .. } if typefuncs::has_set_function(exprs)) =>
        {
            stream::open(ctx, plan, None)?.collect(ctx)
        }
        Plan::Filter { input, predicate } => {
            let rows = run(ctx, input)?;
            let mut out = Vec::new();
            for r in rows {
                if truthy(&eval(ctx, predicate, &r)?) {
                    out.push(r);
                }
            }
            Ok(out)
        }
        Plan::Project { input, exprs } => {
            let rows = run(ctx, input)?;
            if typefuncs::has_set_function(exprs) {
                return typefuncs::project_set(ctx, rows, exprs);
            }
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut o = Vec::with_capacity(exprs.len());
                for e in exprs {
                    o.push(eval(ctx, e, &r)?);
                }
                out.push(o);
            }
            Ok(out)
        }
        Plan::MultiJoin { inputs, conds, width } => multi_join(ctx, inputs, conds, *width, None),
        Plan::Join { left, right, kind, on } => {
            binary_join::binary_join(ctx, left, right, *kind, on)
        }
        Plan::Aggregate { input, group_by, aggs, sets } => {
            if sets.is_empty() {
                return aggregate_plan(ctx, input, group_by, aggs)?.collect(ctx);
            }
            let rows = run(ctx, input)?;
            // One aggregation per grouping set over the same input.
            let mut out = Vec::new();
            let last = group_by.len() - 1;
            for (si, set) in sets.iter().enumerate() {
                let keys: Vec<Expr> = group_by
                    .iter()
                    .enumerate()
                    .map(|(k, e)| {
                        if k == last {
                            Expr::Const(Value::Int4(si as i32))
                        } else if set.contains(&k) {
                            e.clone()
                        } else {
                            Expr::Const(Value::Null)
                        }
                    })
                    .collect();
                let input = stream::Stream::Rows(rows.clone().into_iter());
                out.extend(aggregate(ctx, input, &keys, aggs, set.is_empty())?.collect(ctx)?);
            }
            Ok(out)
        }
        Plan::Sort { input, keys } => {
            let rows = stream::open(ctx, input, None)?;
            let mut sorted = spill::sort_stream(ctx, rows, keys, None)?;
            let mut out = Vec::new();
            while let Some(r) = sorted.next_row()? {
                out.push(r);
            }
            Ok(out)
        }
        Plan::Limit { input, limit, offset } => {
            let (off, lim) = limit_counts(ctx, limit, offset)?;
            let need = lim.map(|l| l.saturating_add(off));
            if !sorted_below(input) {
                // Pull only the rows needed from the input.
                let mut s = stream::open(ctx, input, need)?;
                let mut limited = stream::Limited { skip: off, left: lim };
                let mut out = Vec::with_capacity(lim.unwrap_or(0).min(stream::MAX_BATCH));
                while let Some(r) = limited.next(ctx, &mut s)? {
                    out.push(r);
                }
                return Ok(out);
            }
            // Top-N: a sort below only needs its first off + lim rows.
            let rows = run_limited(ctx, input, need)?;
            let it = rows.into_iter().skip(off);
            Ok(match lim {
                Some(l) => it.take(l).collect(),
                None => it.collect(),
            })
        }
        Plan::Distinct { input } => {
            let mut rows = stream::open(ctx, input, None)?;
            let mut seen = HashSet::new();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while let Some(r) = rows.next(ctx)? {
                key_bytes(&r, &mut buf);
                if seen.insert(buf.clone()) {
                    ctx.charge(r.len().max(1))?;
                    out.push(r);
                }
            }
            Ok(out)
        }
        Plan::DistinctOn { input, on } => {
            let rows = run(ctx, input)?;
            let mut out: Vec<Row> = Vec::new();
            let mut last: Option<Vec<u8>> = None;
            let mut buf = Vec::new();
            for r in rows {
                let vals = on.iter().map(|e| eval(ctx, e, &r)).collect::<Result<Vec<_>>>()?;
                key_bytes(&vals, &mut buf);
                if last.as_ref() != Some(&buf) {
                    last = Some(buf.clone());
                    out.push(r);
                }
            }
            Ok(out)
        }
        Plan::Lateral { left, right, kind, on, right_width } => {
            let left_rows = run(ctx, left)?;
            let mut out = Vec::new();
            for l in left_rows {
                let rs = ctx.subquery(right, true, &l)?;
                ctx.charge(rs.len() * (l.len() + right_width))?;
                let mut matched = false;
                for r in rs.iter() {
                    ctx.tick()?;
                    let mut row = Vec::with_capacity(l.len() + right_width);
                    row.extend(l.iter().cloned());
                    row.extend(r.iter().cloned());
                    if truthy(&eval(ctx, on, &row)?) {
                        matched = true;
                        out.push(row);
                    }
                }
                if !matched && *kind == JoinKind::Left {
                    let mut row = l;
                    row.resize(row.len() + right_width, Value::Null);
                    out.push(row);
                }
            }
            Ok(out)
        }
        Plan::SetOp { left, right, kind, all } => {
            let l = run(ctx, left)?;
            let r = run(ctx, right)?;
            set_op(l, r, *kind, *all)
        }
    }
}

pub(crate) fn plan_width(plan: &Plan, sample: Option<&Row>) -> usize {
    if let Some(r) = sample {
        return r.len();
    }
    match plan {
        Plan::Values { width, .. } => *width,
        Plan::Series { .. } => 1,
        Plan::SetFunction { width, .. } | Plan::System { width, .. } => *width,
        Plan::WorkTable { width, .. } | Plan::CteScan { width, .. } => *width,
        Plan::Window { input, calls } => plan_width(input, None) + calls.len(),
        Plan::RecursiveUnion { anchor, .. } => plan_width(anchor, None),
        Plan::Scan { table } | Plan::IndexScan { table, .. } => table.columns.len(),
        Plan::ScanRowids { table } => table.columns.len() + 1,
        Plan::Project { exprs, .. } => exprs.len(),
        Plan::MultiJoin { width, .. } => *width,
        Plan::Join { left, right, .. } => plan_width(left, None) + plan_width(right, None),
        Plan::Lateral { left, right_width, .. } => plan_width(left, None) + right_width,
        Plan::Aggregate { group_by, aggs, .. } => group_by.len() + aggs.len(),
        Plan::Filter { input, .. }
        | Plan::Sort { input, .. }
        | Plan::Limit { input, .. }
        | Plan::Distinct { input }
        | Plan::DistinctOn { input, .. } => plan_width(input, None),
        Plan::SetOp { left, .. } => plan_width(left, None),
    }
}

/// Rows of generate_series; at most 100 million (54000 beyond).
fn series(start: Value, stop: Value, step: Value) -> Result<Vec<Row>> {
    if start.is_null() || stop.is_null() || step.is_null() {
        return Ok(Vec::new());
    }
    let zero_step = match step {
        Value::Interval(_) => Value::Interval(crate::types::datetime::Interval::ZERO),
        _ => Value::Int4(0),
    };
    let zero = step.sql_cmp(&zero_step) == Some(Ordering::Equal);
    if zero {
        return Err(Error::user("22023", "step size cannot equal zero"));
    }
    let up = step.sql_cmp(&zero_step) == Some(Ordering::Greater);
    let mut out = Vec::new();
    let mut cur = start;
    loop {
        let past = match cur.sql_cmp(&stop) {
            Some(Ordering::Greater) => up,
            Some(Ordering::Less) => !up,
            _ => false,
        };
        if past {
            break;
        }
        if out.len() >= 100_000_000 {
            return Err(Error::user(
                "54000",
                "generate_series would return more than 100,000,000 rows",
            ));
        }
        out.push(vec![cur.clone()]);
        match eval::binary(BinOp::Add, cur, step.clone()) {
            Ok(next) => cur = next,
            // Stepping past the type's range ends the series, as in PostgreSQL.
            Err(e) if e.sqlstate() == "22003" || e.sqlstate() == "22008" => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn set_op(l: Vec<Row>, r: Vec<Row>, kind: SetOpKind, all: bool) -> Result<Vec<Row>> {
    let mut buf = Vec::new();
    let mut key = |row: &Row| {
        key_bytes(row, &mut buf);
        buf.clone()
    };
    Ok(match (kind, all) {
        (SetOpKind::Union, true) => l.into_iter().chain(r).collect(),
        (SetOpKind::Union, false) => {
            let mut seen = HashSet::new();
            l.into_iter().chain(r).filter(|row| seen.insert(key(row))).collect()
        }
        (SetOpKind::Intersect | SetOpKind::Except, _) => {
            let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
            for row in &r {
                *counts.entry(key(row)).or_default() += 1;
            }
            let mut out = Vec::new();
            let mut emitted = HashSet::new();
            for row in l {
                let k = key(&row);
                let c = counts.get_mut(&k);
                let present = c.as_ref().is_some_and(|c| **c > 0);
                match (kind, all) {
                    (SetOpKind::Intersect, true) => {
                        if let Some(c) = c
                            && *c > 0
                        {
                            *c -= 1;
                            out.push(row);
                        }
                    }
                    (SetOpKind::Intersect, false) if present && emitted.insert(k.clone()) => {
                        out.push(row)
                    }
                    (SetOpKind::Except, true) => match c {
                        Some(c) if *c > 0 => *c -= 1,
                        _ => out.push(row),
                    },
                    (SetOpKind::Except, false) if !present && emitted.insert(k.clone()) => {
                        out.push(row)
                    }
                    _ => {}
                }
            }
            out
        }
    })
}

/// The equalities among `on`'s conjuncts whose one side reads only the
/// left input's columns (below `lw`) and the other only the right's: the
/// left key expressions (over the left row) and the right ones (over the
/// right row alone).
pub(crate) fn join_keys(on: &Expr, lw: usize) -> (Vec<Expr>, Vec<Expr>) {
    let conj = on.conjuncts();
    let side = |e: &Expr| crate::plan::bind::join_side(e, lw);
    let (mut lk, mut rk) = (Vec::new(), Vec::new());
    for c in conj {
        let Expr::Binary { op: BinOp::Eq, left, right } = c else { continue };
        let (l, r) = match (side(left), side(right)) {
            (Some(true), Some(false)) => (left, right),
            (Some(false), Some(true)) => (right, left),
            _ => continue,
        };
        let mut r = (**r).clone();
        r.remap_columns(&|c| c - lw);
        lk.push((**l).clone());
        rk.push(r);
    }
    (lk, rk)
}

/// A sort, possibly under a projection: what `run_limited` cuts short.
/// The OFFSET and LIMIT of a `Plan::Limit`, evaluated: (rows to skip,
/// rows to keep; None for no limit or LIMIT NULL).
pub(crate) fn limit_counts(
    ctx: &mut Ctx,
    limit: &Option<Expr>,
    offset: &Option<Expr>,
) -> Result<(usize, Option<usize>)> {
    let count = |ctx: &mut Ctx, e: &Option<Expr>, what: &str, code: &'static str| {
        let Some(e) = e else { return Ok(None) };
        let v = match e {
            Expr::Const(v) => v.clone(),
            e => eval(ctx, e, &[])?,
        };
        match v {
            Value::Null => Ok(None),
            v => {
                let n = v.as_i64().unwrap_or(0);
                if n < 0 {
                    return Err(Error::user(code, format!("{what} must not be negative")));
                }
                Ok(Some(n as usize))
            }
        }
    };
    let off = count(ctx, offset, "OFFSET", "2201X")?.unwrap_or(0);
    Ok((off, count(ctx, limit, "LIMIT", "2201W")?))
}

pub(crate) fn sorted_below(plan: &Plan) -> bool {
    match plan {
        Plan::Sort { .. } => true,
        Plan::Project { input, .. } => matches!(input.as_ref(), Plan::Sort { .. }),
        _ => false,
    }
}

/// Runs `plan`, of which only the first `n` rows will be used: a sort
/// (possibly under a projection) keeps only its first `n`.
fn run_limited(ctx: &mut Ctx, plan: &Plan, n: Option<usize>) -> Result<Vec<Row>> {
    match (plan, n) {
        (Plan::Sort { input, keys }, Some(n)) => {
            let start = std::time::Instant::now();
            let input = stream::open(ctx, input, None)?;
            let mut sorted = spill::sort_stream(ctx, input, keys, Some(n))?;
            let mut rows = Vec::new();
            while let Some(r) = sorted.next_row()? {
                rows.push(r);
            }
            if let Some(stats) = ctx.stats.as_mut() {
                let e = stats.entry(plan as *const Plan as usize).or_default();
                e.rows += rows.len() as u64;
                e.loops += 1;
                e.time += start.elapsed();
            }
            Ok(rows)
        }
        (Plan::Project { input, exprs }, Some(_))
            if matches!(input.as_ref(), Plan::Sort { .. }) =>
        {
            let rows = run_limited(ctx, input, n)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(exprs.iter().map(|e| eval(ctx, e, &r)).collect::<Result<Vec<_>>>()?);
            }
            Ok(out)
        }
        _ => run(ctx, plan),
    }
}

/// Compares two rows' evaluated sort keys by PostgreSQL's rules (NULLs
/// placed by `nulls_first` whatever the direction).
pub(crate) fn cmp_sort_keys(keys: &[SortKey], a: &[Value], b: &[Value]) -> Ordering {
    for (i, k) in keys.iter().enumerate() {
        let (x, y) = (&a[i], &b[i]);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if k.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if k.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => {
                let o = x.total_cmp(y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------- joins

/// `a = b` where one side reads only `joined` inputs and the other only
/// input `j`: the two sides, joined side first.
fn equi_sides<'e>(
    e: &'e Expr,
    inputs: &[crate::plan::JoinInput],
    joined: &InputSet,
    j: usize,
) -> Option<(&'e Expr, &'e Expr)> {
    let Expr::Binary { op: BinOp::Eq, left, right } = e else { return None };
    let (lm, rm) = (inputs_of(left, inputs), inputs_of(right, inputs));
    if !lm.is_empty() && lm.is_subset(joined) && rm.is_only(j) {
        Some((left, right))
    } else if !rm.is_empty() && rm.is_subset(joined) && lm.is_only(j) {
        Some((right, left))
    } else {
        None
    }
}

/// `e` over input `inp`'s own row (columns shifted down by its offset);
/// None if it holds a subquery, whose outer references see the joined row.
fn local_expr(e: &Expr, inp: &crate::plan::JoinInput) -> Option<Expr> {
    if e.has_subquery() {
        return None;
    }
    let mut e = e.clone();
    let off = inp.offset;
    e.remap_columns(&|c| c.saturating_sub(off));
    Some(e)
}

/// `r` (a row of input `inp`) placed in a joined row of `width` NULLs.
fn widen(r: &[Value], inp: &crate::plan::JoinInput, width: usize) -> Row {
    let mut full = vec![Value::Null; width];
    for (k, v) in r.iter().take(inp.width).enumerate() {
        full[inp.offset + k] = v.clone();
    }
    full
}

/// A whole table at least this big (by its highest rowid) is streamed as
/// the probe side of the last hash join of a `MultiJoin` instead of being
/// materialised.
const STREAMED_PROBE_ROWS: u64 = 4096;

/// An input's rows (its own columns only), filtered by its own conditions.
fn load_input(
    ctx: &mut Ctx,
    inp: &crate::plan::JoinInput,
    own: &[(Option<Expr>, &Expr)],
    width: usize,
    need: stream::Need,
) -> Result<Vec<Row>> {
    let mut rows = stream::open_cols(ctx, &inp.plan, None, need)?;
    let mut kept = Vec::new();
    while let Some(r) = rows.next(ctx)? {
        if let Some(r) = own_row(ctx, inp, own, width, r)? {
            kept.push(r);
        }
    }
    Ok(kept)
}

/// `r` cut to the input's width, if its own conditions hold.
fn own_row(
    ctx: &mut Ctx,
    inp: &crate::plan::JoinInput,
    own: &[(Option<Expr>, &Expr)],
    width: usize,
    mut r: Row,
) -> Result<Option<Row>> {
    if r.len() != inp.width {
        r.truncate(inp.width);
        r.resize_with(inp.width, || Value::Null);
    }
    for (local, full) in own {
        let ok = match local {
            Some(e) => truthy(&eval(ctx, e, &r)?),
            None => truthy(&eval(ctx, full, &widen(&r, inp, width))?),
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(r))
}

/// The input a `MultiJoin` streams last, and how it joins.
struct ProbeSide<'a, 'e> {
    inp: &'a crate::plan::JoinInput,
    own: &'a [(Option<Expr>, &'e Expr)],
    need: stream::Need,
    /// Equalities: (side over the joined rows, side over this input's row).
    eq: &'a [(&'e Expr, Expr)],
}

/// The last join of a `MultiJoin`: a hash table of the rows joined so far,
/// probed by the input's rows as its scan produces them (one batch in
/// memory at a time), each match checked against `rest`.
fn probe_stream(
    ctx: &mut Ctx,
    side: ProbeSide,
    current: &[Row],
    rest: &[&Expr],
    width: usize,
) -> Result<Vec<Row>> {
    let mut key_buf = Vec::new();
    let key = |ctx: &mut Ctx, probe: bool, row: &Row, key_buf: &mut Vec<u8>| -> Result<bool> {
        row_key(ctx, side.eq.iter().map(|(a, b)| if probe { b } else { *a }), row, key_buf)
    };
    let mut table: FastMap<Vec<u8>, Vec<usize>> = FastMap::default();
    // One equality of a plain column of the probe side, all of whose keys
    // here are integers: the keys go to its scan too, which turns away the
    // rows that cannot join before decoding them (`Stream::keep_int_keys`).
    // Any other key (an integral numeric joins with an integer too) leaves
    // the comparison to the hash table alone.
    let mut ints = match side.eq {
        [(_, Expr::Column(column))] => {
            Some(Box::new(stream::IntKeys { column: *column, keys: FastSet::default() }))
        }
        _ => None,
    };
    for (i, cur) in current.iter().enumerate() {
        let joins = match side.eq {
            // `row_key` of one expression, its value kept for `ints`.
            [(a, _)] => {
                let v = value_over(ctx, a, cur)?;
                if let Some(k) = &mut ints {
                    match *v {
                        Value::Null => {}
                        Value::Int2(x) => _ = k.keys.insert(x as i64),
                        Value::Int4(x) => _ = k.keys.insert(x as i64),
                        Value::Int8(x) => _ = k.keys.insert(x),
                        _ => ints = None,
                    }
                }
                key_buf.clear();
                if !v.is_null() {
                    push_key(&v, &mut key_buf);
                }
                !v.is_null()
            }
            _ => key(ctx, false, cur, &mut key_buf)?,
        };
        if joins {
            table.entry(key_buf.clone()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    if table.is_empty() {
        return Ok(out);
    }
    let inp = side.inp;
    let mut rows = stream::open_cols(ctx, &inp.plan, None, side.need)?;
    if let Some(keys) = ints {
        rows.keep_int_keys(keys);
    }
    while let Some(r) = rows.next(ctx)? {
        let Some(r) = own_row(ctx, inp, side.own, width, r)? else { continue };
        if key(ctx, true, &r, &mut key_buf)?
            && let Some(hits) = table.get(&key_buf)
        {
            'hits: for &i in hits {
                let mut o = current[i].clone();
                o[inp.offset..inp.offset + inp.width].clone_from_slice(&r[..inp.width]);
                for c in rest {
                    if !truthy(&eval(ctx, c, &o)?) {
                        continue 'hits;
                    }
                }
                ctx.charge(width_hint(&out))?;
                out.push(o);
            }
        }
        rows.recycle(r);
    }
    Ok(out)
}

/// The last join of a `MultiJoin` by index lookups: when few rows are
/// joined so far and the big input has an index whose leading columns
/// its equalities fix, each joined row looks up its partners (an index
/// nested loop) instead of the whole table being read.
struct IndexProbe {
    index: u64,
    unique: bool,
    /// The index's leading columns the equalities fix, and for each the
    /// position in `eq` of the equality that fixes it.
    columns: Vec<usize>,
    eq_of: Vec<usize>,
}

/// Index lookups cost about this many rows of a sequential read each.
const LOOKUP_COST_ROWS: u64 = 16;

impl IndexProbe {
    fn choose(
        ctx: &mut Ctx,
        inp: &crate::plan::JoinInput,
        eq: &[(&Expr, Expr)],
        joined_rows: usize,
    ) -> Result<Option<IndexProbe>> {
        let Plan::Scan { table } = &inp.plan else { return Ok(None) };
        // Equalities of a plain column of this input with the joined rows.
        let fixed = |c: usize| eq.iter().position(|(_, b)| *b == Expr::Column(c));
        let mut best: Option<IndexProbe> = None;
        for (id, cols, unique) in &table.indexes {
            let n = cols.iter().take_while(|&&c| fixed(c).is_some()).count();
            if n == 0 {
                continue;
            }
            let full_unique = *unique && n == cols.len();
            let better =
                best.as_ref().is_none_or(|b| (full_unique, n) > (b.unique, b.columns.len()));
            if better {
                best = Some(IndexProbe {
                    index: *id,
                    unique: full_unique,
                    columns: cols[..n].to_vec(),
                    eq_of: cols[..n].iter().map(|&c| fixed(c).unwrap_or(0)).collect(),
                });
            }
        }
        if best.is_none() {
            return Ok(None);
        }
        let rows = crate::storage::estimate_rows(ctx.txn, table.id)?;
        Ok(best.filter(|_| (joined_rows as u64).saturating_mul(LOOKUP_COST_ROWS) < rows))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        ctx: &mut Ctx,
        inp: &crate::plan::JoinInput,
        own: &[(Option<Expr>, &Expr)],
        eq: &[(&Expr, Expr)],
        current: &[Row],
        rest: &[&Expr],
        width: usize,
    ) -> Result<Vec<Row>> {
        let Plan::Scan { table } = &inp.plan else { return Ok(Vec::new()) };
        let types: Vec<DataType> = table.columns.iter().map(|c| c.1.clone()).collect();
        let mut keys: Vec<Expr> = Vec::with_capacity(self.columns.len());
        let mut out = Vec::new();
        'rows: for cur in current {
            keys.clear();
            for &e in &self.eq_of {
                let v = eval(ctx, eq[e].0, cur)?;
                if v.is_null() {
                    continue 'rows;
                }
                keys.push(Expr::Const(v));
            }
            let found = index_rows(
                ctx,
                table.id,
                &types,
                types.len(),
                self.index,
                self.unique,
                &self.columns,
                &keys,
                None,
                table.rows_of(self.index).is_some(),
            )?;
            'found: for (_, r) in found {
                let Some(r) = own_row(ctx, inp, own, width, r)? else { continue };
                let mut o = cur.clone();
                o[inp.offset..inp.offset + inp.width].clone_from_slice(&r[..inp.width]);
                // Every equality (the index only narrowed), then the rest.
                for (a, b) in eq {
                    let (x, y) = (eval(ctx, a, cur)?, eval(ctx, b, &r)?);
                    if !truthy(&eval::compare(BinOp::Eq, &x, &y)) {
                        continue 'found;
                    }
                }
                for c in rest {
                    if !truthy(&eval(ctx, c, &o)?) {
                        continue 'found;
                    }
                }
                ctx.charge(width_hint(&out))?;
                out.push(o);
            }
        }
        INDEX_PROBES.with(|n| n.set(n.get() + 1));
        Ok(out)
    }
}

thread_local! {
    static INDEX_PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Joins run as index lookups on this thread (for tests).
pub fn index_probe_joins() -> u64 {
    INDEX_PROBES.with(|n| n.get())
}

/// Joins `inputs`; only the columns `need` marks (None: all) need to be
/// right in the output.
fn multi_join(
    ctx: &mut Ctx,
    inputs: &[crate::plan::JoinInput],
    conds: &[crate::plan::JoinCond],
    width: usize,
    need: stream::Need,
) -> Result<Vec<Row>> {
    let n = inputs.len();
    let mut used = vec![false; conds.len()];
    let need = stream::needing(need, width, conds.iter().map(|c| &c.expr));
    // Each input's own conditions (on it alone): (over its own row, over
    // the joined row).
    let mut own: Vec<Vec<(Option<Expr>, &Expr)>> = Vec::with_capacity(n);
    for (i, inp) in inputs.iter().enumerate() {
        let mut mine = Vec::new();
        for (c, cond) in conds.iter().enumerate() {
            if cond.inputs.is_only(i) {
                used[c] = true;
                mine.push((local_expr(&cond.expr, inp), &cond.expr));
            }
        }
        own.push(mine);
    }
    let own_need = |i: usize| {
        need.as_ref().map(|n| n[inputs[i].offset..inputs[i].offset + inputs[i].width].into())
    };
    // The biggest input, when it is a whole table of at least
    // `STREAMED_PROBE_ROWS` rows (by its highest rowid) with no condition
    // of its own, is not materialised: if it is the last to join, linked by
    // an equality, its rows stream past a hash table of everything else
    // (`probe_stream` below). Otherwise it is loaded when needed.
    let mut deferred = None;
    if n >= 2 {
        let mut best = (STREAMED_PROBE_ROWS, None);
        for (i, inp) in inputs.iter().enumerate() {
            if let Plan::Scan { table } = &inp.plan
                && own[i].is_empty()
            {
                let rows = crate::storage::estimate_rows(ctx.txn, table.id)?;
                if rows >= best.0 {
                    best = (rows, Some(i));
                }
            }
        }
        deferred = best.1;
    }
    // Materialise each input's rows (its own columns only), filtered by
    // the conditions on it alone.
    let mut tables: Vec<Vec<Row>> = Vec::with_capacity(n);
    for i in 0..n {
        if deferred == Some(i) {
            tables.push(Vec::new());
            continue;
        }
        tables.push(load_input(ctx, &inputs[i], &own[i], width, own_need(i))?);
    }
    // Conditions on no input at all (constants, outer references).
    for (c, cond) in conds.iter().enumerate() {
        if cond.inputs.is_empty() {
            used[c] = true;
            if !truthy(&eval(ctx, &cond.expr, &vec![Value::Null; width])?) {
                return Ok(Vec::new());
            }
        }
    }
    let first =
        (0..n).filter(|&i| deferred != Some(i)).min_by_key(|&i| tables[i].len()).unwrap_or(0);
    let mut joined = InputSet::one(first);
    let mut current: Vec<Row> = std::mem::take(&mut tables[first])
        .iter()
        .map(|r| widen(r, &inputs[first], width))
        .collect();
    let mut key_buf = Vec::new();
    while joined.len() < n {
        // Next: an input linked by an equality, the smallest such; else the smallest.
        let mut candidates: Vec<usize> = (0..n).filter(|i| !joined.contains(*i)).collect();
        let is_linked = |j: usize, used: &[bool], joined: &InputSet| {
            conds
                .iter()
                .enumerate()
                .any(|(c, cond)| !used[c] && equi_sides(&cond.expr, inputs, joined, j).is_some())
        };
        if let Some(d) = deferred {
            if candidates.len() > 1 {
                candidates.retain(|&i| i != d);
                if !candidates.iter().any(|&j| is_linked(j, &used, &joined)) {
                    // The others would meet in a cross product: load it
                    // after all and join as usual.
                    tables[d] = load_input(ctx, &inputs[d], &own[d], width, own_need(d))?;
                    deferred = None;
                    candidates.push(d);
                }
            } else if is_linked(d, &used, &joined) {
                let mut eq: Vec<(&Expr, Expr)> = Vec::new();
                for (c, cond) in conds.iter().enumerate() {
                    if !used[c]
                        && let Some((a, b)) = equi_sides(&cond.expr, inputs, &joined, d)
                        && let Some(b) = local_expr(b, &inputs[d])
                    {
                        used[c] = true;
                        eq.push((a, b));
                    }
                }
                if !eq.is_empty() {
                    joined.insert(d);
                    let mut rest: Vec<&Expr> = Vec::new();
                    for (c, cond) in conds.iter().enumerate() {
                        if !used[c] && cond.inputs.is_subset(&joined) {
                            used[c] = true;
                            rest.push(&cond.expr);
                        }
                    }
                    if let Some(probe) = IndexProbe::choose(ctx, &inputs[d], &eq, current.len())? {
                        current =
                            probe.run(ctx, &inputs[d], &own[d], &eq, &current, &rest, width)?;
                        continue;
                    }
                    current = probe_stream(
                        ctx,
                        ProbeSide { inp: &inputs[d], own: &own[d], need: own_need(d), eq: &eq },
                        &current,
                        &rest,
                        width,
                    )?;
                    continue;
                }
                tables[d] = load_input(ctx, &inputs[d], &own[d], width, own_need(d))?;
                deferred = None;
            } else {
                tables[d] = load_input(ctx, &inputs[d], &own[d], width, own_need(d))?;
                deferred = None;
            }
        }
        let linked: Vec<usize> =
            candidates.iter().copied().filter(|&j| is_linked(j, &used, &joined)).collect();
        let pool = if linked.is_empty() { &candidates } else { &linked };
        let j = *pool.iter().min_by_key(|&&i| tables[i].len()).unwrap_or(&candidates[0]);
        let right = std::mem::take(&mut tables[j]);
        let inp = &inputs[j];
        // Equalities usable for hashing: (joined side, this input's side
        // over its own row).
        let mut eq: Vec<(&Expr, Expr)> = Vec::new();
        for (c, cond) in conds.iter().enumerate() {
            if !used[c]
                && let Some((a, b)) = equi_sides(&cond.expr, inputs, &joined, j)
                && let Some(b) = local_expr(b, inp)
            {
                used[c] = true;
                eq.push((a, b));
            }
        }
        let mut now = joined.clone();
        now.insert(j);
        let rest: Vec<usize> = conds
            .iter()
            .enumerate()
            .filter(|(c, cond)| !used[*c] && cond.inputs.is_subset(&now))
            .map(|(c, _)| c)
            .collect();
        for &c in &rest {
            used[c] = true;
        }
        let mut out = Vec::new();
        let combine = |cur: &Row, r: &Row| {
            let mut o = cur.clone();
            o[inp.offset..inp.offset + inp.width].clone_from_slice(&r[..inp.width]);
            o
        };
        let emit = |ctx: &mut Ctx, o: Row, out: &mut Vec<Row>| -> Result<()> {
            ctx.tick()?;
            for &c in &rest {
                if !truthy(&eval(ctx, &conds[c].expr, &o)?) {
                    return Ok(());
                }
            }
            ctx.charge(width_hint(out))?;
            out.push(o);
            Ok(())
        };
        if eq.is_empty() {
            for cur in &current {
                for r in &right {
                    emit(ctx, combine(cur, r), &mut out)?;
                }
            }
        } else if current.len() <= right.len() {
            // Build on the joined rows (the smaller side), probe with the input's.
            let mut table: FastMap<Vec<u8>, Vec<usize>> = FastMap::default();
            for (i, cur) in current.iter().enumerate() {
                if row_key(ctx, eq.iter().map(|e| e.0), cur, &mut key_buf)? {
                    table.entry(key_buf.clone()).or_default().push(i);
                }
            }
            for r in &right {
                if row_key(ctx, eq.iter().map(|e| &e.1), r, &mut key_buf)?
                    && let Some(hits) = table.get(&key_buf)
                {
                    for &i in hits {
                        emit(ctx, combine(&current[i], r), &mut out)?;
                    }
                }
            }
        } else {
            let mut table: FastMap<Vec<u8>, Vec<usize>> = FastMap::default();
            for (i, r) in right.iter().enumerate() {
                if row_key(ctx, eq.iter().map(|e| &e.1), r, &mut key_buf)? {
                    table.entry(key_buf.clone()).or_default().push(i);
                }
            }
            for cur in &current {
                if row_key(ctx, eq.iter().map(|e| e.0), cur, &mut key_buf)?
                    && let Some(hits) = table.get(&key_buf)
                {
                    for &i in hits {
                        emit(ctx, combine(cur, &right[i]), &mut out)?;
                    }
                }
            }
        }
        current = out;
        joined = now;
    }
    // Anything left (conditions over inputs that were never all present cannot exist).
    for (c, cond) in conds.iter().enumerate() {
        if !used[c] {
            let mut keep = Vec::with_capacity(current.len());
            for r in current {
                if truthy(&eval(ctx, &cond.expr, &r)?) {
                    keep.push(r);
                }
            }
            current = keep;
        }
    }
    Ok(current)
}

// ---------------------------------------------------------------- aggregates

#[derive(Clone)]
enum Acc {
    Count(i64),
    SumInt(Option<i128>),
    SumDec(Option<Numeric>),
    SumFloat(Option<f64>),
    /// avg: integers add up in `isum` (no allocation per row), numerics in
    /// `sum`, floats in `fsum`.
    Avg {
        sum: Numeric,
        isum: i128,
        fsum: f64,
        n: i64,
        float: bool,
    },
    MinMax(Option<Value>),
    Bool(Option<bool>),
    Str(Option<String>),
    /// Floats: Welford's running mean and squared deviations. Integers and
    /// numerics: exact sums (`isum`, `isum2` while they fit i128), for
    /// PostgreSQL's exact numeric variance.
    Var {
        n: i64,
        mean: f64,
        m2: f64,
        isum: i128,
        isum2: i128,
        sum: Numeric,
        sum2: Numeric,
    },
    /// Ordered-set aggregates: the non-null values in order, and the
    /// fraction of the first row that had one.
    Values(Vec<Value>, Option<Value>),
    /// sum/avg of intervals.
    Interval {
        sum: Option<crate::types::datetime::Interval>,
        n: i64,
    },
    /// array_agg, json(b)_agg: every value, NULLs included.
    List(Option<Vec<Value>>),
    /// json(b)_object_agg: (key, value) pairs.
    Pairs(Option<Vec<(Value, Value)>>),
}

fn new_acc(a: &AggCall) -> Acc {
    let float_arg = matches!(a.data_type, DataType::Double | DataType::Real);
    if a.data_type == DataType::Interval && matches!(a.func, AggFunc::Sum | AggFunc::Avg) {
        return Acc::Interval { sum: None, n: 0 };
    }
    match a.func {
        AggFunc::CountStar | AggFunc::Count => Acc::Count(0),
        AggFunc::Sum => match a.data_type {
            DataType::BigInt => Acc::SumInt(None),
            DataType::Numeric(_) => Acc::SumDec(None),
            _ => Acc::SumFloat(None),
        },
        AggFunc::Avg => Acc::Avg { sum: Numeric::ZERO, isum: 0, fsum: 0.0, n: 0, float: float_arg },
        AggFunc::Min | AggFunc::Max => Acc::MinMax(None),
        AggFunc::BoolAnd | AggFunc::BoolOr => Acc::Bool(None),
        AggFunc::StringAgg => Acc::Str(None),
        AggFunc::StddevPop | AggFunc::StddevSamp | AggFunc::VarPop | AggFunc::VarSamp => Acc::Var {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            isum: 0,
            isum2: 0,
            sum: Numeric::ZERO,
            sum2: Numeric::ZERO,
        },
        AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode => {
            Acc::Values(Vec::new(), None)
        }
        AggFunc::ArrayAgg | AggFunc::JsonAgg | AggFunc::JsonbAgg => Acc::List(None),
        AggFunc::JsonObjectAgg | AggFunc::JsonbObjectAgg => Acc::Pairs(None),
    }
}

fn overflow() -> Error {
    Error::user("22003", "bigint out of range")
}

fn update_acc(acc: &mut Acc, a: &AggCall, v: Value, extra: Option<Value>) -> Result<()> {
    if a.func == AggFunc::CountStar {
        if let Acc::Count(c) = acc {
            *c += 1;
        }
        return Ok(());
    }
    match acc {
        Acc::List(l) => {
            l.get_or_insert_with(Vec::new).push(v);
            return Ok(());
        }
        Acc::Pairs(p) => {
            typefuncs::check_key(&v)?;
            p.get_or_insert_with(Vec::new).push((v, extra.unwrap_or(Value::Null)));
            return Ok(());
        }
        _ => {}
    }
    if v.is_null() {
        return Ok(());
    }
    match acc {
        Acc::List(_) | Acc::Pairs(_) => {}
        Acc::Count(c) => *c += 1,
        Acc::SumInt(s) => *s = Some(s.unwrap_or(0) + v.as_i64().unwrap_or(0) as i128),
        Acc::SumDec(s) => {
            let d = crate::types::cast::to_numeric(v)?;
            *s = Some(match s {
                None => d,
                Some(cur) => cur.add(&d)?,
            });
        }
        Acc::SumFloat(s) => *s = Some(s.unwrap_or(0.0) + v.as_f64().unwrap_or(0.0)),
        Acc::Avg { sum, isum, fsum, n, float } => {
            *n += 1;
            if *float {
                *fsum += v.as_f64().unwrap_or(0.0);
            } else if let Some(i) = v.as_i64() {
                // i128 holds 2^64 bigints' sum: no overflow in practice, but checked.
                match isum.checked_add(i as i128) {
                    Some(t) => *isum = t,
                    None => *sum = sum.add(&Numeric::from_i64(i))?,
                }
            } else {
                *sum = sum.add(&crate::types::cast::to_numeric(v)?)?;
            }
        }
        Acc::MinMax(m) => {
            let replace = match m {
                None => true,
                Some(cur) => {
                    let o = v.total_cmp(cur);
                    if a.func == AggFunc::Min {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                }
            };
            if replace {
                *m = Some(v);
            }
        }
        Acc::Bool(b) => {
            let x = v == Value::Bool(true);
            *b = Some(match (*b, a.func) {
                (None, _) => x,
                (Some(c), AggFunc::BoolAnd) => c && x,
                (Some(c), _) => c || x,
            });
        }
        Acc::Str(s) => {
            let text = crate::types::cast::to_text(v);
            match s {
                None => *s = Some(text),
                Some(cur) => {
                    if let Some(Value::Text(d)) = &extra {
                        cur.push_str(d);
                    }
                    cur.push_str(&text);
                }
            }
        }
        Acc::Interval { sum, n } => {
            if let Value::Interval(i) = v {
                *sum = Some(match sum {
                    None => i,
                    Some(s) => s.checked_add(i)?,
                });
                *n += 1;
            }
        }
        Acc::Var { n, mean, m2, isum, isum2, sum, sum2 } => {
            if matches!(a.data_type, DataType::Numeric(_)) {
                *n += 1;
                if let Some(i) = v.as_i64() {
                    let i = i as i128;
                    if let (Some(s), Some(s2)) =
                        (isum.checked_add(i), i.checked_mul(i).and_then(|q| isum2.checked_add(q)))
                    {
                        (*isum, *isum2) = (s, s2);
                        return Ok(());
                    }
                }
                let x = crate::types::cast::to_numeric(v)?;
                *sum2 = sum2.add(&x.mul(&x)?)?;
                *sum = sum.add(&x)?;
                return Ok(());
            }
            let x = v.as_f64().unwrap_or(0.0);
            *n += 1;
            let d = x - *mean;
            *mean += d / *n as f64;
            *m2 += d * (x - *mean);
        }
        Acc::Values(vals, fraction) => {
            if fraction.is_none() {
                *fraction = extra;
            }
            vals.push(v);
        }
    }
    Ok(())
}

/// percentile_cont, percentile_disc and mode over values in ascending
/// order, as PostgreSQL computes them.
fn ordered_set(func: AggFunc, vals: Vec<Value>, fraction: Option<Value>) -> Result<Value> {
    if vals.is_empty() {
        return Ok(Value::Null);
    }
    if func == AggFunc::Mode {
        // The most frequent value; the first (smallest) among ties.
        let mut best = 0;
        let mut best_n = 0;
        let mut i = 0;
        while i < vals.len() {
            let mut j = i + 1;
            while j < vals.len() && vals[j].total_cmp(&vals[i]) == Ordering::Equal {
                j += 1;
            }
            if j - i > best_n {
                best_n = j - i;
                best = i;
            }
            i = j;
        }
        return Ok(vals.into_iter().nth(best).unwrap_or(Value::Null));
    }
    let f = match fraction {
        None | Some(Value::Null) => return Ok(Value::Null),
        Some(v) => v.as_f64().unwrap_or(f64::NAN),
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(Error::user("22003", format!("percentile value {f} is not between 0 and 1")));
    }
    let n = vals.len();
    if func == AggFunc::PercentileDisc {
        // The first value whose position in the order reaches f.
        let k = ((f * n as f64).ceil() as usize).max(1) - 1;
        return Ok(vals.into_iter().nth(k.min(n - 1)).unwrap_or(Value::Null));
    }
    let pos = f * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let x = vals[lo].as_f64().unwrap_or(0.0);
    let y = vals[hi.min(n - 1)].as_f64().unwrap_or(0.0);
    Ok(Value::Float8(if lo == hi { x } else { x + (pos - lo as f64) * (y - x) }))
}

fn finish_acc(acc: Acc, a: &AggCall) -> Result<Value> {
    Ok(match acc {
        Acc::Values(vals, fraction) => ordered_set(a.func, vals, fraction)?,
        Acc::Count(c) => Value::Int8(c),
        Acc::SumInt(s) => match s {
            None => Value::Null,
            Some(s) => Value::Int8(i64::try_from(s).map_err(|_| overflow())?),
        },
        Acc::SumDec(s) => s.map_or(Value::Null, Value::Numeric),
        Acc::SumFloat(s) => match (s, &a.data_type) {
            (None, _) => Value::Null,
            (Some(f), DataType::Real) => Value::Float4(f as f32),
            (Some(f), _) => Value::Float8(f),
        },
        Acc::Avg { sum, isum, fsum, n, float } => {
            if n == 0 {
                Value::Null
            } else if float {
                Value::Float8(fsum / n as f64)
            } else {
                let total = Numeric::from_i128_scale(isum, 0)?.add(&sum)?;
                Value::Numeric(total.div(&Numeric::from_i64(n))?)
            }
        }
        Acc::MinMax(m) => m.unwrap_or(Value::Null),
        Acc::Interval { sum, n } => match sum {
            None => Value::Null,
            Some(s) if a.func == AggFunc::Avg => Value::Interval(s.div_f64(n as f64)?),
            Some(s) => Value::Interval(s),
        },
        Acc::Bool(b) => b.map_or(Value::Null, Value::Bool),
        Acc::Str(s) => s.map_or(Value::Null, Value::Text),
        Acc::List(l) => match l {
            None => Value::Null,
            Some(mut items) => {
                // DISTINCT aggregates see their input sorted, as in PostgreSQL.
                if a.distinct {
                    items.sort_by(|x, y| x.total_cmp(y));
                }
                typefuncs::finish_list(a.func, items)?
            }
        },
        Acc::Pairs(p) => match p {
            None => Value::Null,
            Some(pairs) => typefuncs::finish_pairs(a.func, pairs)?,
        },
        Acc::Var { n, m2, isum, isum2, sum, sum2, .. } => {
            let samp = matches!(a.func, AggFunc::StddevSamp | AggFunc::VarSamp);
            if matches!(a.data_type, DataType::Numeric(_)) {
                let stddev = matches!(a.func, AggFunc::StddevSamp | AggFunc::StddevPop);
                let sum = Numeric::from_i128_scale(isum, 0)?.add(&sum)?;
                let sum2 = Numeric::from_i128_scale(isum2, 0)?.add(&sum2)?;
                return Ok(numeric_variance(n, &sum, &sum2, samp, stddev)?
                    .map_or(Value::Null, Value::Numeric));
            }
            let denom = if samp { n - 1 } else { n };
            if denom <= 0 {
                Value::Null
            } else {
                let var = (m2 / denom as f64).max(0.0);
                let r = if matches!(a.func, AggFunc::StddevSamp | AggFunc::StddevPop) {
                    var.sqrt()
                } else {
                    var
                };
                Value::Float8(r)
            }
        }
    })
}

/// PostgreSQL's numeric_stddev_internal: (n·Σx² − (Σx)²) / (n·(n−1))
/// (n² for the population forms) at select_div_scale's scale, and its
/// square root at that scale for stddev; None where the result is NULL.
fn numeric_variance(
    n: i64,
    sum: &Numeric,
    sum2: &Numeric,
    samp: bool,
    stddev: bool,
) -> Result<Option<Numeric>> {
    if n == 0 || (samp && n == 1) {
        return Ok(None);
    }
    if !sum.is_finite() || !sum2.is_finite() {
        return Ok(Some(Numeric::NaN));
    }
    let vn = Numeric::from_i64(n);
    let rscale = sum.scale() as i64 * 2;
    let num = vn.mul(sum2)?.round_scale(rscale)?.sub(&sum.mul(sum)?)?;
    if num.signum() <= 0 {
        return Ok(Some(Numeric::ZERO));
    }
    let den = vn.mul(&Numeric::from_i64(if samp { n - 1 } else { n }))?;
    let rscale = crate::types::numeric::div_scale(&num, &den);
    let v = num.div_to_scale(&den, rscale)?;
    Ok(Some(if stddev { v.sqrt_scale(rscale)? } else { v }))
}

struct Group {
    keys: Row,
    accs: Vec<Acc>,
    seen: Vec<HashSet<Vec<u8>>>,
    /// For aggregates with ORDER BY: (sort keys, value, extra) of each
    /// input row, fed to the aggregate in order when the group is done.
    ordered: Vec<Vec<(Row, Value, Option<Value>)>>,
}

/// The groups of a GROUP BY (without grouping sets) over `input`, which
/// is streamed, decoding only the columns the keys and the calls read.
pub(crate) fn aggregate_plan(
    ctx: &mut Ctx,
    input: &Plan,
    group_by: &[Expr],
    aggs: &[AggCall],
) -> Result<stream::Stream<'static>> {
    let width = plan_width(input, None);
    let mut exprs: Vec<&Expr> = group_by.iter().collect();
    for a in aggs {
        // Every expression of the call (a new field must be listed here).
        let AggCall { func: _, arg, extra, distinct: _, filter, order_by, data_type: _ } = a;
        exprs.extend(arg.iter().chain(extra).chain(filter));
        exprs.extend(order_by.iter().map(|k| &k.expr));
    }
    let need = stream::needing(stream::none_needed(width), width, exprs);
    let rows = stream::open_cols(ctx, input, None, need)?;
    aggregate(ctx, rows, group_by, aggs, group_by.is_empty())
}

/// Groups the rows of `rows` by `group_by` and computes `aggs` per group;
/// with `one_group` (no keys, or an empty grouping set) there is exactly
/// one group, even for no rows. Groups beyond `work_mem` spill to
/// partition files, each aggregated in turn, and then the finished groups
/// go to a file as well (see `spill`).
fn aggregate(
    ctx: &mut Ctx,
    rows: stream::Stream,
    group_by: &[Expr],
    aggs: &[AggCall],
    one_group: bool,
) -> Result<stream::Stream<'static>> {
    let mut out = Vec::new();
    let Some(first) = aggregate_pass(ctx, rows, group_by, aggs, one_group, 0, &mut out)? else {
        return Ok(stream::Stream::Rows(out.into_iter()));
    };
    let mut done = spill::SpillWriter::new()?;
    let mut queue: Vec<(spill::SpillFile, u64)> =
        first.finish()?.into_iter().map(|r| (r, 1)).collect();
    loop {
        for r in out.drain(..) {
            done.write(&r, &[])?;
        }
        let Some((file, depth)) = queue.pop() else { break };
        let input = stream::Stream::Spilled(file.open()?);
        if let Some(p) = aggregate_pass(ctx, input, group_by, aggs, false, depth, &mut out)? {
            queue.extend(p.finish()?.into_iter().map(|r| (r, depth + 1)));
        }
    }
    Ok(stream::Stream::Spilled(done.finish()?.open()?))
}

/// Bytes a group holds before any of its values: its key (twice: in the
/// index and the group) and its states.
fn group_size(key: &[u8], keys: &[Value], aggs: usize) -> usize {
    64 + key.len() + spill::row_size(keys) + aggs * std::mem::size_of::<Acc>()
}

/// Whether an aggregate's state grows with every value it takes.
fn acc_grows(a: &AggCall) -> bool {
    a.distinct
        || !a.order_by.is_empty()
        || matches!(
            a.func,
            AggFunc::StringAgg
                | AggFunc::ArrayAgg
                | AggFunc::JsonAgg
                | AggFunc::JsonbAgg
                | AggFunc::JsonObjectAgg
                | AggFunc::JsonbObjectAgg
                | AggFunc::PercentileCont
                | AggFunc::PercentileDisc
                | AggFunc::Mode
        )
}

/// One pass of `aggregate`: the groups that fit in `work_mem` are
/// finished into `out`; the rows of the others are returned, partitioned.
fn aggregate_pass(
    ctx: &mut Ctx,
    mut rows: stream::Stream,
    group_by: &[Expr],
    aggs: &[AggCall],
    one_group: bool,
    depth: u64,
    out: &mut Vec<Row>,
) -> Result<Option<spill::Partitions>> {
    let work_mem = spill::work_mem();
    let mut mem = 0usize;
    let mut spilled: Option<spill::Partitions> = None;
    let grows = aggs.iter().any(acc_grows);
    let mut groups: Vec<Group> = Vec::new();
    let mut index: FastMap<Vec<u8>, usize> = FastMap::default();
    let mut buf = Vec::new();
    let new_group = |keys: Row| Group {
        keys,
        accs: aggs.iter().map(new_acc).collect(),
        seen: aggs.iter().map(|_| HashSet::new()).collect(),
        ordered: aggs.iter().map(|_| Vec::new()).collect(),
    };
    if one_group {
        let keys = group_by.iter().map(|e| eval(ctx, e, &[])).collect::<Result<Vec<_>>>()?;
        groups.push(new_group(keys));
    }
    let mut keys: Row = Vec::with_capacity(group_by.len());
    while let Some(row) = rows.next(ctx)? {
        let r = &row;
        let g = if one_group {
            0
        } else {
            keys.clear();
            for e in group_by {
                keys.push(eval(ctx, e, r)?);
            }
            key_bytes(&keys, &mut buf);
            match index.get(&buf) {
                Some(&g) => g,
                None if mem > work_mem => {
                    // No room for another group: its rows wait in a file.
                    spilled.get_or_insert_with(|| spill::Partitions::new(depth)).write(&buf, r)?;
                    continue;
                }
                None => {
                    mem += group_size(&buf, &keys, aggs.len());
                    index.insert(buf.clone(), groups.len());
                    groups.push(new_group(keys.clone()));
                    groups.len() - 1
                }
            }
        };
        for (i, a) in aggs.iter().enumerate() {
            if let Some(f) = &a.filter
                && !truthy(&eval(ctx, f, r)?)
            {
                continue;
            }
            let v = match &a.arg {
                Some(e) => eval(ctx, e, r)?,
                None => Value::Null,
            };
            if grows && acc_grows(a) {
                // Held until the group ends: counted against work_mem (so
                // that new groups spill) and the query's value limit.
                mem += spill::value_size(&v) + 16;
                ctx.charge(1)?;
            }
            if !a.order_by.is_empty() {
                let keys =
                    a.order_by.iter().map(|k| eval(ctx, &k.expr, r)).collect::<Result<Row>>()?;
                let extra = match &a.extra {
                    Some(e) => Some(eval(ctx, e, r)?),
                    None => None,
                };
                groups[g].ordered[i].push((keys, v, extra));
                continue;
            }
            if a.distinct && !v.is_null() {
                key_bytes(std::slice::from_ref(&v), &mut buf);
                if !groups[g].seen[i].insert(buf.clone()) {
                    continue;
                }
            }
            let extra = match &a.extra {
                Some(e) => Some(eval(ctx, e, r)?),
                None => None,
            };
            update_acc(&mut groups[g].accs[i], a, v, extra)?;
        }
        rows.recycle(row);
    }
    drop(index);
    out.reserve(groups.len());
    for mut g in groups {
        for (i, a) in aggs.iter().enumerate() {
            if a.order_by.is_empty() {
                continue;
            }
            let mut items = std::mem::take(&mut g.ordered[i]);
            items.sort_by(|x, y| cmp_sort_keys(&a.order_by, &x.0, &y.0));
            for (_, v, extra) in items {
                if a.distinct && !v.is_null() {
                    key_bytes(std::slice::from_ref(&v), &mut buf);
                    if !g.seen[i].insert(buf.clone()) {
                        continue;
                    }
                }
                update_acc(&mut g.accs[i], a, v, extra)?;
            }
        }
        let mut row = g.keys;
        for (acc, a) in g.accs.into_iter().zip(aggs) {
            row.push(finish_acc(acc, a)?);
        }
        out.push(row);
    }
    Ok(spilled)
}

/// The (rowid, row) pairs whose index columns equal the keys (and whose
/// next column lies within `range`, bounds inclusive). `types` are the
/// index columns' types (by the positions in `columns`); rows have `ncols`.
/// `rowid_key`: `index` is the key of the table's key rowids.
#[allow(clippy::too_many_arguments)]
pub fn index_rows(
    ctx: &mut Ctx,
    table: u64,
    types: &[DataType],
    ncols: usize,
    index: u64,
    unique: bool,
    columns: &[usize],
    keys: &[Expr],
    range: Option<&crate::plan::IndexRange>,
    rowid_key: bool,
) -> Result<Vec<(u64, Row)>> {
    let rows_of = rowid_key.then_some(table);
    let types = stream::KeyTypes::Types(types);
    let found = stream::lookup(ctx, types, index, unique, columns, keys, range, rows_of)?;
    if rowid_key {
        return key_rowid_rows(ctx, found, ncols);
    }
    let mut rowids = Vec::new();
    stream::lookup_rowids(ctx, found, &mut rowids)?;
    let mut out = Vec::with_capacity(rowids.len());
    for rowid in rowids {
        if let Some(row) = storage::get_row(ctx.txn, table, rowid, ncols)? {
            out.push((rowid, row));
        }
    }
    Ok(out)
}

/// The rows (rowid, row of `ncols`) a lookup on the key of a table's key
/// rowids finds (`stream::lookup` with `rows_of`), in key order.
pub(crate) fn key_rowid_rows(
    ctx: &mut Ctx,
    found: stream::Lookup,
    ncols: usize,
) -> Result<Vec<(u64, Row)>> {
    let mut out = Vec::new();
    let mut val = Vec::new();
    stream::lookup_rows(ctx, found, &mut val, &mut |rowid, v| {
        let mut row = Vec::with_capacity(ncols);
        crate::types::encoding::decode_row(v, ncols, &mut row)?;
        out.push((rowid, row));
        Ok(())
    })?;
    Ok(out)
}

/// `v` as a value of a column of type `ty`, for an index key; None if no
/// value of the column can equal it.
pub(crate) fn index_value(v: Value, ty: &DataType) -> Option<Value> {
    // An integer key of an integer column (a primary-key lookup): exact
    // if it is in the column's range, without a cast and a comparison.
    if let Value::Int2(_) | Value::Int4(_) | Value::Int8(_) = v {
        let i = v.as_i64()?;
        match ty {
            DataType::SmallInt => return i16::try_from(i).ok().map(Value::Int2),
            DataType::Integer => return i32::try_from(i).ok().map(Value::Int4),
            DataType::BigInt => return Some(Value::Int8(i)),
            _ => {}
        }
    }
    if v.is_null() {
        return None;
    }
    let c = crate::types::cast::assign(v.clone(), ty).ok()?;
    (c.sql_cmp(&v) == Some(Ordering::Equal)).then_some(c)
}
