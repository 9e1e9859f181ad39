//! Correlated `[NOT] EXISTS` as a hashed semi-join.
//!
//! A correlated subquery runs once per outer row: `NOT EXISTS (SELECT 1
//! FROM b WHERE b.aid = a.id AND b.k > 3)` without an index on `b.aid`
//! scans `b` for every row of `a`. When the subquery's only references to
//! the outer row are equalities `inner = outer` among its WHERE (or join)
//! conjuncts, the subquery without them is uncorrelated: it runs once,
//! its rows' inner key values go into a hash set, and each outer row looks
//! its outer key values up — PostgreSQL's pull-up of EXISTS sublinks into
//! semi- and anti-joins, done here at run time.
//!
//! Sound shapes only: Project, Filter and LIMIT (n ≥ 1, no OFFSET) over a
//! table scan, an index scan or an inner join, nothing else reading the
//! outer row; the keys must be of one hash class (`super::hash_class`),
//! as for `IN (subquery)`; an outer value of another class, or any other
//! shape, falls back to running the subquery per row. A NULL key matches
//! nothing, as `=` is never true for it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use qube_common::Result;

use super::eval::eval;
use super::{Ctx, FastHasher, hash_class, key_bytes, stream};
use crate::plan::{BinOp, Expr, JoinCond, Plan};
use crate::types::Value;

/// A decorrelated EXISTS: the inner keys of its rows, and how to compute
/// the outer keys from the outer row.
pub(crate) struct ExistsSet {
    keys: HashSet<Vec<u8>, std::hash::BuildHasherDefault<FastHasher>>,
    /// Over the outer row (its `Outer { depth: 1 }` references as columns).
    outer: Vec<Expr>,
    /// The class of each key (None: no row had a non-null key).
    classes: Vec<Option<u8>>,
    /// The outer row's key values and their bytes (reused per probe).
    scratch: RefCell<(Vec<Value>, Vec<u8>)>,
}

/// How many `IN (subquery)` hash sets and decorrelated EXISTS subqueries
/// were built since the process started (for monitoring and tests).
pub(crate) static HASHED: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

/// (IN hash sets, decorrelated EXISTS) built since the process started.
pub fn hashed_subqueries() -> (u64, u64) {
    (HASHED.0.load(Ordering::Relaxed), HASHED.1.load(Ordering::Relaxed))
}

impl ExistsSet {
    /// Whether some row of the subquery has keys equal to the outer row's;
    /// None when the set cannot answer (a value of another class).
    pub fn probe(&self, ctx: &mut Ctx, row: &[Value]) -> Result<Option<bool>> {
        let mut scratch = self.scratch.borrow_mut();
        let (vals, buf) = &mut *scratch;
        vals.clear();
        for (e, class) in self.outer.iter().zip(&self.classes) {
            let v = eval(ctx, e, row)?;
            if v.is_null() {
                return Ok(Some(false));
            }
            match class {
                // No row has a non-null key here: nothing can match.
                None => return Ok(Some(false)),
                Some(c) if hash_class(&v) != Some(*c) => return Ok(None),
                Some(_) => {}
            }
            vals.push(v);
        }
        key_bytes(vals, buf);
        Ok(Some(self.keys.contains(buf.as_slice())))
    }
}

/// Builds the set for correlated EXISTS subquery `plan`, or None if its
/// shape does not allow it (see the module doc).
pub(crate) fn exists_set(ctx: &mut Ctx, plan: &Plan) -> Result<Option<Rc<ExistsSet>>> {
    let mut pairs = Vec::new();
    let Some(inner) = strip(plan, &mut pairs) else { return Ok(None) };
    if pairs.is_empty() {
        return Ok(None);
    }
    let (inner_keys, outer): (Vec<Expr>, Vec<Expr>) = pairs.into_iter().unzip();
    let mut set = ExistsSet {
        keys: HashSet::default(),
        outer,
        classes: vec![None; inner_keys.len()],
        scratch: RefCell::default(),
    };
    let mut rows = stream::open(ctx, &inner, None)?;
    let mut vals = Vec::with_capacity(inner_keys.len());
    let mut buf = Vec::new();
    'rows: while let Some(r) = rows.next(ctx)? {
        vals.clear();
        for (k, e) in inner_keys.iter().enumerate() {
            let v = eval(ctx, e, &r)?;
            if v.is_null() {
                continue 'rows;
            }
            let c = hash_class(&v);
            if c.is_none() || set.classes[k].is_some_and(|x| Some(x) != c) {
                return Ok(None);
            }
            set.classes[k] = c;
            vals.push(v);
        }
        key_bytes(&vals, &mut buf);
        if !set.keys.contains(&buf) {
            ctx.charge(1)?;
            set.keys.insert(buf.clone());
        }
    }
    HASHED.1.fetch_add(1, Ordering::Relaxed);
    Ok(Some(Rc::new(set)))
}

/// Whether `e` reads the outer rows (or holds a subquery, which might).
fn reads_outer(e: &Expr) -> bool {
    let mut found = e.has_subquery();
    e.walk(&mut |x| found |= matches!(x, Expr::Outer { .. }));
    found
}

/// `e` over the immediately enclosing row only: its `Outer { depth: 1 }`
/// references as columns; None if it reads this query's own columns or
/// rows further out.
fn outer_only(e: &Expr) -> Option<Expr> {
    if e.has_subquery() {
        return None;
    }
    let mut ok = true;
    let mut any = false;
    e.walk(&mut |x| match x {
        Expr::Column(_) => ok = false,
        Expr::Outer { depth: 1, .. } => any = true,
        Expr::Outer { .. } => ok = false,
        _ => {}
    });
    if !ok || !any {
        return None;
    }
    let mut out = e.clone();
    out.walk_mut(&mut |x| {
        if let Expr::Outer { depth: 1, index } = x {
            *x = Expr::Column(*index);
        }
    });
    Some(out)
}

/// Sorts one conjunct: kept as a condition of the uncorrelated plan, or an
/// (inner, outer) key pair; false if it reads the outer row otherwise.
fn classify(c: &Expr, local: &mut Vec<Expr>, pairs: &mut Vec<(Expr, Expr)>) -> bool {
    if !reads_outer(c) {
        local.push(c.clone());
        return true;
    }
    let Expr::Binary { op: BinOp::Eq, left, right } = c else { return false };
    for (a, b) in [(left, right), (right, left)] {
        if !reads_outer(a)
            && let Some(o) = outer_only(b)
        {
            let mut cols = Vec::new();
            a.columns_used(&mut cols);
            if !cols.is_empty() {
                pairs.push(((**a).clone(), o));
                return true;
            }
        }
    }
    false
}

/// The subquery without its correlated equalities (collected in `pairs`),
/// or None if it has another shape.
fn strip(plan: &Plan, pairs: &mut Vec<(Expr, Expr)>) -> Option<Plan> {
    match plan {
        Plan::Project { input, exprs } if !super::typefuncs::has_set_function(exprs) => {
            strip(input, pairs)
        }
        Plan::Limit { input, limit, offset: None } => {
            let keeps_a_row = match limit {
                None => true,
                Some(Expr::Const(v)) => v.as_i64().is_some_and(|n| n >= 1),
                Some(_) => false,
            };
            if keeps_a_row { strip(input, pairs) } else { None }
        }
        Plan::Filter { input, predicate } => {
            let mut local = Vec::new();
            for p in predicate.conjuncts() {
                if !classify(p, &mut local, pairs) {
                    return None;
                }
            }
            let mut out = strip(input, pairs)?;
            for p in local {
                out = Plan::Filter { input: Box::new(out), predicate: p };
            }
            Some(out)
        }
        Plan::MultiJoin { inputs, conds, width } => {
            let mut kept = Vec::with_capacity(conds.len());
            for c in conds {
                let mut local = Vec::new();
                if !classify(&c.expr, &mut local, pairs) {
                    return None;
                }
                if !local.is_empty() {
                    kept.push(JoinCond { expr: c.expr.clone(), inputs: c.inputs.clone() });
                }
            }
            let mut new_inputs = Vec::with_capacity(inputs.len());
            for i in inputs {
                let mut p = Vec::new();
                let plan = strip(&i.plan, &mut p)?;
                if !p.is_empty() {
                    // Keys inside a join input would need its offset.
                    return None;
                }
                new_inputs.push(crate::plan::JoinInput { plan, offset: i.offset, width: i.width });
            }
            Some(Plan::MultiJoin { inputs: new_inputs, conds: kept, width: *width })
        }
        Plan::Scan { .. } => Some(plan.clone()),
        Plan::IndexScan { keys, range, .. } => {
            let outer = keys.iter().any(reads_outer)
                || range.as_ref().is_some_and(|r| {
                    r.low.as_ref().is_some_and(reads_outer)
                        || r.high.as_ref().is_some_and(reads_outer)
                });
            if outer { None } else { Some(plan.clone()) }
        }
        _ => None,
    }
}
