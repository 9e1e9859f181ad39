//! Window functions: each call sorts the rows by its partition and order
//! keys, walks each partition, and appends one value per row.
//!
//! Frames: ROWS frames count rows; RANGE frames (UNBOUNDED or CURRENT ROW
//! ends only) take a row's ORDER BY peers with it; without ORDER BY every
//! row of a partition is a peer. Aggregates over a frame that starts at
//! the partition's start are computed incrementally; other frames are
//! aggregated row by row.

use std::cmp::Ordering;

use qube_common::{Error, Result};

use super::eval::eval;
use super::{Acc, Ctx, Row, cmp_sort_keys, finish_acc, key_bytes, new_acc, update_acc};
use crate::plan::{AggCall, FrameBound, WindowCall, WindowFunc};
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
    // Frame of position p: inclusive [lo, hi], empty when lo > hi.
    let frame = |p: usize| -> (i64, i64) {
        let f = call.frame;
        let (p, n) = (p as i64, n as i64);
        let lo = match f.start {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(k) => p - k as i64,
            FrameBound::CurrentRow if !f.rows => first_peer[p as usize] as i64,
            FrameBound::CurrentRow => p,
            FrameBound::Following(k) => p + k as i64,
            FrameBound::UnboundedFollowing => n,
        };
        let hi = match f.end {
            FrameBound::UnboundedFollowing => n - 1,
            FrameBound::Following(k) => p + k as i64,
            FrameBound::CurrentRow if !f.rows => last_peer[p as usize] as i64,
            FrameBound::CurrentRow => p,
            FrameBound::Preceding(k) => p - k as i64,
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
