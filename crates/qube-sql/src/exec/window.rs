//! Window functions: each call sorts the rows by its partition and order
//! keys, walks each partition, and appends one value per row.
//!
//! Frames: ROWS frames count rows; GROUPS frames count peer groups;
//! RANGE frames take a row's ORDER BY peers with it, and their value
//! offsets (`RANGE 5 PRECEDING`, `INTERVAL '1 day' PRECEDING` over the
//! single ORDER BY value) become positions by binary search over the
//! sorted values; without ORDER BY every row of a partition is a peer. Aggregates over a frame that starts at
//! the partition's start are computed incrementally; other frames are
//! aggregated row by row.

use std::cmp::Ordering;

use qube_common::{Error, Result};

use super::eval::eval;
use super::{Acc, Ctx, Row, cmp_sort_keys, finish_acc, key_bytes, new_acc, update_acc};
use crate::plan::{AggCall, FrameBound, FrameUnits, WindowCall, WindowFunc};
use crate::types::Value;

pub fn run(ctx: &mut Ctx, mut rows: Vec<Row>, calls: &[WindowCall]) -> Result<Vec<Row>> {
    for call in calls {
        let values = one_call(ctx, &rows, call)?;
        for (r, v) in rows.iter_mut().zip(values) {
            r.push(v);
        }
    }
    Ok(rows)
}

struct Item {
    part: Vec<u8>,
    order: Vec<Value>,
    idx: usize,
}

fn one_call(ctx: &mut Ctx, rows: &[Row], call: &WindowCall) -> Result<Vec<Value>> {
    let mut items = Vec::with_capacity(rows.len());
    let mut buf = Vec::new();
    for (idx, r) in rows.iter().enumerate() {
        let p = call.partition.iter().map(|e| eval(ctx, e, r)).collect::<Result<Vec<_>>>()?;
        key_bytes(&p, &mut buf);
        let order = call.order.iter().map(|k| eval(ctx, &k.expr, r)).collect::<Result<Vec<_>>>()?;
        items.push(Item { part: buf.clone(), order, idx });
    }
    items.sort_by(|a, b| {
        a.part.cmp(&b.part).then_with(|| cmp_sort_keys(&call.order, &a.order, &b.order))
    });
    let mut out = vec![Value::Null; rows.len()];
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len() && items[end].part == items[start].part {
            end += 1;
        }
        partition(ctx, rows, call, &items[start..end], &mut out)?;
        start = end;
    }
    Ok(out)
}

fn partition(
    ctx: &mut Ctx,
    rows: &[Row],
    call: &WindowCall,
    part: &[Item],
    out: &mut [Value],
) -> Result<()> {
    let n = part.len();
    // Peer groups: first and last position of each row's peers.
    let mut first_peer = vec![0; n];
    let mut last_peer = vec![0; n];
    let mut group = vec![0usize; n];
    let mut g = 0;
    let mut s = 0;
    while s < n {
        let mut e = s + 1;
        while e < n && cmp_sort_keys(&call.order, &part[e].order, &part[s].order) == Ordering::Equal
        {
            e += 1;
        }
        for p in s..e {
            first_peer[p] = s;
            last_peer[p] = e - 1;
            group[p] = g;
        }
        g += 1;
        s = e;
    }
    let row = |p: usize| &rows[part[p].idx];
    // First and last position of each peer group (for GROUPS offsets).
    let mut group_first = Vec::with_capacity(g);
    let mut group_last = Vec::with_capacity(g);
    for p in 0..n {
        if p == 0 || group[p] != group[p - 1] {
            group_first.push(p);
            group_last.push(p);
        }
        if let Some(l) = group_last.last_mut() {
            *l = p;
        }
    }
    // RANGE offsets: each position's bound, found by binary search over
    // the sorted ORDER BY values.
    let range_lo = range_bounds(ctx, call, part, &call.frame.start, true, &first_peer, &last_peer)?;
    let range_hi = range_bounds(ctx, call, part, &call.frame.end, false, &first_peer, &last_peer)?;
    let units = call.frame.units;
    let groups = g as i64;
    // Frame of position p: inclusive [lo, hi], empty when lo > hi.
    let frame = |p: usize| -> (i64, i64) {
        let f = &call.frame;
        let (pi, n) = (p as i64, n as i64);
        let gi = group[p] as i64;
        let group_start = |k: i64| {
            if k < 0 {
                0
            } else if k >= groups {
                n
            } else {
                group_first[k as usize] as i64
            }
        };
        let group_end = |k: i64| {
            if k < 0 {
                -1
            } else if k >= groups {
                n - 1
            } else {
                group_last[k as usize] as i64
            }
        };
        let lo = match &f.start {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(k) if units == FrameUnits::Groups => group_start(gi - *k as i64),
            FrameBound::Following(k) if units == FrameUnits::Groups => group_start(gi + *k as i64),
            FrameBound::Preceding(k) => pi - *k as i64,
            FrameBound::Following(k) => pi + *k as i64,
            FrameBound::CurrentRow if units != FrameUnits::Rows => first_peer[p] as i64,
            FrameBound::CurrentRow => pi,
            FrameBound::ValuePreceding(_) | FrameBound::ValueFollowing(_) => range_lo[p],
            FrameBound::UnboundedFollowing => n,
        };
        let hi = match &f.end {
            FrameBound::UnboundedFollowing => n - 1,
            FrameBound::Following(k) if units == FrameUnits::Groups => group_end(gi + *k as i64),
            FrameBound::Preceding(k) if units == FrameUnits::Groups => group_end(gi - *k as i64),
            FrameBound::Following(k) => pi + *k as i64,
            FrameBound::Preceding(k) => pi - *k as i64,
            FrameBound::CurrentRow if units != FrameUnits::Rows => last_peer[p] as i64,
            FrameBound::CurrentRow => pi,
            FrameBound::ValuePreceding(_) | FrameBound::ValueFollowing(_) => range_hi[p],
            FrameBound::UnboundedPreceding => -1,
        };
        (lo.max(0), hi.min(n - 1))
    };
    let arg = |ctx: &mut Ctx, i: usize, p: usize| -> Result<Value> {
        match call.args.get(i) {
            Some(e) => eval(ctx, e, row(p)),
            None => Ok(Value::Null),
        }
    };
    let int_arg = |ctx: &mut Ctx, i: usize, p: usize, default: i64| -> Result<i64> {
        match call.args.get(i) {
            None => Ok(default),
            Some(e) => Ok(eval(ctx, e, row(p))?.as_i64().unwrap_or(default)),
        }
    };
    match &call.func {
        WindowFunc::Agg(a) => return aggregate(ctx, rows, part, a, call, &frame, out),
        _ => {
            for p in 0..n {
                let v = match &call.func {
                    WindowFunc::RowNumber => Value::Int8(p as i64 + 1),
                    WindowFunc::Rank => Value::Int8(first_peer[p] as i64 + 1),
                    WindowFunc::DenseRank => Value::Int8(group[p] as i64 + 1),
                    WindowFunc::PercentRank => Value::Float8(if n > 1 {
                        first_peer[p] as f64 / (n - 1) as f64
                    } else {
                        0.0
                    }),
                    WindowFunc::CumeDist => Value::Float8((last_peer[p] + 1) as f64 / n as f64),
                    WindowFunc::Ntile => {
                        let k = int_arg(ctx, 0, p, 1)?;
                        if k <= 0 {
                            return Err(Error::user(
                                "22014",
                                "argument of ntile must be greater than zero",
                            ));
                        }
                        let k = k as usize;
                        // The first n % k buckets hold one row more.
                        let (size, extra) = (n / k, n % k);
                        let big = extra * (size + 1);
                        let bucket =
                            if p < big { p / (size + 1) } else { extra + (p - big) / size.max(1) };
                        Value::Int4(bucket as i32 + 1)
                    }
                    WindowFunc::Lag | WindowFunc::Lead => {
                        let off = int_arg(ctx, 1, p, 1)?;
                        let target = if matches!(call.func, WindowFunc::Lag) {
                            p as i64 - off
                        } else {
                            p as i64 + off
                        };
                        if target >= 0 && (target as usize) < n {
                            arg(ctx, 0, target as usize)?
                        } else {
                            arg(ctx, 2, p)?
                        }
                    }
                    WindowFunc::FirstValue | WindowFunc::LastValue | WindowFunc::NthValue => {
                        let (lo, hi) = frame(p);
                        if lo > hi {
                            Value::Null
                        } else {
                            let at = match call.func {
                                WindowFunc::FirstValue => lo,
                                WindowFunc::LastValue => hi,
                                _ => {
                                    let k = int_arg(ctx, 1, p, 1)?;
                                    if k <= 0 {
                                        return Err(Error::user(
                                            "22016",
                                            "argument of nth_value must be greater than zero",
                                        ));
                                    }
                                    lo + k - 1
                                }
                            };
                            if at > hi { Value::Null } else { arg(ctx, 0, at as usize)? }
                        }
                    }
                    WindowFunc::Agg(_) => unreachable_agg()?,
                };
                out[part[p].idx] = v;
            }
        }
    }
    Ok(())
}

fn unreachable_agg() -> Result<Value> {
    Err(Error::Internal("aggregate handled apart".into()))
}

fn add_row(ctx: &mut Ctx, acc: &mut Acc, a: &AggCall, row: &Row) -> Result<()> {
    if let Some(f) = &a.filter
        && !super::eval::truthy(&eval(ctx, f, row)?)
    {
        return Ok(());
    }
    let v = match &a.arg {
        Some(e) => eval(ctx, e, row)?,
        None => Value::Null,
    };
    let extra = match &a.extra {
        Some(e) => Some(eval(ctx, e, row)?),
        None => None,
    };
    update_acc(acc, a, v, extra)
}

fn aggregate(
    ctx: &mut Ctx,
    rows: &[Row],
    part: &[Item],
    a: &AggCall,
    call: &WindowCall,
    frame: &dyn Fn(usize) -> (i64, i64),
    out: &mut [Value],
) -> Result<()> {
    if a.distinct {
        return Err(Error::user("0A000", "DISTINCT is not implemented for window functions"));
    }
    let n = part.len();
    if call.frame.start == FrameBound::UnboundedPreceding {
        // The frame only grows: add rows as its end moves.
        let mut acc = new_acc(a);
        let mut added: i64 = -1;
        for p in 0..n {
            let (_, hi) = frame(p);
            while added < hi {
                added += 1;
                add_row(ctx, &mut acc, a, &rows[part[added as usize].idx])?;
            }
            out[part[p].idx] = finish_acc(acc.clone(), a)?;
        }
        return Ok(());
    }
    for p in 0..n {
        let (lo, hi) = frame(p);
        let mut acc = new_acc(a);
        let mut q = lo;
        while q <= hi {
            add_row(ctx, &mut acc, a, &rows[part[q as usize].idx])?;
            q += 1;
        }
        out[part[p].idx] = finish_acc(acc, a)?;
    }
    Ok(())
}

/// For a RANGE frame end with a value offset, the bound at each position
/// of a partition (empty for other ends): the first position whose value
/// reaches `value ∓ offset` (a start) or the last one within it (an end).
/// A row whose ORDER BY value is NULL frames its peers, as in PostgreSQL.
fn range_bounds(
    ctx: &mut Ctx,
    call: &WindowCall,
    part: &[Item],
    bound: &FrameBound,
    start: bool,
    first_peer: &[usize],
    last_peer: &[usize],
) -> Result<Vec<i64>> {
    let (offset, preceding) = match bound {
        FrameBound::ValuePreceding(e) => (e, true),
        FrameBound::ValueFollowing(e) => (e, false),
        _ => return Ok(Vec::new()),
    };
    let k = eval(ctx, offset, &[])?;
    if k.is_null() {
        return Err(Error::user("22004", "frame starting offset must not be null"));
    }
    let negative = match &k {
        Value::Interval(i) => i.span() < 0,
        v => v.as_f64().is_some_and(|f| f < 0.0),
    };
    if negative {
        return Err(Error::user("22013", "invalid preceding or following size in window function"));
    }
    let desc = call.order.first().is_some_and(|o| o.desc);
    let n = part.len();
    let key = |q: usize| &part[q].order[0];
    // Non-null values form one contiguous run in the sorted partition.
    let nn_lo = (0..n).find(|&q| !key(q).is_null()).unwrap_or(n);
    let nn_hi = (nn_lo..n).find(|&q| key(q).is_null()).unwrap_or(n);
    let mut out = Vec::with_capacity(n);
    for p in 0..n {
        let v = key(p);
        if v.is_null() {
            out.push(if start { first_peer[p] as i64 } else { last_peer[p] as i64 });
            continue;
        }
        // Toward smaller values when PRECEDING in ascending order.
        let down = preceding != desc;
        let op = if down { crate::plan::BinOp::Sub } else { crate::plan::BinOp::Add };
        let target = match super::eval::binary(op, v.clone(), k.clone()) {
            Ok(t) => Some(t),
            // Past the type's range: every row on that side is within.
            Err(e) if e.sqlstate() == "22003" || e.sqlstate() == "22008" => None,
            Err(e) => return Err(e),
        };
        let seg = &part[nn_lo..nn_hi];
        // Position in sorted order: "before" = comes earlier in the sort.
        let before = |x: &Value, t: &Value| {
            let o = x.total_cmp(t);
            if desc { o == Ordering::Greater } else { o == Ordering::Less }
        };
        let after = |x: &Value, t: &Value| {
            let o = x.total_cmp(t);
            if desc { o == Ordering::Less } else { o == Ordering::Greater }
        };
        let pos = match (&target, start) {
            (None, true) => {
                if down {
                    nn_lo as i64
                } else {
                    nn_hi as i64
                }
            }
            (None, false) => {
                if down {
                    nn_lo as i64 - 1
                } else {
                    nn_hi as i64 - 1
                }
            }
            (Some(t), true) => (nn_lo + seg.partition_point(|it| before(&it.order[0], t))) as i64,
            (Some(t), false) => {
                (nn_lo + seg.partition_point(|it| !after(&it.order[0], t))) as i64 - 1
            }
        };
        out.push(pos);
    }
    Ok(out)
}
