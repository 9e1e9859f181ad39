//! Index-only scans: a query that reads nothing but an index's columns
//! gets its rows from the index entries' keys, without reading the rows.
//!
//! Why this is sound under MVCC: an index entry is a key of its own in the
//! MVCC keyspace (`storage.rs`), written, rewritten and deleted in the same
//! transaction as its row, with versions of its own. A snapshot sees an
//! entry exactly when it sees the row version that entry was made from
//! (an UPDATE that changes an indexed column deletes the old entry and
//! writes the new one; a DELETE deletes every entry). So visibility is
//! decided by the entry itself, and no heap check is needed — unlike
//! PostgreSQL, whose index tuples carry no visibility and whose index-only
//! scans consult the visibility map and, for pages not all-visible, the
//! heap.
//!
//! The shape this marks, made by `Binder::select` (after `order.rs`):
//!
//! ```text
//! [Limit | Sort | Project]* → Project → Filter* → IndexScan (plain index)
//! ```
//!
//! when the lowest projection and the filters read only columns of the
//! index (and the table's key-rowid column, see below), none holds a
//! subquery (whose outer references could read any column), and every
//! column of the index has a type whose key encoding gives the value back
//! exactly (`encoding::key_decodable`). The executor (`exec::stream`) then
//! decodes the index columns from each entry's key and leaves the others
//! NULL; EXPLAIN shows `Index Only Scan`.
//!
//! A table with key rowids (`storage.rs`: an integer primary key is the
//! rowid, as SQLite's `INTEGER PRIMARY KEY`) has that column in every
//! index for free: each entry's value is its row's rowid, which is the
//! key's value flipped order-preservingly. So `SELECT id, val FROM t ORDER
//! BY val` over an index on `val` reads no row, as in SQLite.

use super::{Expr, Plan};
use crate::types::encoding::key_decodable;

/// Marks an index scan index-only where the query allows (see the module doc).
pub fn use_index_only(plan: &mut Plan) {
    match plan {
        Plan::Limit { input, .. } | Plan::Sort { input, .. } => use_index_only(input),
        Plan::Project { input, exprs } => {
            let mut cols = Vec::new();
            if !reads(exprs, &mut cols) {
                return;
            }
            let mut node = input.as_mut();
            loop {
                match node {
                    Plan::Filter { input, predicate } => {
                        if !reads(std::slice::from_ref(predicate), &mut cols) {
                            return;
                        }
                        node = input.as_mut();
                    }
                    Plan::IndexScan { table, index, index_only, .. } => {
                        if table.expr_index(*index).is_some() {
                            return;
                        }
                        let Some((_, icols, _)) = table.indexes.iter().find(|i| i.0 == *index)
                        else {
                            return;
                        };
                        let decodable = icols
                            .iter()
                            .all(|&c| table.columns.get(c).is_some_and(|t| key_decodable(&t.1)));
                        // A key-rowid column comes from the entry's value.
                        let rowid = table.rowid_key.map(|k| k.column);
                        if decodable && cols.iter().all(|c| icols.contains(c) || Some(*c) == rowid)
                        {
                            *index_only = true;
                        }
                        return;
                    }
                    // A projection over a sort or another projection reads
                    // only that node's output: look further down.
                    Plan::Sort { .. } | Plan::Project { .. } | Plan::Limit { .. } => {
                        return use_index_only(node);
                    }
                    _ => return,
                }
            }
        }
        _ => {}
    }
}

/// Adds the columns `exprs` read to `cols`; false if one holds a subquery.
fn reads(exprs: &[Expr], cols: &mut Vec<usize>) -> bool {
    for e in exprs {
        if e.has_subquery() {
            return false;
        }
        e.columns_used(cols);
    }
    true
}
