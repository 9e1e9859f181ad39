//! Binary joins (`Plan::Join`: LEFT, RIGHT, FULL and the inner joins the
//! binder keeps binary) by one of three methods.
//!
//! * **Nested loop** when the ON condition has no equality between the
//!   two sides: every pair is tested.
//! * **Hash join** (the default with equalities): the right input is read
//!   into a hash table on its key; the left input streams past it. NULL
//!   keys match nothing.
//! * **Merge join**: both inputs are sorted on their keys by the external
//!   sort of `spill` (which spills beyond `work_mem`) and merged. It is
//!   used when `enable_hashjoin` is off, and — adaptively — when the right
//!   input, while being read for the hash table, passes `work_mem`: the
//!   rows read so far go into the right side's sort, followed by the rest
//!   (PostgreSQL would split the hash join into batches instead). So the
//!   memory an outer join holds for its inputs is bounded by `work_mem`;
//!   its output, like every join's, counts against the query's value
//!   limit (`Ctx::charge`). `enable_mergejoin = off` keeps the hash join
//!   whatever the size.
//!
//! The merge: keys are compared with `Value::total_cmp` (the order the
//! sort produced, ascending, NULLs last); a row whose key has a NULL part
//! matches nothing and is emitted padded (for the outer sides) as soon as
//! it is met. For each run of right rows with one key, the left rows with
//! that key are paired with every row of the run and the whole ON
//! condition decides; a run's rows that matched nothing are padded when
//! the run ends.

use std::cell::Cell;
use std::cmp::Ordering;

use qube_common::Result;

use super::eval::{eval, truthy};
use super::spill::{self, Sorted, Sorter};
use super::stream;
use super::{Ctx, FastMap, Row, join_keys, row_key, width_hint};
use crate::plan::{Expr, JoinKind, Plan, SortKey};
use crate::types::Value;

thread_local! {
    /// (enable_hashjoin, enable_mergejoin) of the running statement.
    static METHODS: Cell<(bool, bool)> = const { Cell::new((true, true)) };
}

/// Sets the statement's `enable_hashjoin` and `enable_mergejoin`
/// (statements run synchronously on the calling thread; the session sets
/// these before each one, as `spill::set_env`).
pub fn set_methods(hash: bool, merge: bool) {
    METHODS.with(|m| m.set((hash, merge)));
}

fn methods() -> (bool, bool) {
    METHODS.with(|m| m.get())
}

/// The method EXPLAIN shows for a binary join with condition `on` whose
/// left input is `lw` columns wide (the adaptive switch to a merge join is
/// decided while running and is not shown).
pub fn method_name(on: &Expr, lw: usize) -> &'static str {
    if join_keys(on, lw).0.is_empty() {
        "Nested Loop"
    } else if methods() == (false, true) {
        "Merge"
    } else {
        "Hash"
    }
}

/// Runs a binary join; output rows are the left columns, then the right.
pub fn binary_join(
    ctx: &mut Ctx,
    left: &Plan,
    right: &Plan,
    kind: JoinKind,
    on: &Expr,
) -> Result<Vec<Row>> {
    let lw = super::plan_width(left, None);
    let rw = super::plan_width(right, None);
    let (lkeys, rkeys) = join_keys(on, lw);
    if lkeys.is_empty() {
        let l = super::run(ctx, left)?;
        let r = super::run(ctx, right)?;
        return nested_loop(ctx, &l, &r, kind, on, lw, rw);
    }
    let (hash, merge) = methods();
    if !hash && merge {
        let rs = stream::open(ctx, right, None)?;
        return merge_join(ctx, (left, &lkeys), (rs, Vec::new(), &rkeys), kind, on, (lw, rw));
    }
    // Read the right input for the hash table, switching to a merge join
    // past work_mem.
    let mut rs = stream::open(ctx, right, None)?;
    let (limit, mut mem) = (spill::work_mem(), 0usize);
    let mut r = Vec::new();
    while let Some(row) = rs.next(ctx)? {
        mem += spill::row_size(&row);
        r.push(row);
        if merge && mem > limit {
            return merge_join(ctx, (left, &lkeys), (rs, r, &rkeys), kind, on, (lw, rw));
        }
    }
    drop(rs);
    hash_join(ctx, left, &r, kind, on, (&lkeys, &rkeys), (lw, rw))
}

/// Every pair of rows, kept where `on` holds.
fn nested_loop(
    ctx: &mut Ctx,
    l: &[Row],
    r: &[Row],
    kind: JoinKind,
    on: &Expr,
    lw: usize,
    rw: usize,
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let mut right_matched = vec![false; r.len()];
    let mut row = Vec::with_capacity(lw + rw);
    for lr in l {
        let mut matched = false;
        for (j, rr) in r.iter().enumerate() {
            if emit_if(ctx, on, lr, rr, &mut row, &mut out)? {
                matched = true;
                right_matched[j] = true;
            }
        }
        if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
            emit_padded_left(ctx, lr, lw + rw, &mut out)?;
        }
    }
    if matches!(kind, JoinKind::Right | JoinKind::Full) {
        for (j, rr) in r.iter().enumerate() {
            if !right_matched[j] {
                emit_padded_right(ctx, rr, lw, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// A hash table on `r`'s keys, probed by the left input's rows as they
/// stream.
fn hash_join(
    ctx: &mut Ctx,
    left: &Plan,
    r: &[Row],
    kind: JoinKind,
    on: &Expr,
    (lkeys, rkeys): (&[Expr], &[Expr]),
    (lw, rw): (usize, usize),
) -> Result<Vec<Row>> {
    let mut table: FastMap<Vec<u8>, Vec<usize>> = FastMap::default();
    let mut buf = Vec::new();
    for (j, rr) in r.iter().enumerate() {
        if row_key(ctx, rkeys.iter(), rr, &mut buf)? {
            table.entry(buf.clone()).or_default().push(j);
        }
    }
    let mut out = Vec::new();
    let mut right_matched = vec![false; r.len()];
    let mut row = Vec::with_capacity(lw + rw);
    let mut ls = stream::open(ctx, left, None)?;
    while let Some(lr) = ls.next(ctx)? {
        let mut matched = false;
        let candidates: &[usize] = if row_key(ctx, lkeys.iter(), &lr, &mut buf)? {
            table.get(&buf).map_or(&[], |v| v.as_slice())
        } else {
            &[]
        };
        for &j in candidates {
            if emit_if(ctx, on, &lr, &r[j], &mut row, &mut out)? {
                matched = true;
                right_matched[j] = true;
            }
        }
        if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
            emit_padded_left(ctx, &lr, lw + rw, &mut out)?;
        }
        ls.recycle(lr);
    }
    if matches!(kind, JoinKind::Right | JoinKind::Full) {
        for (j, rr) in r.iter().enumerate() {
            if !right_matched[j] {
                emit_padded_right(ctx, rr, lw, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Evaluates `exprs` over `row` into `out`; false if a part is NULL (the
/// row then matches nothing).
fn eval_key(ctx: &mut Ctx, exprs: &[Expr], row: &[Value], out: &mut Vec<Value>) -> Result<bool> {
    out.clear();
    for e in exprs {
        let v = eval(ctx, e, row)?;
        if v.is_null() {
            return Ok(false);
        }
        out.push(v);
    }
    Ok(true)
}

/// Emits `lr` joined with `rr` (built in `row`, reused) if `on` holds;
/// whether it did.
fn emit_if(
    ctx: &mut Ctx,
    on: &Expr,
    lr: &[Value],
    rr: &[Value],
    row: &mut Row,
    out: &mut Vec<Row>,
) -> Result<bool> {
    ctx.tick()?;
    row.clear();
    row.extend_from_slice(lr);
    row.extend_from_slice(rr);
    if !truthy(&eval(ctx, on, row)?) {
        return Ok(false);
    }
    ctx.charge(width_hint(out))?;
    out.push(row.clone());
    Ok(true)
}

fn emit_padded_left(ctx: &mut Ctx, lr: &[Value], width: usize, out: &mut Vec<Row>) -> Result<()> {
    let mut o = Vec::with_capacity(width);
    o.extend_from_slice(lr);
    o.resize(width, Value::Null);
    ctx.charge(width_hint(out))?;
    out.push(o);
    Ok(())
}

fn emit_padded_right(ctx: &mut Ctx, rr: &[Value], lw: usize, out: &mut Vec<Row>) -> Result<()> {
    let mut o = vec![Value::Null; lw];
    o.extend_from_slice(rr);
    ctx.charge(width_hint(out))?;
    out.push(o);
    Ok(())
}

/// A sorted input: its rows with their evaluated keys, one ahead.
struct Side<'k> {
    rows: Sorted<'k>,
    exprs: &'k [Expr],
    /// The current row and its key (None: the key has a NULL part).
    cur: Option<(Row, Option<Row>)>,
}

impl<'k> Side<'k> {
    fn new(ctx: &mut Ctx, rows: Sorted<'k>, exprs: &'k [Expr]) -> Result<Side<'k>> {
        let mut s = Side { rows, exprs, cur: None };
        s.advance(ctx)?;
        Ok(s)
    }

    fn advance(&mut self, ctx: &mut Ctx) -> Result<()> {
        ctx.tick()?;
        self.cur = match self.rows.next_row()? {
            None => None,
            Some(row) => {
                let mut k = Vec::with_capacity(self.exprs.len());
                let key = if eval_key(ctx, self.exprs, &row, &mut k)? { Some(k) } else { None };
                Some((row, key))
            }
        };
        Ok(())
    }
}

fn cmp_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = x.total_cmp(y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn sort_keys(exprs: &[Expr]) -> Vec<SortKey> {
    exprs.iter().map(|e| SortKey { expr: e.clone(), desc: false, nulls_first: false }).collect()
}

/// Sorts both inputs on their keys and merges them. `right` is the right
/// input's stream, with the rows already read from it.
fn merge_join(
    ctx: &mut Ctx,
    (left, lkeys): (&Plan, &[Expr]),
    (mut rs, read, rkeys): (stream::Stream, Vec<Row>, &[Expr]),
    kind: JoinKind,
    on: &Expr,
    (lw, rw): (usize, usize),
) -> Result<Vec<Row>> {
    let rsort = sort_keys(rkeys);
    let mut sorter = Sorter::new(&rsort, None);
    for row in read {
        sorter.push(ctx, row)?;
    }
    while let Some(row) = rs.next(ctx)? {
        sorter.push(ctx, row)?;
    }
    drop(rs);
    let rsorted = sorter.finish()?;
    let lsort = sort_keys(lkeys);
    let ls = stream::open(ctx, left, None)?;
    let lsorted = spill::sort_stream(ctx, ls, &lsort, None)?;
    let mut l = Side::new(ctx, lsorted, lkeys)?;
    let mut r = Side::new(ctx, rsorted, rkeys)?;
    let (pad_left, pad_right) = (
        matches!(kind, JoinKind::Left | JoinKind::Full),
        matches!(kind, JoinKind::Right | JoinKind::Full),
    );
    let mut out = Vec::new();
    let mut row = Vec::with_capacity(lw + rw);
    // The current run of right rows with one key, and which matched.
    let mut group: Vec<Row> = Vec::new();
    let mut matched: Vec<bool> = Vec::new();
    loop {
        // Rows with a NULL key part match nothing.
        if let Some((lr, None)) = &l.cur {
            if pad_left {
                emit_padded_left(ctx, lr, lw + rw, &mut out)?;
            }
            l.advance(ctx)?;
            continue;
        }
        if let Some((rr, None)) = &r.cur {
            if pad_right {
                emit_padded_right(ctx, rr, lw, &mut out)?;
            }
            r.advance(ctx)?;
            continue;
        }
        let order = match (&l.cur, &r.cur) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((_, Some(a))), Some((_, Some(b)))) => cmp_keys(a, b),
            _ => unreachable!("NULL keys are handled above"),
        };
        match order {
            Ordering::Less => {
                if pad_left && let Some((lr, _)) = &l.cur {
                    emit_padded_left(ctx, lr, lw + rw, &mut out)?;
                }
                l.advance(ctx)?;
            }
            Ordering::Greater => {
                if pad_right && let Some((rr, _)) = &r.cur {
                    emit_padded_right(ctx, rr, lw, &mut out)?;
                }
                r.advance(ctx)?;
            }
            Ordering::Equal => {
                // The run of right rows with this key.
                let Some((first, Some(key))) = r.cur.take() else { unreachable!() };
                group.clear();
                matched.clear();
                ctx.charge(first.len())?;
                group.push(first);
                r.advance(ctx)?;
                while let Some((rr, Some(k))) = &r.cur {
                    if cmp_keys(k, &key) != Ordering::Equal {
                        break;
                    }
                    ctx.charge(rr.len())?;
                    let Some((rr, _)) = r.cur.take() else { unreachable!() };
                    group.push(rr);
                    r.advance(ctx)?;
                }
                matched.resize(group.len(), false);
                // Every left row with this key meets the whole run.
                while let Some((lr, Some(k))) = &l.cur {
                    if cmp_keys(k, &key) != Ordering::Equal {
                        break;
                    }
                    let mut any = false;
                    for (j, rr) in group.iter().enumerate() {
                        if emit_if(ctx, on, lr, rr, &mut row, &mut out)? {
                            any = true;
                            matched[j] = true;
                        }
                    }
                    if !any && pad_left {
                        emit_padded_left(ctx, lr, lw + rw, &mut out)?;
                    }
                    l.advance(ctx)?;
                }
                if pad_right {
                    for (j, rr) in group.iter().enumerate() {
                        if !matched[j] {
                            emit_padded_right(ctx, rr, lw, &mut out)?;
                        }
                    }
                }
            }
        }
    }
    MERGE_JOINS.with(|n| n.set(n.get() + 1));
    Ok(out)
}

thread_local! {
    static MERGE_JOINS: Cell<u64> = const { Cell::new(0) };
}

/// Merge joins run on this thread (statements run on their session's
/// calling thread), for tests.
pub fn merge_joins() -> u64 {
    MERGE_JOINS.with(|n| n.get())
}
