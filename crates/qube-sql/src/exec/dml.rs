//! INSERT, UPDATE and DELETE: rows checked against their table's
//! constraints (types, NOT NULL, CHECK, unique indexes) and written with
//! their index entries.

use std::sync::Arc;

use qube_catalog::{ConstraintKind, Def, Object, RefAction};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::eval::{eval, truthy};
use super::{Ctx, Row};
use crate::names::SearchPath;
use crate::plan::Expr;
use crate::plan::bind::{Binder, TableInfo, ident, object_name, unsupported};
use crate::session::{QueryResult, Shared};
use crate::storage;
use crate::types::Value;
use crate::types::cast;

/// What writes to a table must respect, bound once per statement.
pub struct Target {
    pub table: TableInfo,
    pub types: Vec<DataType>,
    /// (index id, column positions, unique).
    pub indexes: Vec<(u64, Vec<usize>, bool)>,
    /// The names of `indexes`, in the same order (for error messages).
    pub index_names: Vec<String>,
    pub checks: Vec<(String, Expr)>,
    pub defaults: Vec<Option<Expr>>,
    pub out_fks: Vec<OutFk>,
    pub in_fks: Vec<InFk>,
    /// Indexes on expressions or with a WHERE (partial).
    pub expr_indexes: Vec<ExprIndex>,
    /// The primary key that keys the rows, if the table has key rowids
    /// (its index, in `indexes`, has no entries: see `storage`).
    pub rowid_key: Option<storage::RowidKey>,
}

pub use crate::plan::ExprIndex;

/// Whether an index is plain: every column a column of the table, and no
/// predicate (the planner may then use it for any row).
fn is_plain(ix: &qube_catalog::IndexDef, t: &TableInfo) -> bool {
    ix.predicate.is_none()
        && ix.columns.iter().all(|c| t.def.columns.iter().any(|col| col.name == c.expr))
}

/// The expression and partial indexes of a table, bound over its columns.
pub fn expr_indexes(b: &mut Binder, t: &TableInfo) -> Result<Vec<ExprIndex>> {
    let mut out = Vec::new();
    let cols: Vec<(String, DataType)> =
        t.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
    for d in b.catalog.indexes_of(b.txn, t.id)? {
        let Def::Index(ix) = &d.def else { continue };
        if ix.table != t.id || is_plain(ix, t) {
            continue;
        }
        let (keys, types, predicate) = b.with_columns(&t.name, &cols, |b| {
            let mut keys = Vec::with_capacity(ix.columns.len());
            let mut types = Vec::with_capacity(ix.columns.len());
            for c in &ix.columns {
                let (k, ty) = b.expr_typed(&parse_expr(&c.expr)?)?;
                keys.push(k);
                types.push(ty);
            }
            let predicate = match &ix.predicate {
                Some(p) => Some(b.expr_typed(&parse_expr(p)?)?.0),
                None => None,
            };
            Ok((keys, types, predicate))
        })?;
        out.push(ExprIndex {
            id: d.id,
            name: d.name.clone(),
            texts: ix.columns.iter().map(|c| c.expr.clone()).collect(),
            keys,
            types,
            unique: ix.unique,
            predicate,
        });
    }
    Ok(out)
}

pub fn parse_expr(sql: &str) -> Result<ast::Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::Internal(format!("stored expression {sql:?} does not parse: {e}")))
}

pub fn table_indexes(b: &mut Binder, t: &TableInfo) -> Result<Vec<(u64, Vec<usize>, bool)>> {
    let mut out = Vec::new();
    let deps: Vec<Arc<Object>> = b.catalog.indexes_of(b.txn, t.id)?;
    for d in deps {
        if let Def::Index(ix) = &d.def
            && ix.table == t.id
            && is_plain(ix, t)
        {
            let cols = ix
                .columns
                .iter()
                .map(|c| {
                    t.def
                        .columns
                        .iter()
                        .position(|col| col.name == c.expr)
                        .ok_or_else(|| unsupported(format!("index on expression {}", c.expr)))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push((d.id, cols, ix.unique));
        }
    }
    Ok(out)
}

/// The names of a table's indexes, by id.
pub fn index_names(b: &mut Binder, t: &TableInfo) -> Result<Vec<(u64, String)>> {
    Ok(b.catalog.indexes_of(b.txn, t.id)?.iter().map(|o| (o.id, o.name.clone())).collect())
}

pub fn target(b: &mut Binder, name: &ast::ObjectName) -> Result<Target> {
    let table = b.table(name)?;
    target_of(b, table)
}

/// The target of a table known by id (a child table reached by a foreign key).
pub(crate) fn target_by_id(b: &mut Binder, id: u64) -> Result<Target> {
    let obj =
        b.catalog.get(b.txn, id)?.ok_or_else(|| Error::Internal(format!("table {id} vanished")))?;
    let Def::Table(def) = &obj.def else {
        return Err(Error::Internal(format!("object {id} is not a table")));
    };
    let table = TableInfo { id, schema: obj.parent, name: obj.name.clone(), def: def.clone() };
    target_of(b, table)
}

fn target_of(b: &mut Binder, table: TableInfo) -> Result<Target> {
    let cols: Vec<(String, DataType)> =
        table.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
    let types = cols.iter().map(|c| c.1.clone()).collect();
    let indexes = table_indexes(b, &table)?;
    let mut checks = Vec::new();
    let mut defaults = Vec::new();
    let tname = table.name.clone();
    b.with_columns(&tname, &cols, |b| {
        for c in &table.def.constraints {
            if let ConstraintKind::Check { expr } = &c.kind {
                let (e, _) = b.expr_typed(&parse_expr(expr)?)?;
                checks.push((c.name.clone(), e));
            }
        }
        Ok(())
    })?;
    // Defaults see no columns.
    b.with_columns(&tname, &[], |b| {
        for c in &table.def.columns {
            defaults.push(match &c.default {
                Some(d) => Some(b.expr_as(&parse_expr(d)?, &c.data_type)?),
                None => None,
            });
        }
        Ok(())
    })?;
    let rowid_key = storage::rowid_key(&table.def);
    let out_fks = outgoing_fks(b, &table)?;
    let in_fks = incoming_fks(b, &table)?;
    let expr_indexes = expr_indexes(b, &table)?;
    let all = b.catalog.indexes_of(b.txn, table.id)?;
    let index_names = indexes
        .iter()
        .map(|(id, ..)| {
            all.iter().find(|o| o.id == *id).map_or_else(String::new, |o| o.name.clone())
        })
        .collect();
    Ok(Target {
        table,
        types,
        indexes,
        index_names,
        checks,
        defaults,
        out_fks,
        in_fks,
        expr_indexes,
        rowid_key,
    })
}

/// The bare keyword DEFAULT where a value may stand (sqlparser reads it
/// as an identifier).
fn is_default(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
}

/// `SET col = expr, …` of UPDATE and ON CONFLICT DO UPDATE: (column
/// position, value; None for DEFAULT), bound in the caller's scope.
/// `SET (a, b) = (x, y)` and `= ROW(x, y)` assign item by item.
fn bind_assignments(
    b: &mut Binder,
    cols: &[(String, DataType)],
    table: &str,
    assignments: &[ast::Assignment],
) -> Result<Vec<(usize, Option<Expr>)>> {
    let mut sets: Vec<(usize, Option<Expr>)> = Vec::new();
    let mut assign = |b: &mut Binder, c: &ast::ObjectName, value: &ast::Expr| -> Result<()> {
        let cname = object_name(c)?.pop().unwrap_or_default();
        let pos = cols.iter().position(|col| col.0 == cname).ok_or_else(|| {
            Error::user(
                "42703",
                format!("column \"{cname}\" of relation \"{table}\" does not exist"),
            )
        })?;
        if sets.iter().any(|(p, _)| *p == pos) {
            return Err(Error::user(
                "42601",
                format!("multiple assignments to same column \"{cname}\""),
            ));
        }
        let e = if is_default(value) { None } else { Some(b.expr_as(value, &cols[pos].1)?) };
        sets.push((pos, e));
        Ok(())
    };
    for a in assignments {
        match &a.target {
            ast::AssignmentTarget::ColumnName(c) => assign(b, c, &a.value)?,
            ast::AssignmentTarget::Tuple(targets) => {
                let values = multi_assignment_values(&a.value)?;
                if values.len() != targets.len() {
                    return Err(Error::user(
                        "42601",
                        "number of columns does not match number of values",
                    ));
                }
                for (c, v) in targets.iter().zip(values) {
                    assign(b, c, v)?;
                }
            }
        }
    }
    Ok(sets)
}

/// The items of the source of `SET (a, b, …) = source`: a parenthesized
/// list or `ROW(…)`, as PostgreSQL's grammar allows.
fn multi_assignment_values(value: &ast::Expr) -> Result<Vec<&ast::Expr>> {
    match value {
        ast::Expr::Tuple(items) => Ok(items.iter().collect()),
        ast::Expr::Function(f)
            if f.name.0.len() == 1
                && f.name.to_string().eq_ignore_ascii_case("row")
                && f.filter.is_none()
                && f.over.is_none()
                && f.within_group.is_empty() =>
        {
            let ast::FunctionArguments::List(list) = &f.args else {
                return Ok(Vec::new());
            };
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(unsupported(format!("SET (…) = {value}")));
            }
            list.args
                .iter()
                .map(|arg| match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(unsupported(format!("ROW argument {other}"))),
                })
                .collect()
        }
        ast::Expr::Subquery(_) => Err(unsupported("SET (…) = (SELECT …)")),
        _ => Err(Error::user(
            "0A000",
            "source for a multiple-column UPDATE item must be a sub-SELECT or ROW() expression",
        )),
    }
}

impl ExprIndex {
    /// The key values of `row` in this index, or None when the row is not
    /// in it (its predicate is not true).
    pub fn values(&self, txn: &mut Transaction, row: &[Value]) -> Result<Option<Vec<Value>>> {
        let mut ctx = Ctx::new(txn, &[]);
        if let Some(p) = &self.predicate
            && !truthy(&eval(&mut ctx, p, row)?)
        {
            return Ok(None);
        }
        let mut vals = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            vals.push(eval(&mut ctx, k, row)?);
        }
        Ok(Some(vals))
    }
}

/// A foreign key of this table: its columns in the order of the
/// referenced unique index, that index, and the referenced types.
pub struct OutFk {
    name: String,
    cols: Vec<usize>,
    index: u64,
    ref_types: Vec<DataType>,
    ref_table: String,
    /// Some(referenced table) when `index` is the key of its key rowids:
    /// the check reads the row key.
    rows_of: Option<u64>,
}

/// A foreign key of another table (or this one) that references this one.
pub struct InFk {
    name: String,
    child: u64,
    child_name: String,
    child_cols: Vec<usize>,
    parent_cols: Vec<usize>,
    on_delete: RefAction,
    on_update: RefAction,
}

fn outgoing_fks(b: &mut Binder, table: &TableInfo) -> Result<Vec<OutFk>> {
    let mut out = Vec::new();
    for c in &table.def.constraints {
        let ConstraintKind::ForeignKey { columns, ref_table, ref_columns, .. } = &c.kind else {
            continue;
        };
        let (ref_name, ref_def): (String, qube_catalog::TableDef) = if *ref_table == table.id {
            (table.name.clone(), table.def.clone())
        } else {
            let o = b
                .catalog
                .get(b.txn, *ref_table)?
                .ok_or_else(|| Error::Internal("referenced table vanished".into()))?;
            match &o.def {
                Def::Table(d) => (o.name.clone(), d.clone()),
                _ => return Err(Error::Internal("referenced object is not a table".into())),
            }
        };
        let mut found = None;
        for ix in b.catalog.indexes_of(b.txn, *ref_table)? {
            if let Def::Index(idef) = &ix.def
                && idef.unique
                && idef.columns.len() == ref_columns.len()
                && idef.columns.iter().all(|ic| ref_columns.contains(&ic.expr))
            {
                found = Some((
                    ix.id,
                    idef.columns.iter().map(|ic| ic.expr.clone()).collect::<Vec<_>>(),
                ));
                break;
            }
        }
        let Some((index, order)) = found else {
            return Err(Error::Internal(format!(
                "foreign key {} has no unique index to use",
                c.name
            )));
        };
        let mut cols = Vec::new();
        let mut ref_types = Vec::new();
        for name in &order {
            let j = ref_columns.iter().position(|r| r == name).unwrap_or(0);
            let child =
                table.def.columns.iter().position(|x| x.name == columns[j]).ok_or_else(|| {
                    Error::Internal(format!("foreign key column {} vanished", columns[j]))
                })?;
            cols.push(child);
            ref_types.push(
                ref_def
                    .columns
                    .iter()
                    .find(|x| x.name == *name)
                    .map(|x| x.data_type.clone())
                    .unwrap_or(DataType::Text),
            );
        }
        let rows_of = storage::rowid_key(&ref_def).filter(|k| k.index == index).map(|_| *ref_table);
        out.push(OutFk {
            name: c.name.clone(),
            cols,
            index,
            ref_types,
            ref_table: ref_name,
            rows_of,
        });
    }
    Ok(out)
}

fn incoming_fks(b: &mut Binder, table: &TableInfo) -> Result<Vec<InFk>> {
    let mut children: Vec<(u64, String, qube_catalog::TableDef)> = Vec::new();
    for o in b.catalog.referencing(b.txn, table.id)? {
        if let Def::Table(d) = &o.def {
            children.push((o.id, o.name.clone(), d.clone()));
        }
    }
    children.push((table.id, table.name.clone(), table.def.clone()));
    let mut out = Vec::new();
    for (id, name, def) in children {
        for c in &def.constraints {
            let ConstraintKind::ForeignKey {
                columns,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
            } = &c.kind
            else {
                continue;
            };
            if *ref_table != table.id {
                continue;
            }
            let pos = |d: &qube_catalog::TableDef, n: &String| {
                d.columns.iter().position(|x| x.name == *n)
            };
            let child_cols: Option<Vec<usize>> = columns.iter().map(|n| pos(&def, n)).collect();
            let parent_cols: Option<Vec<usize>> =
                ref_columns.iter().map(|n| pos(&table.def, n)).collect();
            let (Some(child_cols), Some(parent_cols)) = (child_cols, parent_cols) else { continue };
            out.push(InFk {
                name: c.name.clone(),
                child: id,
                child_name: name.clone(),
                child_cols,
                parent_cols,
                on_delete: *on_delete,
                on_update: *on_update,
            });
        }
    }
    Ok(out)
}

/// PostgreSQL's DETAIL for a row that broke a constraint: its values in
/// their text forms, NULL as `null`.
fn failing_row(row: &[Value]) -> String {
    let mut s = String::from("Failing row contains (");
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if v.is_null() {
            s.push_str("null");
        } else {
            s.push_str(&v.to_string());
        }
    }
    s.push_str(").");
    s
}

/// Deepest chain of ON DELETE/UPDATE actions followed (54001 beyond).
const MAX_FK_DEPTH: usize = 64;

impl Target {
    /// Every foreign key of `row` must find its referenced row (locked
    /// through its unique index key, so it cannot go away before commit).
    pub(crate) fn check_out_fks(
        &self,
        txn: &mut Transaction,
        row: &Row,
        old: Option<&Row>,
    ) -> Result<()> {
        for fk in &self.out_fks {
            let vals: Vec<Value> = fk.cols.iter().map(|&c| row[c].clone()).collect();
            if vals.iter().any(Value::is_null) {
                continue;
            }
            if let Some(old) = old
                && fk.cols.iter().all(|&c| old[c] == row[c])
            {
                continue;
            }
            // A value the referenced column cannot hold exactly has no parent.
            let key_vals: Option<Vec<Value>> = vals
                .iter()
                .zip(&fk.ref_types)
                .map(|(v, t)| super::index_value(v.clone(), t))
                .collect();
            let found = match (key_vals, fk.rows_of) {
                (Some(k), Some(parent)) => {
                    txn.get_for_update(&storage::key_row_key(parent, &k[0])?)?.is_some()
                }
                (Some(k), None) => {
                    txn.get_for_update(&storage::index_key(fk.index, &k, 0, true))?.is_some()
                }
                (None, _) => false,
            };
            if !found {
                let names: Vec<&str> =
                    fk.cols.iter().map(|&c| self.table.def.columns[c].name.as_str()).collect();
                let shown: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
                return Err(Error::user(
                    "23503",
                    format!(
                        "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                        self.table.name, fk.name,
                    ),
                )
                .with_detail(format!(
                    "Key ({})=({}) is not present in table \"{}\".",
                    names.join(", "),
                    shown.join(", "),
                    fk.ref_table
                )));
            }
        }
        Ok(())
    }
}

/// The ON DELETE / ON UPDATE actions of the rows referencing `old` in
/// table `t` (`new` is None for a delete).
fn apply_in_fks(
    shared: &Shared,
    schema: &SearchPath,
    ctx: &mut Ctx,
    t: &Target,
    old: &Row,
    new: Option<&Row>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_FK_DEPTH {
        return Err(Error::user("54001", "foreign key actions nest too deep"));
    }
    for fk in &t.in_fks {
        let pvals: Vec<Value> = fk.parent_cols.iter().map(|&c| old[c].clone()).collect();
        if pvals.iter().any(Value::is_null) {
            continue;
        }
        if let Some(n) = new
            && fk.parent_cols.iter().all(|&c| old[c] == n[c])
        {
            continue;
        }
        let child = {
            let mut b = Binder::new(&shared.catalog, ctx.txn, schema);
            target_by_id(&mut b, fk.child)?
        };
        // The referencing rows: child columns equal to the old key.
        let mut filter: Option<Expr> = None;
        for (&c, v) in fk.child_cols.iter().zip(&pvals) {
            let eq = Expr::Binary {
                op: crate::plan::BinOp::Eq,
                left: Expr::Column(c).boxed(),
                right: Expr::Const(v.clone()).boxed(),
            };
            filter = Some(match filter {
                None => eq,
                Some(f) => {
                    Expr::Binary { op: crate::plan::BinOp::And, left: f.boxed(), right: eq.boxed() }
                }
            });
        }
        let access = child.access(filter.as_ref());
        let refers = |r: &Row| {
            fk.child_cols
                .iter()
                .zip(&pvals)
                .all(|(&c, v)| r[c].sql_cmp(v) == Some(std::cmp::Ordering::Equal))
        };
        let rows: Vec<(u64, Row)> =
            child.candidates(ctx, &access)?.into_iter().filter(|(_, r)| refers(r)).collect();
        if rows.is_empty() {
            continue;
        }
        let action = if new.is_some() { fk.on_update } else { fk.on_delete };
        let mut buf = Vec::new();
        for (rowid, row) in rows {
            // The referencing row locked, in its newest version: a
            // concurrent change to it is kept, and one that no longer
            // references the key (or removed the row) is left alone.
            let Some(row) = current_version(ctx, &child, rowid, row, None)? else {
                continue;
            };
            if !refers(&row) {
                continue;
            }
            match (action, new) {
                (RefAction::NoAction | RefAction::Restrict, _) => {
                    let names: Vec<&str> = fk
                        .parent_cols
                        .iter()
                        .map(|&c| t.table.def.columns[c].name.as_str())
                        .collect();
                    let shown: Vec<String> = pvals.iter().map(|v| v.to_string()).collect();
                    return Err(Error::user(
                        "23503",
                        format!(
                            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                            t.table.name, fk.name, fk.child_name
                        ),
                    )
                    .with_detail(format!(
                        "Key ({})=({}) is still referenced from table \"{}\".",
                        names.join(", "),
                        shown.join(", "),
                        fk.child_name
                    )));
                }
                (RefAction::Cascade, None) => {
                    apply_in_fks(shared, schema, ctx, &child, &row, None, depth + 1)?;
                    child.remove_entries(ctx.txn, rowid, &row, None)?;
                    storage::delete_row(ctx.txn, child.table.id, rowid)?;
                }
                (action, _) => {
                    let mut changed = row.clone();
                    for (i, &c) in fk.child_cols.iter().enumerate() {
                        changed[c] = match (action, new) {
                            (RefAction::Cascade, Some(n)) => n[fk.parent_cols[i]].clone(),
                            (RefAction::SetNull, _) => Value::Null,
                            _ => child.default_value(ctx, &shared.catalog, c)?,
                        };
                    }
                    child.check(ctx, &mut changed)?;
                    if action == RefAction::SetDefault {
                        child.check_out_fks(ctx.txn, &changed, Some(&row))?;
                    }
                    apply_in_fks(shared, schema, ctx, &child, &row, Some(&changed), depth + 1)?;
                    child.rewrite(ctx.txn, rowid, &row, &changed, &mut buf)?;
                }
            }
        }
    }
    Ok(())
}

/// ON CONFLICT: the arbiter indexes, and for DO UPDATE the assignments
/// and WHERE, bound over the existing row followed by `excluded`.
struct Conflict {
    arbiters: Vec<usize>,
    update: Option<Vec<(usize, Option<Expr>)>>,
    filter: Option<Expr>,
}

impl Conflict {
    /// The rowid of an existing row that `row` conflicts with, and for DO
    /// UPDATE that row, locked, in its newest version (as PostgreSQL's ON
    /// CONFLICT DO UPDATE): not the statement's snapshot of it, or
    /// concurrent upserts of one key would lose updates. If a concurrent
    /// DELETE removed it meanwhile, looks again (the row may now be
    /// inserted).
    fn existing(&self, t: &Target, ctx: &mut Ctx, row: &Row) -> Result<Option<(u64, Option<Row>)>> {
        while let Some(rowid) = self.find(t, ctx.txn, row)? {
            if self.update.is_none() {
                return Ok(Some((rowid, None)));
            }
            if let Some(old) = storage::lock_row(ctx.txn, t.table.id, rowid, t.types.len())? {
                return Ok(Some((rowid, Some(old))));
            }
            ctx.tick()?;
        }
        Ok(None)
    }

    /// The rowid of an existing row that `row` conflicts with on an arbiter.
    fn find(&self, t: &Target, txn: &mut Transaction, row: &Row) -> Result<Option<u64>> {
        for &a in &self.arbiters {
            let (id, cols, _) = &t.indexes[a];
            if t.rowid_key.is_some_and(|k| k.index == *id) {
                // The key of key rowids: the row key itself.
                let Some(rowid) = t.key_rowid(row)? else { continue };
                if txn.get_for_update(&storage::row_key(t.table.id, rowid))?.is_some() {
                    return Ok(Some(rowid));
                }
                continue;
            }
            let vals = Target::index_values(cols, row);
            if vals.iter().any(Value::is_null) {
                continue;
            }
            if let Some(r) = txn.get_for_update(&storage::index_key(*id, &vals, 0, true))? {
                let r: [u8; 8] = r
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Internal("bad index entry".into()))?;
                return Ok(Some(u64::from_be_bytes(r)));
            }
        }
        Ok(None)
    }
}

/// `tname` is the target's name in scope (its alias, if it has one).
fn on_conflict(
    b: &mut Binder,
    t: &Target,
    tname: &str,
    on: Option<&ast::OnInsert>,
) -> Result<Option<Conflict>> {
    let Some(on) = on else { return Ok(None) };
    let ast::OnInsert::OnConflict(oc) = on else {
        return Err(unsupported("ON DUPLICATE KEY UPDATE"));
    };
    let unique: Vec<usize> = (0..t.indexes.len()).filter(|&i| t.indexes[i].2).collect();
    let no_match = || {
        Error::user(
            "42P10",
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        )
    };
    let arbiters = match &oc.conflict_target {
        None => {
            if matches!(oc.action, ast::OnConflictAction::DoUpdate(_)) {
                return Err(Error::user(
                    "42601",
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                ));
            }
            unique
        }
        Some(ast::ConflictTarget::Columns { columns, predicate }) => {
            if predicate.is_some() {
                return Err(unsupported("ON CONFLICT (…) WHERE"));
            }
            let mut want = Vec::new();
            for c in columns {
                let name = ident(c);
                let pos = t.table.def.columns.iter().position(|col| col.name == name).ok_or_else(
                    || Error::user("42703", format!("column \"{name}\" does not exist")),
                )?;
                want.push(pos);
            }
            want.sort_unstable();
            want.dedup();
            let hits: Vec<usize> = unique
                .into_iter()
                .filter(|&i| {
                    let mut cols = t.indexes[i].1.clone();
                    cols.sort_unstable();
                    cols == want
                })
                .collect();
            if hits.is_empty() {
                return Err(no_match());
            }
            hits
        }
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let name = object_name(name)?.pop().unwrap_or_default();
            let index = t.table.def.constraints.iter().find_map(|c| match &c.kind {
                ConstraintKind::PrimaryKey { index, .. } | ConstraintKind::Unique { index, .. }
                    if c.name == name =>
                {
                    Some(*index)
                }
                _ => None,
            });
            let Some(index) = index else {
                return Err(Error::user(
                    "42704",
                    format!("constraint \"{name}\" for table \"{}\" does not exist", t.table.name),
                ));
            };
            vec![t.indexes.iter().position(|ix| ix.0 == index).ok_or_else(no_match)?]
        }
    };
    let (update, filter) = match &oc.action {
        ast::OnConflictAction::DoNothing => (None, None),
        ast::OnConflictAction::DoUpdate(du) => {
            let cols = t.columns();
            let (sets, filter) = b.with_tables(&[(tname, &cols), ("excluded", &cols)], |b| {
                let sets = bind_assignments(b, &cols, &t.table.name, &du.assignments)?;
                let filter = match &du.selection {
                    Some(w) => Some(b.expr_typed(w)?.0),
                    None => None,
                };
                Ok((sets, filter))
            })?;
            (Some(sets), filter)
        }
    };
    Ok(Some(Conflict { arbiters, update, filter }))
}

/// Rows a RETURNING clause produced.
#[derive(Default)]
struct Returned {
    rows: Vec<Row>,
}

type Returning = Option<crate::plan::Returning>;

impl Returned {
    fn push(&mut self, ctx: &mut Ctx, returning: &Returning, row: &Row) -> Result<()> {
        if let Some((exprs, _)) = returning {
            let mut out = Vec::with_capacity(exprs.len());
            for e in exprs {
                out.push(eval(ctx, e, row)?);
            }
            self.rows.push(out);
        }
        Ok(())
    }

    fn result(self, returning: &Returning, tag: String) -> QueryResult {
        let columns = returning
            .as_ref()
            .map(|(_, cols)| {
                cols.iter()
                    .map(|(name, data_type)| {
                        crate::session::Column::new(name.clone(), data_type.clone())
                    })
                    .collect()
            })
            .unwrap_or_else(crate::session::no_columns);
        QueryResult { columns, rows: self.rows, tag }
    }
}

impl Target {
    /// Writes `new` over the row `old` at `rowid`, moving its index entries
    /// where their columns changed; returns the row's rowid after.
    fn rewrite(
        &self,
        txn: &mut Transaction,
        rowid: u64,
        old: &Row,
        new: &Row,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        let changed: Vec<bool> =
            self.indexes.iter().map(|(_, cs, _)| cs.iter().any(|&c| old[c] != new[c])).collect();
        self.write_over(txn, rowid, old, new, changed, buf)
    }

    /// Writes `new` over the row `old` at `rowid`, given which indexes'
    /// columns `changed`; returns the row's rowid after. A row whose key
    /// rowid changes moves: its old key and every entry (each carries the
    /// rowid) are deleted, and it is added again under the new one, with
    /// the key's unique check.
    fn write_over(
        &self,
        txn: &mut Transaction,
        rowid: u64,
        old: &Row,
        new: &Row,
        mut changed: Vec<bool>,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        if let Some(k) = self.rowid_key {
            let to = self.key_rowid(new)?.unwrap_or(rowid);
            if to != rowid {
                self.remove_entries(txn, rowid, old, None)?;
                storage::delete_row(txn, self.table.id, rowid)?;
                self.add_entries(txn, to, new, None, false, buf)?;
                storage::put_row(txn, self.table.id, to, new, buf)?;
                return Ok(to);
            }
            // Same key rowid: the key has no entry to move.
            for (n, (id, ..)) in self.indexes.iter().enumerate() {
                if *id == k.index {
                    changed[n] = false;
                }
            }
        }
        self.remove_entries(txn, rowid, old, Some(&changed))?;
        self.add_entries(txn, rowid, new, Some(&changed), false, buf)?;
        storage::put_row(txn, self.table.id, rowid, new, buf)?;
        Ok(rowid)
    }

    /// The key rowid of `row` (None: the table has counter rowids). Its
    /// key is NOT NULL and an integer, so `check` has made it one.
    pub(crate) fn key_rowid(&self, row: &Row) -> Result<Option<u64>> {
        let Some(k) = self.rowid_key else { return Ok(None) };
        storage::key_rowid(&row[k.column]).map(Some).ok_or_else(|| {
            Error::Internal(format!("primary key value {:?} is not an integer", row[k.column]))
        })
    }

    /// Writes a new row at `rowid`, after `add_entries`: a counter rowid's
    /// key no one else can hold (`insert_row`), a key rowid's key locked
    /// by the unique check.
    pub(crate) fn insert_at(
        &self,
        txn: &mut Transaction,
        rowid: u64,
        row: &Row,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if self.rowid_key.is_some() {
            storage::put_row(txn, self.table.id, rowid, row, buf)
        } else {
            storage::insert_row(txn, self.table.id, rowid, row, buf)
        }
    }

    fn columns(&self) -> Vec<(String, DataType)> {
        self.table.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect()
    }

    /// The way to the rows `filter` may match (see `Access`): through the
    /// index its conditions serve best, else every row. The caller still
    /// applies the filter.
    fn access(&self, filter: Option<&Expr>) -> Access {
        let Some(f) = filter else { return Access::Scan };
        let (eqs, ranges) = crate::plan::bind::equalities(f, self.types.len());
        let mut best = crate::plan::bind::choose_index(&self.indexes, &eqs, &ranges);
        let mut key_types = None;
        if !self.expr_indexes.is_empty() {
            let mut conds = Vec::new();
            crate::plan::bind::split_and(f.clone(), &mut conds);
            let inp = crate::plan::JoinInput {
                plan: crate::plan::Plan::unit(),
                offset: 0,
                width: self.types.len(),
            };
            for x in &self.expr_indexes {
                if let Some(c) = crate::plan::bind::choose_expr_index(x, &conds, &inp)
                    && best.as_ref().is_none_or(|b| c.score > b.score)
                {
                    best = Some(c);
                    key_types = Some(x.types.clone());
                }
            }
        }
        match best {
            Some(choice) => Access::Index { choice: Box::new(choice), key_types },
            None => Access::Scan,
        }
    }

    /// What `access` reads when it is the primary key of a table with key
    /// rowids (None otherwise): the row key of an equality (`Point`), or
    /// the keys of a key set or range.
    fn key_lookup(&self, ctx: &mut Ctx, access: &Access) -> Result<Option<super::stream::Lookup>> {
        let Access::Index { choice: c, key_types: None } = access else { return Ok(None) };
        if self.rowid_key.is_none_or(|k| k.index != c.index) {
            return Ok(None);
        }
        super::stream::lookup(
            ctx,
            super::stream::KeyTypes::Types(&self.types),
            c.index,
            c.unique,
            &c.columns,
            &c.keys,
            c.range.as_ref(),
            Some(self.table.id),
        )
        .map(Some)
    }

    /// The rows `access` reaches (a superset of those the filter selects).
    fn candidates(&self, ctx: &mut Ctx, access: &Access) -> Result<Vec<(u64, Row)>> {
        let Access::Index { choice: c, key_types } = access else {
            return storage::scan(ctx.txn, self.table.id, self.types.len());
        };
        super::index_rows(
            ctx,
            self.table.id,
            key_types.as_deref().unwrap_or(&self.types),
            self.types.len(),
            c.index,
            c.unique,
            &c.columns,
            &c.keys,
            c.range.as_ref(),
            key_types.is_none() && self.rowid_key.is_some_and(|k| k.index == c.index),
        )
    }

    /// The value of column `i` when none is given.
    pub(crate) fn default_value(
        &self,
        ctx: &mut Ctx,
        cat: &qube_catalog::Catalog,
        i: usize,
    ) -> Result<Value> {
        let col = &self.table.def.columns[i];
        if let Some(id) = &col.identity {
            let v = cat.nextval(ctx.txn, id.sequence)?;
            super::sequence::record(ctx, id.sequence, v);
            return cast::assign(Value::Int8(v), &col.data_type);
        }
        match &self.defaults[i] {
            Some(e) => eval(ctx, e, &[]),
            None => Ok(Value::Null),
        }
    }

    /// Casts, NOT NULL and CHECK.
    pub(crate) fn check(&self, ctx: &mut Ctx, row: &mut Row) -> Result<()> {
        for (i, v) in row.iter_mut().enumerate() {
            // A value already of the column's type (what COPY's and most
            // INSERTs' parsing makes) stays as it is; casting it was an
            // identity that cost ~100 instructions a value.
            let same = matches!(
                (&*v, &self.types[i]),
                (Value::Int2(_), DataType::SmallInt)
                    | (Value::Int4(_), DataType::Integer)
                    | (Value::Int8(_), DataType::BigInt)
                    | (Value::Float8(_), DataType::Double)
                    | (Value::Bool(_), DataType::Boolean)
                    | (Value::Text(_), DataType::Text)
            );
            if !same {
                let taken = std::mem::replace(v, Value::Null);
                *v = cast::assign(taken, &self.types[i])?;
            }
            let col = &self.table.def.columns[i];
            if v.is_null() && !col.nullable {
                return Err(Error::user(
                    "23502",
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        col.name, self.table.name
                    ),
                )
                .with_detail(failing_row(row)));
            }
        }
        for (name, e) in &self.checks {
            if eval(ctx, e, row)? == Value::Bool(false) {
                return Err(Error::user(
                    "23514",
                    format!(
                        "new row for relation \"{}\" violates check constraint \"{name}\"",
                        self.table.name
                    ),
                )
                .with_detail(failing_row(row)));
            }
        }
        Ok(())
    }

    fn index_values(cols: &[usize], row: &Row) -> Vec<Value> {
        cols.iter().map(|&c| row[c].clone()).collect()
    }

    /// Adds the index entries of a new row, failing on a duplicate key.
    /// `fresh`: the rowid was just taken from the counters (an INSERT), so
    /// an entry that carries it is a key nobody else can hold
    /// (`Transaction::set_fresh`). `key`: scratch for the entries' keys
    /// (the caller's row buffer, free until the row is encoded).
    pub(crate) fn add_entries(
        &self,
        txn: &mut Transaction,
        rowid: u64,
        row: &Row,
        only: Option<&[bool]>,
        fresh: bool,
        key: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(k) = self.rowid_key
            && let Some(n) = self.indexes.iter().position(|ix| ix.0 == k.index)
            && only.is_none_or(|o| o[n])
        {
            // The row arrives at its key rowid: the key's unique check is
            // the row key's, and locks it before any entry carrying the
            // rowid is written.
            let rowid_key = storage::row_key(self.table.id, rowid);
            if txn.get_for_update(&rowid_key)?.is_some() {
                return Err(self.duplicate(n, &[k.column], row));
            }
        }
        for (n, (id, cols, unique)) in self.indexes.iter().enumerate() {
            if only.is_some_and(|o| !o[n]) || self.rowid_key.is_some_and(|k| k.index == *id) {
                continue;
            }
            let has_null = cols.iter().any(|&c| row[c].is_null());
            storage::index_key_into(*id, cols.iter().map(|&c| &row[c]), rowid, *unique, key);
            if *unique && !has_null {
                if txn.get_for_update(key)?.is_some() {
                    return Err(self.duplicate(n, cols, row));
                }
                txn.set(key, &rowid.to_be_bytes())?;
            } else if fresh {
                // The key ends with the new rowid.
                txn.set_fresh(key, &rowid.to_be_bytes())?;
            } else {
                txn.set(key, &rowid.to_be_bytes())?;
            }
        }
        for ix in &self.expr_indexes {
            let Some(vals) = ix.values(txn, row)? else { continue };
            let key = storage::index_key(ix.id, &vals, rowid, ix.unique);
            if ix.unique && !vals.iter().any(Value::is_null) && txn.get_for_update(&key)?.is_some()
            {
                let shown: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
                return Err(Error::user(
                    "23505",
                    format!("duplicate key value violates unique constraint \"{}\"", ix.name),
                )
                .with_detail(format!(
                    "Key ({})=({}) already exists.",
                    ix.texts.join(", "),
                    shown.join(", ")
                )));
            }
            txn.set(&key, &rowid.to_be_bytes())?;
        }
        Ok(())
    }

    /// 23505 for `row`, whose columns `cols` are a key of `indexes[n]`.
    fn duplicate(&self, n: usize, cols: &[usize], row: &Row) -> Error {
        let names: Vec<&str> =
            cols.iter().map(|&c| self.table.def.columns[c].name.as_str()).collect();
        let shown: Vec<String> = cols.iter().map(|&c| row[c].to_string()).collect();
        Error::user(
            "23505",
            format!(
                "duplicate key value violates unique constraint \"{}\"",
                self.index_names.get(n).map_or(self.table.name.as_str(), |s| s)
            ),
        )
        .with_detail(format!(
            "Key ({})=({}) already exists.",
            names.join(", "),
            shown.join(", ")
        ))
    }

    fn remove_entries(
        &self,
        txn: &mut Transaction,
        rowid: u64,
        row: &Row,
        only: Option<&[bool]>,
    ) -> Result<()> {
        for (n, (id, cols, unique)) in self.indexes.iter().enumerate() {
            if only.is_some_and(|o| !o[n]) || self.rowid_key.is_some_and(|k| k.index == *id) {
                continue;
            }
            let vals = Self::index_values(cols, row);
            txn.delete(&storage::index_key(*id, &vals, rowid, *unique))?;
        }
        for ix in &self.expr_indexes {
            if let Some(vals) = ix.values(txn, row)? {
                txn.delete(&storage::index_key(ix.id, &vals, rowid, ix.unique))?;
            }
        }
        Ok(())
    }
}

/// A bound INSERT: what `run_insert` needs, independent of the parameter
/// values, so that a prepared INSERT binds once (`Session` caches it
/// while the catalog does not change, as it does query plans).
pub struct InsertPlan {
    t: Target,
    returning: Returning,
    conflict: Option<Conflict>,
    /// The column each given value goes to.
    targets: Vec<usize>,
    source: InsertSource,
}

impl InsertPlan {
    /// The RETURNING list's columns (none without RETURNING).
    pub fn returning_columns(&self) -> &[(String, DataType)] {
        self.returning.as_ref().map_or(&[], |r| &r.1)
    }
}

/// Rows of expressions (None: DEFAULT), or a query.
enum InsertSource {
    Rows(Vec<Vec<Option<Expr>>>),
    Query(Box<crate::plan::Plan>),
}

pub fn bind_insert(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    i: &ast::Insert,
) -> Result<InsertPlan> {
    let name = match &i.table {
        ast::TableObject::TableName(n) => n.clone(),
        other => return Err(unsupported(format!("INSERT INTO {other}"))),
    };
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = target(&mut b, &name)?;
    let ncols = t.types.len();
    // `INSERT INTO t AS a`: RETURNING and ON CONFLICT see the row as `a`.
    let tname = match &i.table_alias {
        Some(a) => ident(&a.alias),
        None => t.table.name.clone(),
    };
    let returning = match &i.returning {
        Some(items) => Some(b.returning(&tname, &t.columns(), items)?),
        None => None,
    };
    let conflict = on_conflict(&mut b, &t, &tname, i.on.as_ref())?;
    let mut targets: Vec<usize> = Vec::new();
    if i.columns.is_empty() {
        // Without a column list, the values fill the first columns.
        let given = match i.source.as_deref().map(|q| q.body.as_ref()) {
            Some(ast::SetExpr::Values(v)) => v.rows.first().map_or(0, |r| r.content.len()),
            _ => ncols,
        };
        if given > ncols {
            return Err(Error::user("42601", "INSERT has more expressions than target columns"));
        }
        targets.extend(0..given);
    } else {
        for c in &i.columns {
            let cname = object_name(c)?.pop().unwrap_or_default();
            let pos =
                t.table.def.columns.iter().position(|col| col.name == cname).ok_or_else(|| {
                    Error::user(
                        "42703",
                        format!(
                            "column \"{cname}\" of relation \"{}\" does not exist",
                            t.table.name
                        ),
                    )
                })?;
            if targets.contains(&pos) {
                return Err(Error::user(
                    "42701",
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            targets.push(pos);
        }
    }
    let source = match &i.source {
        None => InsertSource::Rows(vec![vec![]]),
        Some(q) => match (q.body.as_ref(), &q.order_by, &q.limit_clause, &q.with) {
            (ast::SetExpr::Values(v), None, None, None) => {
                let mut rows = Vec::new();
                for r in &v.rows {
                    if r.content.len() > targets.len() {
                        return Err(Error::user(
                            "42601",
                            "INSERT has more expressions than target columns",
                        ));
                    }
                    if r.content.len() < targets.len() {
                        return Err(Error::user(
                            "42601",
                            "INSERT has more target columns than expressions",
                        ));
                    }
                    let mut row = Vec::new();
                    for (k, e) in r.content.iter().enumerate() {
                        if is_default(e) {
                            row.push(None);
                            continue;
                        }
                        let ty = t.types[targets[k]].clone();
                        row.push(Some(b.with_columns("", &[], |b| b.expr_as(e, &ty))?));
                    }
                    rows.push(row);
                }
                InsertSource::Rows(rows)
            }
            _ => {
                let bound = b.query(q)?;
                if i.columns.is_empty() && bound.columns.len() < targets.len() {
                    targets.truncate(bound.columns.len());
                }
                if bound.columns.len() > targets.len() {
                    return Err(Error::user(
                        "42601",
                        "INSERT has more expressions than target columns",
                    ));
                }
                if bound.columns.len() < targets.len() {
                    return Err(Error::user(
                        "42601",
                        "INSERT has more target columns than expressions",
                    ));
                }
                InsertSource::Query(Box::new(bound.plan))
            }
        },
    };
    drop(b);
    Ok(InsertPlan { t, returning, conflict, targets, source })
}

/// Runs a bound INSERT with these parameter values.
pub fn run_insert(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    plan: &InsertPlan,
    params: &[Value],
) -> Result<QueryResult> {
    let InsertPlan { t, returning, targets, source, .. } = plan;
    let ncols = t.types.len();
    let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, schema);
    let mut run = InsertRun {
        returned: Returned::default(),
        done: 0,
        updated: std::collections::HashSet::new(),
        buf: ROW_BUF.with(|b| std::mem::take(&mut *b.borrow_mut())),
    };
    let res = match source {
        InsertSource::Rows(rows) if rows.len() == 1 => {
            // One row (a prepared INSERT's shape): its values go straight
            // into the row, with no list of given rows to build and drop.
            let exprs = &rows[0];
            let mut full: Row = std::iter::repeat_with(|| Value::Null).take(ncols).collect();
            let mut given_cols = None;
            if exprs.len() < ncols || exprs.iter().any(Option::is_none) {
                given_cols = Some(vec![false; ncols]);
            }
            (|| {
                for (j, e) in exprs.iter().enumerate() {
                    if let Some(e) = e {
                        full[targets[j]] = eval(&mut ctx, e, &[])?;
                        if let Some(g) = &mut given_cols {
                            g[targets[j]] = true;
                        }
                    }
                }
                let first = match t.rowid_key {
                    Some(_) => 0,
                    None => shared.rowids.take(ctx.txn, t.table.id, 1)?,
                };
                if let Some(given) = &given_cols {
                    for (c, given) in given.iter().enumerate() {
                        if !given {
                            full[c] = t.default_value(&mut ctx, &shared.catalog, c)?;
                        }
                    }
                }
                run.row(shared, schema, &mut ctx, plan, full, first)
            })()
        }
        _ => (|| {
            let given: Vec<Vec<Option<Value>>> = match source {
                InsertSource::Rows(rows) => {
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let mut vals = Vec::with_capacity(r.len());
                        for e in r {
                            vals.push(match e {
                                Some(e) => Some(eval(&mut ctx, e, &[])?),
                                None => None,
                            });
                        }
                        out.push(vals);
                    }
                    out
                }
                InsertSource::Query(plan) => super::run(&mut ctx, plan)?
                    .into_iter()
                    .map(|r| r.into_iter().map(Some).collect())
                    .collect(),
            };
            let n = given.len() as u64;
            // Key rowids come from the rows themselves.
            let first = match t.rowid_key {
                Some(_) => 0,
                None => shared.rowids.take(ctx.txn, t.table.id, n)?,
            };
            let mut given_cols = vec![false; ncols];
            for (k, vals) in given.into_iter().enumerate() {
                let mut full = vec![Value::Null; ncols];
                given_cols.fill(false);
                for (j, v) in vals.into_iter().enumerate() {
                    if let Some(v) = v {
                        full[targets[j]] = v;
                        given_cols[targets[j]] = true;
                    }
                }
                for (c, given) in given_cols.iter().enumerate() {
                    if !given {
                        full[c] = t.default_value(&mut ctx, &shared.catalog, c)?;
                    }
                }
                run.row(shared, schema, &mut ctx, plan, full, first + k as u64)?;
            }
            Ok(())
        })(),
    };
    let InsertRun { returned, done, buf, .. } = run;
    if buf.capacity() <= ROW_BUF_KEEP {
        ROW_BUF.with(|b| *b.borrow_mut() = buf);
    }
    res?;
    let tag = if done == 1 { "INSERT 0 1".to_string() } else { format!("INSERT 0 {done}") };
    Ok(returned.result(returning, tag))
}

std::thread_local! {
    /// The row and key buffer of the thread's last INSERT, reused by the
    /// next (a prepared INSERT per row would otherwise grow a new one).
    static ROW_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest `ROW_BUF` kept for the next INSERT.
const ROW_BUF_KEEP: usize = 64 << 10;

/// What an INSERT carries from row to row.
struct InsertRun {
    returned: Returned,
    done: u64,
    /// Rows this command inserted or updated (ON CONFLICT DO UPDATE may
    /// not touch one twice).
    updated: std::collections::HashSet<u64>,
    buf: Vec<u8>,
}

impl InsertRun {
    /// Checks and writes one row (`full`: every column's value), or
    /// resolves its conflict; `counter_rowid` is its rowid if the table
    /// has counter rowids.
    fn row(
        &mut self,
        shared: &Shared,
        schema: &SearchPath,
        ctx: &mut Ctx,
        plan: &InsertPlan,
        mut full: Row,
        counter_rowid: u64,
    ) -> Result<()> {
        let InsertPlan { t, returning, conflict, .. } = plan;
        t.check(ctx, &mut full)?;
        if let Some(c) = &conflict
            && let Some((existing, old)) = c.existing(t, ctx, &full)?
        {
            let (Some(sets), Some(old)) = (&c.update, old) else { return Ok(()) };
            if !self.updated.insert(existing) {
                return Err(Error::user(
                    "21000",
                    "ON CONFLICT DO UPDATE command cannot affect row a second time",
                ));
            }
            let mut both = old.clone();
            both.extend(full.iter().cloned());
            if let Some(f) = &c.filter
                && !truthy(&eval(ctx, f, &both)?)
            {
                return Ok(());
            }
            let mut new = old.clone();
            for (pos, e) in sets {
                new[*pos] = match e {
                    Some(e) => eval(ctx, e, &both)?,
                    None => t.default_value(ctx, &shared.catalog, *pos)?,
                };
            }
            t.check(ctx, &mut new)?;
            t.check_out_fks(ctx.txn, &new, Some(&old))?;
            apply_in_fks(shared, schema, ctx, t, &old, Some(&new), 0)?;
            let moved = t.rewrite(ctx.txn, existing, &old, &new, &mut self.buf)?;
            self.updated.insert(moved);
            self.returned.push(ctx, returning, &new)?;
            self.done += 1;
            return Ok(());
        }
        let rowid = t.key_rowid(&full)?.unwrap_or(counter_rowid);
        t.check_out_fks(ctx.txn, &full, None)?;
        t.add_entries(ctx.txn, rowid, &full, None, true, &mut self.buf)?;
        t.insert_at(ctx.txn, rowid, &full, &mut self.buf)?;
        self.returned.push(ctx, returning, &full)?;
        // A row this command inserted cannot be updated by it either.
        if conflict.is_some() {
            self.updated.insert(rowid);
        }
        self.done += 1;
        Ok(())
    }
}

/// The table of UPDATE/DELETE and its alias.
fn dml_table(f: &ast::TableFactor) -> Result<(ast::ObjectName, Option<String>)> {
    match f {
        ast::TableFactor::Table { name, alias, .. } => {
            Ok((name.clone(), alias.as_ref().map(|a| ident(&a.name))))
        }
        other => Err(unsupported(format!("UPDATE/DELETE of {other}"))),
    }
}

/// A bound single-table UPDATE (no FROM): what `run_update` needs,
/// independent of the parameter values, so that a prepared UPDATE binds
/// once per catalog version (`Session` caches it as it does INSERT plans).
pub struct UpdatePlan {
    on: Targeted,
    /// (column position, new value; None for DEFAULT).
    sets: Vec<(usize, Option<Expr>)>,
}

/// A bound single-table DELETE (no USING), cached like `UpdatePlan`.
pub struct DeletePlan {
    on: Targeted,
}

impl UpdatePlan {
    pub fn returning_columns(&self) -> &[(String, DataType)] {
        self.on.returning_columns()
    }
}

impl DeletePlan {
    pub fn returning_columns(&self) -> &[(String, DataType)] {
        self.on.returning_columns()
    }
}

/// What a single-table UPDATE and DELETE share: the target, the WHERE,
/// the way to its candidate rows, and RETURNING.
struct Targeted {
    t: Target,
    filter: Option<Expr>,
    access: Access,
    returning: Returning,
}

impl Targeted {
    /// Binds the target `relation` with its WHERE and RETURNING; `extra`
    /// binds more in the row's scope before the WHERE (UPDATE's SET list).
    #[allow(clippy::too_many_arguments)]
    fn bind<X>(
        shared: &Shared,
        txn: &mut Transaction,
        schema: &SearchPath,
        relation: &ast::TableFactor,
        selection: Option<&ast::Expr>,
        returning: Option<&[ast::SelectItem]>,
        extra: impl FnOnce(&mut Binder, &Target, &[(String, DataType)]) -> Result<X>,
    ) -> Result<(Targeted, X)> {
        let (name, alias) = dml_table(relation)?;
        let mut b = Binder::new(&shared.catalog, txn, schema);
        let t = target(&mut b, &name)?;
        let cols = t.columns();
        let scope_name = alias.unwrap_or_else(|| t.table.name.clone());
        let returning = match returning {
            Some(items) => Some(b.returning(&scope_name, &cols, items)?),
            None => None,
        };
        let (x, filter) = b.with_columns(&scope_name, &cols, |b| {
            let x = extra(b, &t, &cols)?;
            let filter = match selection {
                Some(w) => Some(b.expr_typed(w)?.0),
                None => None,
            };
            Ok((x, filter))
        })?;
        drop(b);
        let access = t.access(filter.as_ref());
        Ok((Targeted { t, filter, access, returning }, x))
    }

    fn returning_columns(&self) -> &[(String, DataType)] {
        self.returning.as_ref().map_or(&[], |r| &r.1)
    }

    /// Calls `f` with each row the statement changes: a candidate that
    /// passes the WHERE, locked, in its newest version (`current_version`).
    /// Returns how many there were.
    fn each_row(
        &self,
        ctx: &mut Ctx,
        mut f: impl FnMut(&mut Ctx, u64, Row) -> Result<()>,
    ) -> Result<u64> {
        let rows = match self.t.key_lookup(ctx, &self.access)? {
            Some(super::stream::Lookup::Point(key)) => return self.at_key(ctx, &key, f),
            Some(found) => super::key_rowid_rows(ctx, found, self.t.types.len())?,
            None => self.t.candidates(ctx, &self.access)?,
        };
        let mut n = 0u64;
        for (rowid, row) in rows {
            ctx.tick()?;
            if let Some(w) = &self.filter
                && !truthy(&eval(ctx, w, &row)?)
            {
                continue;
            }
            let Some(row) = current_version(ctx, &self.t, rowid, row, self.filter.as_ref())? else {
                continue;
            };
            f(ctx, rowid, row)?;
            n += 1;
        }
        Ok(n)
    }

    /// `each_row` for the one row a key rowid names (`WHERE id = $1`):
    /// the row lock is taken first when it is free
    /// (`Transaction::lock_if_free`), so that one look at the key finds
    /// both the snapshot's version and the newest one (the same when no
    /// commit changed the key since the snapshot, the usual case). The
    /// outcome is `each_row`'s, PostgreSQL's: the snapshot's version
    /// decides whether the row is the statement's at all (a row inserted
    /// after the snapshot stays invisible, a row failing the WHERE there
    /// is left alone, and neither keeps the lock); then at READ COMMITTED
    /// the newest version is checked against the WHERE again, and at
    /// REPEATABLE READ a row a later commit changed is 40001. A lock held
    /// by another transaction: `each_row`'s way (read, then wait).
    fn at_key(
        &self,
        ctx: &mut Ctx,
        key: &[u8],
        mut f: impl FnMut(&mut Ctx, u64, Row) -> Result<()>,
    ) -> Result<u64> {
        ctx.tick()?;
        let rowid = storage::rowid_of(key)?;
        let Some((latest, newest)) = ctx.txn.lock_if_free(key)? else {
            let mut val = Vec::new();
            if !ctx.txn.get_into(key, &mut val)? {
                return Ok(0);
            }
            let Some(row) = self.qualifying(ctx, &val)? else { return Ok(0) };
            let Some(row) = current_version(ctx, &self.t, rowid, row, self.filter.as_ref())? else {
                return Ok(0);
            };
            f(ctx, rowid, row)?;
            return Ok(1);
        };
        let unchanged = latest <= ctx.txn.read_ts();
        // The snapshot's version, and whether it is the statement's row.
        let (snapshot, newest) = match unchanged {
            true => (Ok(newest), None),
            false => (ctx.txn.get(key), newest),
        };
        let row = match snapshot.and_then(|v| match v {
            Some(v) => self.qualifying(ctx, &v),
            None => Ok(None),
        }) {
            Ok(Some(row)) => row,
            Ok(None) => {
                ctx.txn.unlock_tentative(key);
                return Ok(0);
            }
            Err(e) => {
                ctx.txn.unlock_tentative(key);
                return Err(e);
            }
        };
        ctx.txn.keep_lock(key, latest)?;
        if unchanged {
            f(ctx, rowid, row)?;
            return Ok(1);
        }
        // READ COMMITTED, changed since the snapshot: the newest version,
        // if it still passes the WHERE.
        let Some(row) = newest.map(|v| self.qualifying(ctx, &v)).transpose()?.flatten() else {
            return Ok(0);
        };
        f(ctx, rowid, row)?;
        Ok(1)
    }

    /// The row stored as `value`, if it passes the WHERE.
    fn qualifying(&self, ctx: &mut Ctx, value: &[u8]) -> Result<Option<Row>> {
        let mut row = Vec::with_capacity(self.t.types.len());
        crate::types::encoding::decode_row(value, self.t.types.len(), &mut row)?;
        if let Some(w) = &self.filter
            && !truthy(&eval(ctx, w, &row)?)
        {
            return Ok(None);
        }
        Ok(Some(row))
    }
}

/// How UPDATE and DELETE find their candidate rows: through the index
/// that serves the WHERE best (chosen when the statement is bound), or
/// by scanning the table.
enum Access {
    Scan,
    Index {
        choice: Box<crate::plan::bind::IndexChoice>,
        /// The key types of an expression index (else the table's types).
        key_types: Option<Vec<DataType>>,
    },
}

/// Whether `u` is an UPDATE of one table without FROM (the form
/// `bind_update` handles; the others go through `update`).
pub fn is_single_update(u: &ast::Update) -> bool {
    u.table.joins.is_empty() && u.from.is_none()
}

/// Whether `d` is a DELETE from one table without USING (the form
/// `bind_delete` handles).
pub fn is_single_delete(d: &ast::Delete) -> bool {
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    d.tables.is_empty() && d.using.is_none() && matches!(from.as_slice(), [t] if t.joins.is_empty())
}

pub fn update(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    u: &ast::Update,
    params: &[Value],
) -> Result<QueryResult> {
    if !u.table.joins.is_empty() {
        return Err(unsupported("UPDATE of a join (use UPDATE … FROM)"));
    }
    if let Some(
        ast::UpdateTableFromKind::AfterSet(from) | ast::UpdateTableFromKind::BeforeSet(from),
    ) = &u.from
    {
        return update_joined(shared, txn, schema, u, from, params);
    }
    let plan = bind_update(shared, txn, schema, u)?;
    run_update(shared, txn, schema, &plan, params)
}

/// Binds a single-table UPDATE (see `is_single_update`).
pub fn bind_update(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    u: &ast::Update,
) -> Result<UpdatePlan> {
    if !is_single_update(u) {
        return Err(Error::Internal("bind_update of an UPDATE with FROM or joins".into()));
    }
    let (on, sets) = Targeted::bind(
        shared,
        txn,
        schema,
        &u.table.relation,
        u.selection.as_ref(),
        u.returning.as_deref(),
        |b, t, cols| bind_assignments(b, cols, &t.table.name, &u.assignments),
    )?;
    Ok(UpdatePlan { on, sets })
}

pub fn run_update(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    plan: &UpdatePlan,
    params: &[Value],
) -> Result<QueryResult> {
    let UpdatePlan { on, sets } = plan;
    let t = &on.t;
    let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, schema);
    let mut buf = Vec::new();
    let mut returned = Returned::default();
    let n = on.each_row(&mut ctx, |ctx, rowid, row| {
        let mut new = row.clone();
        for (pos, e) in sets {
            new[*pos] = match e {
                Some(e) => eval(ctx, e, &row)?,
                None => t.default_value(ctx, &shared.catalog, *pos)?,
            };
        }
        update_row(shared, schema, ctx, t, rowid, &row, &mut new, &mut buf)?;
        returned.push(ctx, &on.returning, &new)
    })?;
    Ok(returned.result(&on.returning, format!("UPDATE {n}")))
}

/// The row UPDATE or DELETE changes, locked: `row` as the statement's
/// snapshot saw it, or — at READ COMMITTED, when another transaction
/// changed it and committed since — its newest version if that still
/// passes `filter` (PostgreSQL's re-check of an updated row, for the
/// target row's own conditions). None if the row is gone or no longer
/// matches. Without this, concurrent `SET n = n + 1` would lose updates.
fn current_version(
    ctx: &mut Ctx,
    t: &Target,
    rowid: u64,
    row: Row,
    filter: Option<&Expr>,
) -> Result<Option<Row>> {
    let Some(cur) = storage::lock_row(ctx.txn, t.table.id, rowid, row.len())? else {
        return Ok(None);
    };
    if cur == row {
        return Ok(Some(row));
    }
    if let Some(f) = filter
        && !truthy(&eval(ctx, f, &cur)?)
    {
        return Ok(None);
    }
    Ok(Some(cur))
}

/// Replaces the stored row `row` at `rowid` with `new`: checks,
/// foreign keys both ways, index entries whose columns changed.
#[allow(clippy::too_many_arguments)]
fn update_row(
    shared: &Shared,
    schema: &SearchPath,
    ctx: &mut Ctx,
    t: &Target,
    rowid: u64,
    row: &Row,
    new: &mut Row,
    buf: &mut Vec<u8>,
) -> Result<()> {
    t.check(ctx, new)?;
    t.check_out_fks(ctx.txn, new, Some(row))?;
    apply_in_fks(shared, schema, ctx, t, row, Some(new), 0)?;
    let changed: Vec<bool> = t
        .indexes
        .iter()
        .map(|(_, cs, _)| {
            cs.iter().any(|&c| {
                row[c].total_cmp(&new[c]) != std::cmp::Ordering::Equal || row[c] != new[c]
            })
        })
        .collect();
    t.write_over(ctx.txn, rowid, row, new, changed, buf)?;
    Ok(())
}

/// UPDATE … FROM: the target joined with the FROM items under WHERE;
/// each target row is updated once, from the first joined row that
/// matches it (PostgreSQL leaves the choice among several unspecified).
fn update_joined(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    u: &ast::Update,
    from: &[ast::TableWithJoins],
    params: &[Value],
) -> Result<QueryResult> {
    let (name, alias) = dml_table(&u.table.relation)?;
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = target(&mut b, &name)?;
    let cols: Vec<(String, DataType)> =
        t.table.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
    let ncols = cols.len();
    let scope_name = alias.unwrap_or_else(|| t.table.name.clone());
    let (plan, offset, (sets, returning)) =
        b.dml_join(&t.table, &scope_name, from, u.selection.as_ref(), |b, offset| {
            let sets = bind_assignments(b, &cols, &t.table.name, &u.assignments)?;
            let returning = match &u.returning {
                Some(items) => Some(b.returning_joined(offset, ncols, items)?),
                None => None,
            };
            Ok((sets, returning))
        })?;
    drop(b);
    let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, schema);
    let rows = super::run(&mut ctx, &plan)?;
    let mut done = std::collections::HashSet::new();
    let mut n = 0u64;
    let mut buf = Vec::new();
    let mut returned = Returned::default();
    for mut joined in rows {
        let Some(rowid) = joined.get(offset + ncols).and_then(Value::as_i64) else {
            continue;
        };
        if !done.insert(rowid) {
            continue;
        }
        let row: Row = joined[offset..offset + ncols].to_vec();
        // The newest version, for SET to compute from (the join itself is
        // not evaluated again).
        let Some(row) = current_version(&mut ctx, &t, rowid as u64, row, None)? else {
            continue;
        };
        joined[offset..offset + ncols].clone_from_slice(&row);
        let mut new = row.clone();
        for (pos, e) in &sets {
            new[*pos] = match e {
                Some(e) => eval(&mut ctx, e, &joined)?,
                None => t.default_value(&mut ctx, &shared.catalog, *pos)?,
            };
        }
        update_row(shared, schema, &mut ctx, &t, rowid as u64, &row, &mut new, &mut buf)?;
        if returning.is_some() {
            joined[offset..offset + ncols].clone_from_slice(&new);
            returned.push(&mut ctx, &returning, &joined)?;
        }
        n += 1;
    }
    Ok(returned.result(&returning, format!("UPDATE {n}")))
}

/// Deletes the stored row `row` at `rowid`: the referencing rows' ON
/// DELETE actions, its index entries, the row.
fn remove_row(
    shared: &Shared,
    schema: &SearchPath,
    ctx: &mut Ctx,
    t: &Target,
    rowid: u64,
    row: &Row,
) -> Result<()> {
    apply_in_fks(shared, schema, ctx, t, row, None, 0)?;
    t.remove_entries(ctx.txn, rowid, row, None)?;
    storage::delete_row(ctx.txn, t.table.id, rowid)
}

/// DELETE … USING: the target joined with the USING items under WHERE.
#[allow(clippy::too_many_arguments)]
fn delete_joined(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    d: &ast::Delete,
    name: &ast::ObjectName,
    alias: Option<String>,
    using: &[ast::TableWithJoins],
    params: &[Value],
) -> Result<QueryResult> {
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = target(&mut b, name)?;
    let ncols = t.table.def.columns.len();
    let scope_name = alias.unwrap_or_else(|| t.table.name.clone());
    let (plan, offset, returning) =
        b.dml_join(&t.table, &scope_name, using, d.selection.as_ref(), |b, offset| {
            match &d.returning {
                Some(items) => Ok(Some(b.returning_joined(offset, ncols, items)?)),
                None => Ok(None),
            }
        })?;
    drop(b);
    let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, schema);
    let rows = super::run(&mut ctx, &plan)?;
    let mut done = std::collections::HashSet::new();
    let mut n = 0u64;
    let mut returned = Returned::default();
    for joined in rows {
        let Some(rowid) = joined.get(offset + ncols).and_then(Value::as_i64) else {
            continue;
        };
        if !done.insert(rowid) {
            continue;
        }
        let row: Row = joined[offset..offset + ncols].to_vec();
        let Some(row) = current_version(&mut ctx, &t, rowid as u64, row, None)? else {
            continue;
        };
        remove_row(shared, schema, &mut ctx, &t, rowid as u64, &row)?;
        returned.push(&mut ctx, &returning, &joined)?;
        n += 1;
    }
    Ok(returned.result(&returning, format!("DELETE {n}")))
}

pub fn delete(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    d: &ast::Delete,
    params: &[Value],
) -> Result<QueryResult> {
    if !d.tables.is_empty() {
        return Err(unsupported("DELETE of several tables"));
    }
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    let [twj] = from.as_slice() else {
        return Err(unsupported("DELETE from several tables"));
    };
    if !twj.joins.is_empty() {
        return Err(unsupported("DELETE with joins"));
    }
    if let Some(using) = &d.using {
        let (name, alias) = dml_table(&twj.relation)?;
        return delete_joined(shared, txn, schema, d, &name, alias, using, params);
    }
    let plan = bind_delete(shared, txn, schema, d)?;
    run_delete(shared, txn, schema, &plan, params)
}

/// Binds a single-table DELETE (see `is_single_delete`).
pub fn bind_delete(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    d: &ast::Delete,
) -> Result<DeletePlan> {
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    let ([twj], true) = (from.as_slice(), is_single_delete(d)) else {
        return Err(Error::Internal("bind_delete of a DELETE with USING or joins".into()));
    };
    let (on, ()) = Targeted::bind(
        shared,
        txn,
        schema,
        &twj.relation,
        d.selection.as_ref(),
        d.returning.as_deref(),
        |_, _, _| Ok(()),
    )?;
    Ok(DeletePlan { on })
}

pub fn run_delete(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    plan: &DeletePlan,
    params: &[Value],
) -> Result<QueryResult> {
    let on = &plan.on;
    let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, schema);
    let mut returned = Returned::default();
    let n = on.each_row(&mut ctx, |ctx, rowid, row| {
        remove_row(shared, schema, ctx, &on.t, rowid, &row)?;
        returned.push(ctx, &on.returning, &row)
    })?;
    Ok(returned.result(&on.returning, format!("DELETE {n}")))
}
