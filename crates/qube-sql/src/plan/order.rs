//! Ordered index scans: an ORDER BY that an index's order answers reads
//! the index in order (forward, or in reverse for DESC) instead of sorting.
//!
//! Index entries sort by the key encoding of their columns, which orders
//! values as `Value::total_cmp` does and puts NULLs after every value
//! (`types::encoding`). So a forward scan is `ORDER BY cols ASC NULLS
//! LAST` and a reverse scan `ORDER BY cols DESC NULLS FIRST` — PostgreSQL's
//! defaults for ASC and DESC; the other NULL placements (and mixed
//! directions) keep the sort. Ties come in rowid order (reverse: the
//! opposite), which SQL leaves unspecified.
//!
//! The shape this rewrites, made by `Binder::select` and `query_body`:
//!
//! ```text
//! [Limit] → [Project (drops hidden sort columns)] → Sort → Project → Filter* → Scan | IndexScan
//! ```
//!
//! The sort keys must be output columns that are plain table columns, in
//! the order of an index's columns after the ones that equalities fix. An
//! `IndexScan` already on such an index just changes direction and the Sort
//! goes. A `Scan` becomes a scan of the whole index only under a LIMIT
//! (which then stops after a few entries, `exec::stream`): reading every
//! row through the index costs more than sorting them.

use qube_common::types::DataType;

use super::{Expr, Plan};

/// Removes a Sort that an index order answers (see the module doc).
pub fn use_index_order(plan: &mut Plan) {
    let limited = matches!(plan, Plan::Limit { .. });
    let mut node = plan;
    if let Plan::Limit { input, .. } = node {
        node = input.as_mut();
    }
    let projected =
        matches!(node, Plan::Project { input, .. } if matches!(input.as_ref(), Plan::Sort { .. }));
    if projected && let Plan::Project { input, .. } = node {
        node = input.as_mut();
    }
    let Some((reverse, scan_index)) = decide(node, limited) else { return };
    let Plan::Sort { input, .. } = node else { return };
    let Plan::Project { input: below, .. } = input.as_mut() else { return };
    let base = base_mut(below);
    match (base, scan_index) {
        (Plan::IndexScan { reverse: r, .. }, None) => *r = reverse,
        (base @ Plan::Scan { .. }, Some(index)) => {
            let Plan::Scan { table } = std::mem::replace(base, Plan::unit()) else { return };
            *base = Plan::IndexScan {
                table,
                index,
                unique: false,
                columns: vec![],
                keys: vec![],
                range: None,
                reverse,
                index_only: false,
            };
        }
        _ => return,
    }
    let inner = std::mem::replace(input.as_mut(), Plan::unit());
    *node = inner;
}

fn base_mut(p: &mut Plan) -> &mut Plan {
    match p {
        Plan::Filter { input, .. } => base_mut(input),
        other => other,
    }
}

fn base(p: &Plan) -> &Plan {
    match p {
        Plan::Filter { input, .. } => base(input),
        other => other,
    }
}

/// The table columns the sort keys of `sort` read, if each key is a
/// plain table column under the projection; empty otherwise.
fn sort_columns_of(sort: &Plan) -> Vec<usize> {
    let Plan::Sort { input, keys } = sort else { return vec![] };
    let Plan::Project { exprs, .. } = input.as_ref() else { return vec![] };
    let mut cols = Vec::new();
    for k in keys {
        let Expr::Column(i) = k.expr else { return vec![] };
        let Some(Expr::Column(c)) = exprs.get(i) else { return vec![] };
        cols.push(*c);
    }
    cols
}

/// Whether the key encoding orders a column type as the sort does.
fn orderable(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::SmallInt
            | DataType::Integer
            | DataType::BigInt
            | DataType::Real
            | DataType::Double
            | DataType::Numeric(_)
            | DataType::Boolean
            | DataType::Text
            | DataType::Varchar(_)
            | DataType::Bytea
            // Integers in their keys, ordered as Value::total_cmp orders them.
            | DataType::Date
            | DataType::Time
            | DataType::Timestamp
            | DataType::TimestampTz
            | DataType::Uuid
    )
}

/// The first index whose columns, after the equality-fixed `fixed`
/// ones, start with `cols` (the sort columns that `fixed` does not hold).
fn index_for(indexes: &[(u64, Vec<usize>, bool)], fixed: &[usize], cols: &[usize]) -> Option<u64> {
    let want: Vec<usize> = cols.iter().copied().filter(|c| !fixed.contains(c)).collect();
    indexes
        .iter()
        .find(|(_, ix, _)| {
            ix.len() >= fixed.len()
                && ix[..fixed.len()] == *fixed
                && ix[fixed.len()..].starts_with(&want)
        })
        .map(|(id, ..)| *id)
}

/// Some((reverse, index to scan instead of the table)) if `sort` can be
/// answered by an index order.
fn decide(sort: &Plan, limited: bool) -> Option<(bool, Option<u64>)> {
    let Plan::Sort { input, keys } = sort else { return None };
    let Plan::Project { input: below, .. } = input.as_ref() else { return None };
    let first = keys.first()?;
    let reverse = first.desc;
    if keys.iter().any(|k| k.desc != reverse || k.nulls_first != reverse) {
        return None;
    }
    let cols = sort_columns_of(sort);
    if cols.len() != keys.len() {
        return None;
    }
    match base(below) {
        Plan::Scan { table } if limited => {
            if cols.iter().any(|&c| !table.columns.get(c).is_some_and(|t| orderable(&t.1))) {
                return None;
            }
            index_for(&table.indexes, &[], &cols).map(|ix| (reverse, Some(ix)))
        }
        Plan::IndexScan { table, index, unique: false, columns, keys, .. } => {
            // A key set (IN list) reads several runs of the index, each in
            // order, but not in order together.
            if keys.iter().any(|k| super::bind::as_key_set(k).is_some()) {
                return None;
            }
            if cols.iter().any(|&c| !table.columns.get(c).is_some_and(|t| orderable(&t.1))) {
                return None;
            }
            let (_, ix, _) = table.indexes.iter().find(|(id, ..)| id == index)?;
            let rest: Vec<usize> = cols.iter().copied().filter(|c| !columns.contains(c)).collect();
            (ix.len() >= columns.len() && ix[columns.len()..].starts_with(&rest))
                .then_some((reverse, None))
        }
        _ => None,
    }
}
