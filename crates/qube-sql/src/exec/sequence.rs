//! Sequences in SQL: CREATE/ALTER SEQUENCE options and the functions
//! `nextval`, `currval`, `setval` and `lastval`.
//!
//! A sequence's value lives in the catalog outside MVCC (see
//! `Catalog::nextval`): values are never given back by a rollback, as in
//! PostgreSQL. What `currval` and `lastval` return is per session
//! (`SeqValues`, shared by the session's statements through its
//! `SearchPath`).

use std::collections::HashMap;

use qube_catalog::{Def, ObjectId, SequenceDef};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use sqlparser::ast;

use super::Ctx;
use crate::plan::Func;
use crate::types::Value;

/// Values this session's `nextval` calls returned.
#[derive(Debug, Default)]
pub struct SeqValues {
    pub current: HashMap<ObjectId, i64>,
    pub last: Option<i64>,
}

/// The limits of a sequence's type.
fn type_bounds(t: &DataType) -> (i64, i64) {
    match t {
        DataType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
        DataType::Integer => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

fn option_int(e: &ast::Expr) -> Result<i64> {
    let (neg, inner) = match e {
        ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => (true, expr.as_ref()),
        ast::Expr::UnaryOp { op: ast::UnaryOperator::Plus, expr } => (false, expr.as_ref()),
        other => (false, other),
    };
    let text = match inner {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let v: i64 = text.parse().map_err(|_| {
        Error::user(
            "22023",
            format!("invalid sequence option value \"{e}\": an integer is required"),
        )
    })?;
    Ok(if neg { -v } else { v })
}

/// The definition CREATE SEQUENCE (`old` None) or ALTER SEQUENCE makes of
/// `options`; `restart` is set by RESTART [WITH n]. OWNED BY is returned
/// as the name it gives, for the caller to resolve.
pub fn apply_options(
    old: Option<&SequenceDef>,
    options: &[ast::SequenceOptions],
) -> Result<(SequenceDef, Option<Option<ast::ObjectName>>)> {
    use ast::SequenceOptions as O;
    let mut data_type = old.map_or(DataType::BigInt, |d| d.data_type.clone());
    let mut increment = old.map(|d| d.increment);
    let mut min: Option<Option<i64>> = None;
    let mut max: Option<Option<i64>> = None;
    let mut start = None;
    let mut cycle = old.is_some_and(|d| d.cycle);
    let mut owned = None;
    for o in options {
        match o {
            O::DataType(t) => {
                data_type = crate::plan::bind::data_type_of(t)?;
                if !matches!(data_type, DataType::SmallInt | DataType::Integer | DataType::BigInt) {
                    return Err(Error::user(
                        "22023",
                        "sequence type must be smallint, integer, or bigint",
                    ));
                }
            }
            O::IncrementBy(e, _) => increment = Some(option_int(e)?),
            O::MinValue(e) => min = Some(e.as_ref().map(option_int).transpose()?),
            O::MaxValue(e) => max = Some(e.as_ref().map(option_int).transpose()?),
            O::StartWith(e, _) => start = Some(option_int(e)?),
            O::Cache(e) => {
                if option_int(e)? < 1 {
                    return Err(Error::user("22023", "CACHE must be greater than zero"));
                }
            }
            O::Cycle(c) => cycle = !*c,
            O::OwnedBy(n) => owned = Some(n.clone()),
        }
    }
    let increment = increment.unwrap_or(1);
    if increment == 0 {
        return Err(Error::user("22023", "INCREMENT must not be zero"));
    }
    let (tmin, tmax) = type_bounds(&data_type);
    let default_min = if increment > 0 { 1 } else { tmin };
    let default_max = if increment > 0 { tmax } else { -1 };
    let min = match min {
        Some(Some(v)) => v,
        Some(None) => default_min,
        None => old.map_or(default_min, |d| d.min),
    };
    let max = match max {
        Some(Some(v)) => v,
        Some(None) => default_max,
        None => old.map_or(default_max, |d| d.max),
    };
    let ty = data_type.sql_name();
    if min < tmin || min > tmax {
        return Err(Error::user(
            "22023",
            format!("MINVALUE ({min}) is out of range for sequence data type {ty}"),
        ));
    }
    if max < tmin || max > tmax {
        return Err(Error::user(
            "22023",
            format!("MAXVALUE ({max}) is out of range for sequence data type {ty}"),
        ));
    }
    if min >= max {
        return Err(Error::user(
            "22023",
            format!("MINVALUE ({min}) must be less than MAXVALUE ({max})"),
        ));
    }
    let start =
        start.unwrap_or_else(|| old.map_or(if increment > 0 { min } else { max }, |d| d.start));
    if start < min {
        return Err(Error::user(
            "22023",
            format!("START value ({start}) cannot be less than MINVALUE ({min})"),
        ));
    }
    if start > max {
        return Err(Error::user(
            "22023",
            format!("START value ({start}) cannot be greater than MAXVALUE ({max})"),
        ));
    }
    let def = SequenceDef {
        data_type,
        start,
        increment,
        min,
        max,
        cycle,
        owned_by: old.and_then(|d| d.owned_by.clone()),
    };
    Ok((def, owned))
}

/// `nextval`, `currval`, `setval`, `lastval`.
pub fn call(ctx: &mut Ctx, func: Func, args: Vec<Value>) -> Result<Value> {
    let Some(env) = ctx.env else {
        return Err(Error::user("0A000", "sequence functions are not available here"));
    };
    if func == Func::Lastval {
        return match env.path.seqs.lock().last {
            Some(v) => Ok(Value::Int8(v)),
            None => Err(Error::user("55000", "lastval is not yet defined in this session")),
        };
    }
    let name = match args.first() {
        Some(Value::Null) | None => return Ok(Value::Null),
        Some(Value::Text(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let parts = crate::names::parse_qualified(&name)?;
    let obj = env
        .path
        .relation(env.catalog, ctx.txn, &parts)?
        .ok_or_else(|| Error::user("42P01", format!("relation \"{name}\" does not exist")))?;
    if !matches!(obj.def, Def::Sequence(_)) {
        return Err(Error::user("42809", format!("\"{}\" is not a sequence", obj.name)));
    }
    match func {
        Func::Nextval => {
            if matches!(ctx.txn.mode(), qube_txn::Mode::ReadOnly(_)) {
                return Err(Error::user(
                    "25006",
                    "cannot execute nextval() in a read-only transaction",
                ));
            }
            let v = env.catalog.nextval(ctx.txn, obj.id)?;
            record(ctx, obj.id, v);
            Ok(Value::Int8(v))
        }
        Func::Currval => match env.path.seqs.lock().current.get(&obj.id) {
            Some(v) => Ok(Value::Int8(*v)),
            None => Err(Error::user(
                "55000",
                format!("currval of sequence \"{}\" is not yet defined in this session", obj.name),
            )),
        },
        _ => {
            let Some(v) = args.get(1).and_then(Value::as_i64) else {
                return Ok(Value::Null);
            };
            let called = match args.get(2) {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Ok(Value::Null),
            };
            if matches!(ctx.txn.mode(), qube_txn::Mode::ReadOnly(_)) {
                return Err(Error::user(
                    "25006",
                    "cannot execute setval() in a read-only transaction",
                ));
            }
            env.catalog.setval(ctx.txn, obj.id, v, called)?;
            if called {
                record(ctx, obj.id, v);
            }
            Ok(Value::Int8(v))
        }
    }
}

/// Remembers `v` as the session's `currval` of `seq` and its `lastval`.
pub fn record(ctx: &Ctx, seq: ObjectId, v: i64) {
    if let Some(env) = ctx.env {
        let mut s = env.path.seqs.lock();
        s.current.insert(seq, v);
        s.last = Some(v);
    }
}
