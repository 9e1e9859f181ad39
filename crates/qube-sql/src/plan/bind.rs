//! The binder: sqlparser's AST → bound plans. The only module that reads
//! sqlparser's query AST (DDL statements are read in `exec::ddl`).
//!
//! Names resolve against a stack of scopes, one per query level; a column
//! found in an enclosing level becomes `Expr::Outer` and marks the levels
//! in between as correlated. Types are inferred as PostgreSQL does for the
//! types we have: integer literals are `integer` (or `bigint`, or
//! `numeric` when larger), decimal literals `numeric`, string literals
//! `unknown` until their context gives them a type.

use std::collections::HashMap;
use std::sync::Arc;

use qube_catalog::{Catalog, Def, ObjectId};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use super::expr::{AggCall, AggFunc, BinOp, Expr, Func, UnOp};
use super::{
    ColumnOrigin, FrameBound, FrameUnits, IndexRange, JoinCond, JoinInput, JoinKind, Plan, Query,
    SetFunc, SetOpKind, SortKey, TableRef, attribute_origin,
};
use crate::names::SearchPath;
use crate::types::Value;
use crate::types::cast;

#[path = "bind_datetime.rs"]
mod datetime;
#[path = "bind_funcs.rs"]
mod more;

/// Whether WITH query `cte` of `owner` is materialized rather than inlined
/// where it is read, by PostgreSQL's rule: calling a volatile function (so
/// that `random()` in it gives every reader the same rows, even `AS NOT
/// MATERIALIZED`), `AS MATERIALIZED`, or, by default, read more than once.
/// Reads are counted by name in the owner's other parts (an inner WITH of
/// the same name counts too: then it is materialized for nothing, which
/// costs only the inlining's optimizations).
fn materialize_cte(owner: &ast::Query, cte: &ast::Cte, name: &str) -> bool {
    use std::ops::ControlFlow;
    let volatile = ast::visit_expressions(&cte.query, |e| match e {
        ast::Expr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| VOLATILE_FUNCTIONS.contains(&ident(i).as_str())) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    match cte.materialized {
        _ if volatile.is_break() => true,
        Some(ast::CteAsMaterialized::Materialized) => true,
        Some(ast::CteAsMaterialized::NotMaterialized) => false,
        None => relation_reads(owner, name).saturating_sub(relation_reads(&cte.query, name)) > 1,
    }
}

/// The fields of a row constructor, `(a, b)` or `ROW(a, b)`.
fn row_items(e: &ast::Expr) -> Option<Vec<ast::Expr>> {
    match e {
        ast::Expr::Tuple(v) => Some(v.clone()),
        ast::Expr::Nested(x) => row_items(x),
        ast::Expr::Function(f)
            if f.over.is_none()
                && f.filter.is_none()
                && matches!(&f.name.0[..], [p] if p.as_ident().is_some_and(|i| ident(i) == "row")) =>
        {
            let ast::FunctionArguments::List(l) = &f.args else {
                return matches!(f.args, ast::FunctionArguments::None).then(Vec::new);
            };
            if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
                return None;
            }
            l.args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => Some(x.clone()),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// Both sides of a comparison of rows, as their fields: 42601 if their
/// sizes differ, as in PostgreSQL; comparing a row with a value that is
/// not a row constructor is not supported.
fn row_pair(a: &ast::Expr, b: &ast::Expr) -> Result<(Vec<ast::Expr>, Vec<ast::Expr>)> {
    let (Some(l), Some(r)) = (row_items(a), row_items(b)) else {
        return Err(unsupported("comparing a row constructor with a value that is not one"));
    };
    if l.len() != r.len() {
        return Err(err("42601", "unequal number of entries in row expressions"));
    }
    if l.is_empty() {
        return Err(unsupported("comparing empty rows"));
    }
    Ok((l, r))
}

/// The query of a parenthesized subquery expression, `(SELECT …)`.
fn subquery_of(e: &ast::Expr) -> Option<&ast::Query> {
    match e {
        ast::Expr::Subquery(q) => Some(q),
        ast::Expr::Nested(x) => subquery_of(x),
        _ => None,
    }
}

/// `items` joined by AND or OR (one item: itself).
fn fold_ast(items: impl Iterator<Item = ast::Expr>, op: ast::BinaryOperator) -> ast::Expr {
    items
        .reduce(|acc, x| ast::Expr::BinaryOp {
            left: Box::new(acc),
            op: op.clone(),
            right: Box::new(x),
        })
        .unwrap_or(ast::Expr::Value(ast::Value::Boolean(true).into()))
}

/// A comparison of two row constructors as the comparisons of their
/// fields, with PostgreSQL's meaning: `=` is every pair equal, `<>` any
/// pair unequal, and `<`, `<=`, `>`, `>=` are decided by the first pair
/// that is not equal (NULL if that pair's comparison is), in the order of
/// the fields: `(a, b) < (c, d)` is `a < c OR (a = c AND b < d)`. The
/// three-valued AND and OR give NULL exactly where PostgreSQL does.
fn row_comparison(a: &ast::Expr, op: &ast::BinaryOperator, b: &ast::Expr) -> Result<ast::Expr> {
    use ast::BinaryOperator as O;
    let bin = |x: &ast::Expr, op: O, y: &ast::Expr| ast::Expr::BinaryOp {
        left: Box::new(x.clone()),
        op,
        right: Box::new(y.clone()),
    };
    let strict = match op {
        O::Eq | O::NotEq => None,
        O::Lt | O::LtEq => Some(O::Lt),
        O::Gt | O::GtEq => Some(O::Gt),
        other => return Err(unsupported(format!("comparing rows with {other}"))),
    };
    let (l, r) = row_pair(a, b)?;
    let Some(strict) = strict else {
        let (each, join) = if *op == O::Eq { (O::Eq, O::And) } else { (O::NotEq, O::Or) };
        let pairs = l.iter().zip(&r).map(|(x, y)| bin(x, each.clone(), y));
        return Ok(fold_ast(pairs, join));
    };
    // From the last pair (which takes the operator itself) back to the first.
    let n = l.len();
    let mut acc = bin(&l[n - 1], op.clone(), &r[n - 1]);
    for i in (0..n - 1).rev() {
        let equal_then = ast::Expr::BinaryOp {
            left: Box::new(bin(&l[i], O::Eq, &r[i])),
            op: O::And,
            right: Box::new(ast::Expr::Nested(Box::new(acc))),
        };
        acc = ast::Expr::BinaryOp {
            left: Box::new(bin(&l[i], strict.clone(), &r[i])),
            op: O::Or,
            right: Box::new(ast::Expr::Nested(Box::new(equal_then))),
        };
    }
    Ok(acc)
}

/// How often `v` reads a relation of the unqualified name `name`.
fn relation_reads(v: &impl ast::Visit, name: &str) -> usize {
    let mut n = 0;
    let _ = ast::visit_relations(v, |o| {
        if let [part] = &o.0[..]
            && part.as_ident().is_some_and(|i| ident(i) == name)
        {
            n += 1;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    n
}

/// The volatile functions QubeDB has (PostgreSQL's `provolatile = 'v'`).
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "setseed",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "pg_sleep",
];

/// Levenshtein distance in characters (insert, delete, substitute: 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn err(code: &'static str, msg: impl Into<String>) -> Error {
    Error::user(code, msg)
}

pub fn unsupported(what: impl std::fmt::Display) -> Error {
    err("0A000", format!("{what} is not supported yet"))
}

/// Lower-cased unless quoted, as PostgreSQL folds identifiers.
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() }
}

pub fn object_name(n: &ast::ObjectName) -> Result<Vec<String>> {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => Err(unsupported(format!("name part {other}"))),
        })
        .collect()
}

/// A column visible in a scope.
#[derive(Debug, Clone)]
struct ScopeCol {
    table: Option<String>,
    name: String,
    ty: DataType,
    /// Merged by USING/NATURAL: found only by its qualified name.
    hidden: bool,
    /// The table column it is (for RowDescription).
    origin: ColumnOrigin,
}

/// A column USING/NATURAL merged from both sides: the left one, the right
/// one, or for FULL joins their COALESCE.
#[derive(Debug, Clone)]
struct Merged {
    name: String,
    expr: Expr,
    ty: DataType,
}

#[derive(Debug, Clone, Default)]
struct Scope {
    cols: Vec<ScopeCol>,
    merged: Vec<Merged>,
}

/// A bound expression with its type; `unknown` marks an untyped string
/// literal (or NULL) whose type its context decides.
#[derive(Debug, Clone)]
pub(crate) struct B {
    pub(crate) expr: Expr,
    pub(crate) ty: DataType,
    pub(crate) unknown: bool,
}

impl B {
    pub(crate) fn new(expr: Expr, ty: DataType) -> B {
        B { expr, ty, unknown: false }
    }
}

/// A bound FROM item: plan, alias, columns.
type FromItem = (Plan, String, Vec<(String, DataType)>);

/// A bound subquery: plan, whether correlated, output columns.
type Subquery = (Plan, bool, Vec<(String, DataType)>);

/// Aggregation context of a SELECT with GROUP BY or aggregates.
struct Grouping {
    keys: Vec<Expr>,
    key_types: Vec<DataType>,
    aggs: Vec<AggCall>,
    /// GROUPING SETS / ROLLUP / CUBE: the keys each set groups by; the
    /// last key is then the set's number (see `Plan::Aggregate`).
    sets: Vec<Vec<usize>>,
}

pub struct Binder<'a> {
    pub catalog: &'a Catalog,
    pub txn: &'a mut Transaction,
    pub schema: &'a SearchPath,
    scopes: Vec<Scope>,
    grouping: Vec<Option<Grouping>>,
    /// Parameter types, as inferred ($1 is index 0).
    pub params: Vec<Option<DataType>>,
    ctes: Vec<HashMap<String, Query>>,
    /// Subqueries being bound: the scope index where each starts, and
    /// whether it read a column of a scope below that.
    frames: Vec<(usize, bool)>,
    /// WITH queries being bound, in the same form as `frames` (but not
    /// subqueries: they run inlined or once, with no outer row of their
    /// own): whether one read an enclosing query's column, which keeps it
    /// from being materialized.
    cte_frames: Vec<(usize, bool)>,
    /// WITH queries that read an enclosing query's column, by the level of
    /// `ctes` that holds them: bound again where they are read, so that
    /// their outer references count the subqueries in between (a plan
    /// bound at the WITH would read the wrong outer row from a nested
    /// subquery).
    correlated_ctes: Vec<(usize, String, ast::Cte)>,
    /// Join conditions bound while binding FROM (USING), for `collapse`.
    pending_conds: Vec<Expr>,
    /// Nesting of `expr` calls (see `MAX_EXPR_DEPTH`).
    depth: usize,
    /// The WINDOW clause of each SELECT level.
    named_windows: Vec<HashMap<String, ast::WindowSpec>>,
    /// Window calls of each SELECT level (None where they are not allowed).
    windows: Vec<Option<Vec<super::WindowCall>>>,
    /// Why window calls are not allowed at this level right now, if it is
    /// because the binder is inside a window call's or an aggregate's
    /// arguments (`ban_windows`): PostgreSQL's SQLSTATE and message.
    window_ban: Option<(&'static str, &'static str)>,
    /// Recursive CTEs bound so far (their work tables' ids).
    worktables: usize,
}

/// Deepest expression the binder accepts (54001 beyond): deep enough for
/// any real query, shallow enough for a 2 MiB thread stack in a debug
/// build. Chains of AND/OR do not nest (they become balanced trees).
pub const MAX_EXPR_DEPTH: usize = 200;

/// Window results are bound as `Column(WINDOW_BASE + i)` until the width
/// of the row they follow is known.
const WINDOW_BASE: usize = 1 << 40;

/// What `Binder::ban_windows` took: the level's window calls, and the ban
/// it replaced.
type WindowsSaved = (Option<Vec<super::WindowCall>>, Option<(&'static str, &'static str)>);

/// A table as the binder sees it.
pub struct TableInfo {
    pub id: ObjectId,
    /// Its schema.
    pub schema: ObjectId,
    pub name: String,
    pub def: qube_catalog::TableDef,
}

impl<'a> Binder<'a> {
    pub fn new(
        catalog: &'a Catalog,
        txn: &'a mut Transaction,
        schema: &'a SearchPath,
    ) -> Binder<'a> {
        Binder {
            catalog,
            txn,
            schema,
            scopes: Vec::new(),
            grouping: Vec::new(),
            params: Vec::new(),
            ctes: Vec::new(),
            frames: Vec::new(),
            cte_frames: Vec::new(),
            correlated_ctes: Vec::new(),
            pending_conds: Vec::new(),
            depth: 0,
            worktables: 0,
            windows: Vec::new(),
            window_ban: None,
            named_windows: Vec::new(),
        }
    }

    /// Finds a table by (optionally schema-qualified) name.
    pub fn table(&mut self, name: &ast::ObjectName) -> Result<TableInfo> {
        let parts = object_name(name)?;
        if let Some(t) = crate::system::resolve(&parts, &self.schema.db_name) {
            return Err(err(
                "42501",
                format!("permission denied for table {}", crate::system::TABLES[t].name),
            ));
        }
        let obj = self.schema.relation(self.catalog, self.txn, &parts)?.ok_or_else(|| {
            err("42P01", format!("relation \"{}\" does not exist", parts.join(".")))
        })?;
        let tname = &obj.name;
        match &obj.def {
            Def::Table(t) => Ok(TableInfo {
                id: obj.id,
                schema: obj.parent,
                name: obj.name.clone(),
                def: t.clone(),
            }),
            other => Err(err(
                "42809",
                format!("\"{tname}\" is not a table (it is a {})", other.kind_name()),
            )),
        }
    }

    // ------------------------------------------------------------ queries

    pub fn query(&mut self, q: &ast::Query) -> Result<Query> {
        let mut pushed = false;
        if let Some(with) = &q.with {
            self.ctes.push(HashMap::new());
            pushed = true;
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                let mut bound = match cte.query.body.as_ref() {
                    ast::SetExpr::SetOperation {
                        left,
                        op: ast::SetOperator::Union,
                        set_quantifier,
                        right,
                    } if with.recursive => {
                        let res =
                            self.recursive_cte(&name, &cte.alias, left, right, set_quantifier);
                        match res {
                            Ok(q) => q,
                            Err(e) => {
                                self.ctes.pop();
                                return Err(e);
                            }
                        }
                    }
                    _ => {
                        self.cte_frames.push((self.scopes.len(), false));
                        let res = self.query(&cte.query);
                        let (_, correlated) = self.cte_frames.pop().unwrap_or((0, false));
                        let materialize = !correlated && materialize_cte(q, cte, &name);
                        if correlated {
                            let level = self.ctes.len() - 1;
                            self.correlated_ctes.push((level, name.clone(), cte.clone()));
                        }
                        match res {
                            Ok(q) if materialize => {
                                let width = q.columns.len();
                                let input = Arc::new(q.plan);
                                Query {
                                    plan: Plan::CteScan { name: name.clone(), input, width },
                                    ..q
                                }
                            }
                            Ok(q) => q,
                            Err(e) => {
                                self.ctes.pop();
                                return Err(e);
                            }
                        }
                    }
                };
                for (i, c) in cte.alias.columns.iter().enumerate() {
                    if let Some(col) = bound.columns.get_mut(i) {
                        col.0 = ident(&c.name);
                    }
                }
                if let Some(m) = self.ctes.last_mut() {
                    m.insert(name, bound);
                }
            }
        }
        let res = self.query_body(q);
        if pushed {
            self.ctes.pop();
            let n = self.ctes.len();
            self.correlated_ctes.retain(|c| c.0 < n);
        }
        res
    }

    /// WITH RECURSIVE name AS (anchor UNION [ALL] recursive): the recursive
    /// term reads the rows the previous iteration produced (`WorkTable`).
    fn recursive_cte(
        &mut self,
        name: &str,
        alias: &ast::TableAlias,
        left: &ast::SetExpr,
        right: &ast::SetExpr,
        quantifier: &ast::SetQuantifier,
    ) -> Result<Query> {
        let mut anchor = self.set_expr(left)?;
        for (i, c) in alias.columns.iter().enumerate() {
            if let Some(col) = anchor.columns.get_mut(i) {
                col.0 = ident(&c.name);
            }
        }
        self.worktables += 1;
        let id = self.worktables;
        let work = Query {
            plan: Plan::WorkTable { id, width: anchor.columns.len() },
            columns: anchor.columns.clone(),
            unknown: vec![false; anchor.columns.len()],
            origins: Vec::new(),
        };
        if let Some(m) = self.ctes.last_mut() {
            m.insert(name.to_string(), work);
        }
        let rec = self.set_expr(right)?;
        if rec.columns.len() != anchor.columns.len() {
            return Err(err("42601", "each UNION query must have the same number of columns"));
        }
        // The recursive term's columns take the anchor's types.
        let mut casts = Vec::new();
        for (i, (a, r)) in anchor.columns.iter().zip(&rec.columns).enumerate() {
            if a.1 != r.1 && common_type(&a.1, &r.1).is_none() {
                return Err(err(
                    "42804",
                    format!(
                        "recursive query \"{name}\" column {} has type {} in non-recursive term but type {} overall",
                        i + 1,
                        a.1.sql_name(),
                        r.1.sql_name()
                    ),
                ));
            }
            casts.push(cast_col(i, &r.1, &a.1));
        }
        let rplan = if casts.iter().all(|c| matches!(c, Expr::Column(_))) {
            rec.plan
        } else {
            Plan::Project { input: Box::new(rec.plan), exprs: casts }
        };
        Ok(Query {
            plan: Plan::RecursiveUnion {
                id,
                anchor: Box::new(anchor.plan),
                recursive: Box::new(rplan),
                all: matches!(quantifier, ast::SetQuantifier::All),
            },
            unknown: vec![false; anchor.columns.len()],
            columns: anchor.columns,
            origins: Vec::new(),
        })
    }

    fn query_body(&mut self, q: &ast::Query) -> Result<Query> {
        let order_by: &[ast::OrderByExpr] = match &q.order_by {
            None => &[],
            Some(ob) => match &ob.kind {
                ast::OrderByKind::Expressions(v) => v,
                ast::OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
            },
        };
        let (limit, offset) = match &q.limit_clause {
            None => (None, None),
            Some(ast::LimitClause::LimitOffset { limit, offset, limit_by }) => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT BY"));
                }
                (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
            }
            Some(ast::LimitClause::OffsetCommaLimit { .. }) => {
                return Err(err(
                    "42601",
                    "LIMIT #,# syntax is not supported; use LIMIT # OFFSET #",
                ));
            }
        };
        let limit = match (&limit, &q.fetch) {
            (Some(_), Some(_)) => return Err(err("42601", "both LIMIT and FETCH given")),
            (_, Some(f)) => {
                if f.with_ties || f.percent {
                    return Err(unsupported("FETCH … WITH TIES / PERCENT"));
                }
                Some(
                    f.quantity
                        .clone()
                        .unwrap_or(ast::Expr::value(ast::Value::Number("1".into(), false))),
                )
            }
            (l, None) => l.clone(),
        };

        let mut out = match q.body.as_ref() {
            ast::SetExpr::Select(sel) => self.select(sel, order_by)?,
            other => {
                let mut body = self.set_expr(other)?;
                if !order_by.is_empty() {
                    let keys = self.order_by_output(&body.columns, order_by)?;
                    body.plan = Plan::Sort { input: Box::new(body.plan), keys };
                }
                body
            }
        };
        if limit.is_some() || offset.is_some() {
            let mut cexpr = |e: &Option<ast::Expr>| -> Result<Option<Expr>> {
                match e {
                    None => Ok(None),
                    Some(e) => {
                        self.scopes.push(Scope::default());
                        let b = self.expr(e);
                        self.scopes.pop();
                        let b = b?;
                        // An integer constant (LIMIT 10): the bigint itself,
                        // not a cast evaluated per execution.
                        if let Expr::Const(v @ (Value::Int2(_) | Value::Int4(_) | Value::Int8(_))) =
                            &b.expr
                            && let Some(i) = v.as_i64()
                        {
                            return Ok(Some(Expr::Const(Value::Int8(i))));
                        }
                        // As an assignment, as PostgreSQL coerces LIMIT and
                        // OFFSET: a numeric or float rounds (LIMIT 2.5 is 3).
                        if !b.unknown && is_numeric(&b.ty) && b.ty != DataType::BigInt {
                            return Ok(Some(Expr::Cast {
                                expr: b.expr.boxed(),
                                to: DataType::BigInt,
                            }));
                        }
                        Ok(Some(coerce(b, &DataType::BigInt)?))
                    }
                }
            };
            let limit = cexpr(&limit)?;
            let offset = cexpr(&offset)?;
            out.plan = Plan::Limit { input: Box::new(out.plan), limit, offset };
        }
        super::order::use_index_order(&mut out.plan);
        super::indexonly::use_index_only(&mut out.plan);
        Ok(out)
    }

    fn set_expr(&mut self, s: &ast::SetExpr) -> Result<Query> {
        match s {
            ast::SetExpr::Select(sel) => self.select(sel, &[]),
            ast::SetExpr::Query(q) => self.query(q),
            ast::SetExpr::Values(v) => self.values(v),
            ast::SetExpr::SetOperation { left, op, set_quantifier, right } => {
                let l = self.set_expr(left)?;
                let r = self.set_expr(right)?;
                if l.columns.len() != r.columns.len() {
                    return Err(err(
                        "42601",
                        format!("each {op} query must have the same number of columns"),
                    ));
                }
                let kind = match op {
                    ast::SetOperator::Union => SetOpKind::Union,
                    ast::SetOperator::Intersect => SetOpKind::Intersect,
                    ast::SetOperator::Except | ast::SetOperator::Minus => SetOpKind::Except,
                };
                let all = matches!(set_quantifier, ast::SetQuantifier::All);
                let mut columns = l.columns.clone();
                let mut lp = l.plan;
                let mut rp = r.plan;
                // Unify column types (integer and numeric → numeric, …).
                let mut lcast = Vec::new();
                let mut rcast = Vec::new();
                let mut unknown = Vec::new();
                for (i, (lc, rc)) in l.columns.iter().zip(&r.columns).enumerate() {
                    let (lu, ru) =
                        (l.unknown.get(i) == Some(&true), r.unknown.get(i) == Some(&true));
                    unknown.push(lu && ru);
                    let t = if lu && !ru {
                        Some(rc.1.clone())
                    } else if ru && !lu {
                        Some(lc.1.clone())
                    } else {
                        common_type(&lc.1, &rc.1)
                    };
                    let t = t.ok_or_else(|| {
                        err(
                            "42804",
                            format!(
                                "{op} types {} and {} cannot be matched",
                                lc.1.sql_name(),
                                rc.1.sql_name()
                            ),
                        )
                    })?;
                    lcast.push(cast_col(i, &lc.1, &t));
                    rcast.push(cast_col(i, &rc.1, &t));
                    columns[i].1 = t;
                }
                if lcast.iter().any(|c| !matches!(c, Expr::Column(_))) {
                    lp = Plan::Project { input: Box::new(lp), exprs: lcast };
                }
                if rcast.iter().any(|c| !matches!(c, Expr::Column(_))) {
                    rp = Plan::Project { input: Box::new(rp), exprs: rcast };
                }
                Ok(Query {
                    plan: Plan::SetOp { left: Box::new(lp), right: Box::new(rp), kind, all },
                    columns,
                    unknown,
                    origins: Vec::new(),
                })
            }
            ast::SetExpr::Table(t) => {
                let name = t
                    .table_name
                    .as_ref()
                    .map(|n| n.to_string())
                    .ok_or_else(|| err("42601", "TABLE needs a name"))?;
                let sel = format!("SELECT * FROM {name}");
                let stmt = crate::session::parse(&sel)?;
                match stmt.into_iter().next() {
                    Some(ast::Statement::Query(q)) => self.query(&q),
                    _ => Err(unsupported("TABLE")),
                }
            }
            other => Err(unsupported(format!("query body {other}"))),
        }
    }

    fn values(&mut self, v: &ast::Values) -> Result<Query> {
        let width = v.rows.first().map_or(0, |r| r.content.len());
        let mut rows = Vec::new();
        let mut types: Vec<Option<DataType>> = vec![None; width];
        let mut bound_rows = Vec::new();
        self.scopes.push(Scope::default());
        let res = (|| {
            for r in &v.rows {
                if r.content.len() != width {
                    return Err(err("42601", "VALUES lists must all be the same length"));
                }
                let mut row = Vec::new();
                for (i, e) in r.content.iter().enumerate() {
                    let b = self.expr(e)?;
                    if !b.unknown {
                        types[i] = Some(match &types[i] {
                            None => b.ty.clone(),
                            Some(t) => common_type(t, &b.ty).ok_or_else(|| {
                                err(
                                    "42804",
                                    format!(
                                        "VALUES types {} and {} cannot be matched",
                                        t.sql_name(),
                                        b.ty.sql_name()
                                    ),
                                )
                            })?,
                        });
                    }
                    row.push(b);
                }
                bound_rows.push(row);
            }
            Ok(())
        })();
        self.scopes.pop();
        res?;
        let unknown: Vec<bool> = types.iter().map(Option::is_none).collect();
        let types: Vec<DataType> = types.into_iter().map(|t| t.unwrap_or(DataType::Text)).collect();
        for row in bound_rows {
            rows.push(
                row.into_iter().zip(&types).map(|(b, t)| coerce(b, t)).collect::<Result<_>>()?,
            );
        }
        let columns =
            types.into_iter().enumerate().map(|(i, t)| (format!("column{}", i + 1), t)).collect();
        Ok(Query { plan: Plan::Values { rows, width }, columns, unknown, origins: Vec::new() })
    }

    fn select(&mut self, sel: &ast::Select, order_by: &[ast::OrderByExpr]) -> Result<Query> {
        if sel.top.is_some() || sel.into.is_some() || !sel.lateral_views.is_empty() {
            return Err(unsupported("this SELECT form"));
        }
        self.scopes.push(Scope::default());
        self.grouping.push(None);
        self.windows.push(None);
        let mut named = HashMap::new();
        for ast::NamedWindowDefinition(id, def) in &sel.named_window {
            let spec = match def {
                ast::NamedWindowExpr::WindowSpec(s) => s.clone(),
                ast::NamedWindowExpr::NamedWindow(r) => match named.get(&ident(r)) {
                    Some(s) => Clone::clone(s),
                    None => {
                        self.windows.pop();
                        self.grouping.pop();
                        self.scopes.pop();
                        return Err(err(
                            "42704",
                            format!("window \"{}\" does not exist", ident(r)),
                        ));
                    }
                },
            };
            named.insert(ident(id), spec);
        }
        self.named_windows.push(named);
        // A subquery's own window calls are allowed, even inside an
        // enclosing query's aggregate or window arguments.
        let ban = self.window_ban.take();
        let res = self.select_inner(sel, order_by);
        self.window_ban = ban;
        self.named_windows.pop();
        self.windows.pop();
        self.grouping.pop();
        self.scopes.pop();
        res
    }

    fn select_inner(&mut self, sel: &ast::Select, order_by: &[ast::OrderByExpr]) -> Result<Query> {
        // FROM and WHERE.
        let mut plan = self.from(&sel.from, sel.selection.as_ref())?;

        // Aggregation?
        let (group_exprs, sets) = match &sel.group_by {
            ast::GroupByExpr::Expressions(v, mods) => {
                if !mods.is_empty() {
                    return Err(unsupported("GROUP BY modifiers"));
                }
                grouping_sets(v)?
            }
            ast::GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        let has_aggs = sel.projection.iter().any(|p| match p {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        }) || sel.having.as_ref().is_some_and(contains_aggregate)
            || order_by.iter().any(|o| contains_aggregate(&o.expr));
        let grouped = has_aggs || !group_exprs.is_empty() || sel.having.is_some();
        if grouped {
            let mut keys = Vec::new();
            let mut key_types = Vec::new();
            for g in &group_exprs {
                // GROUP BY may name an output column by position or alias.
                let target = self.group_target(g, &sel.projection)?;
                let b = self.expr(&target)?;
                keys.push(b.expr);
                key_types.push(b.ty);
            }
            let sets = match sets {
                Some(sets) => {
                    keys.push(Expr::Const(Value::Int4(0)));
                    key_types.push(DataType::Integer);
                    sets
                }
                None => Vec::new(),
            };
            *self.grouping.last_mut().ok_or_else(|| Error::Internal("no grouping".into()))? =
                Some(Grouping { keys, key_types, aggs: Vec::new(), sets });
        }

        // Select list (binding collects aggregates into the grouping, and
        // window functions, allowed here and in ORDER BY only).
        if let Some(w) = self.windows.last_mut() {
            *w = Some(Vec::new());
        }
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        let mut unknown: Vec<bool> = Vec::new();
        let mut origins: Vec<ColumnOrigin> = Vec::new();
        for item in &sel.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let b = self.expr(e)?;
                    origins.push(self.origin_of(&b.expr));
                    columns.push((output_name(e), b.ty.clone()));
                    unknown.push(b.unknown);
                    exprs.push(finish_unknown(b)?);
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let b = self.expr(expr)?;
                    origins.push(self.origin_of(&b.expr));
                    columns.push((ident(alias), b.ty.clone()));
                    unknown.push(b.unknown);
                    exprs.push(finish_unknown(b)?);
                }
                ast::SelectItem::Wildcard(_) => {
                    let scope = self.scopes.last().cloned().unwrap_or_default();
                    if scope.cols.is_empty() {
                        return Err(err("42601", "SELECT * with no tables specified is not valid"));
                    }
                    // USING/NATURAL columns first, then the others.
                    let mut items: Vec<(String, B)> = scope
                        .merged
                        .iter()
                        .map(|m| (m.name.clone(), B::new(m.expr.clone(), m.ty.clone())))
                        .collect();
                    for (i, c) in scope.cols.iter().enumerate() {
                        if !c.hidden {
                            items.push((c.name.clone(), B::new(Expr::Column(i), c.ty.clone())));
                        }
                    }
                    for (name, b) in items {
                        origins.push(match b.expr {
                            Expr::Column(i) => scope.cols.get(i).and_then(|c| c.origin),
                            _ => None,
                        });
                        let b = if grouped { self.grouped_ref(b, &name)? } else { b };
                        columns.push((name, b.ty));
                        exprs.push(b.expr);
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    for (i, name, ty, origin) in self.table_columns(kind, "", None)? {
                        origins.push(origin);
                        let b = B::new(Expr::Column(i), ty.clone());
                        let b = if grouped { self.grouped_ref(b, &name)? } else { b };
                        exprs.push(b.expr);
                        columns.push((name, ty));
                    }
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("multiple aliases"));
                }
            }
        }
        let window_slot = self.windows.last_mut().and_then(|w| w.take());
        let having = match &sel.having {
            Some(h) => Some(coerce_bool(self.expr(h)?, "HAVING")?),
            None => None,
        };

        if let Some(w) = self.windows.last_mut() {
            *w = window_slot;
        }
        // ORDER BY: output columns by position or name, else expressions
        // over the input, appended as hidden columns.
        let visible = exprs.len();
        let mut keys = Vec::new();
        for o in order_by {
            let (desc, nulls_first) = order_opts(o)?;
            let idx = match self.output_ref(&o.expr, &columns, &exprs, "ORDER BY")? {
                Some(i) => i,
                None => {
                    let b = finish_unknown(self.expr(&o.expr)?)?;
                    match exprs.iter().position(|e| *e == b) {
                        Some(i) => i,
                        None => {
                            exprs.push(b);
                            exprs.len() - 1
                        }
                    }
                }
            };
            keys.push(SortKey { expr: Expr::Column(idx), desc, nulls_first });
        }

        // DISTINCT ON: its expressions are output columns (hidden if need be);
        // the ORDER BY must start with them; rows are sorted so that each
        // group is contiguous, and the first of each is kept.
        let mut distinct_on: Option<Vec<usize>> = None;
        if let Some(ast::Distinct::On(on)) = &sel.distinct {
            let mut idx = Vec::new();
            for e in on {
                let i = match self.output_ref(e, &columns, &exprs, "DISTINCT ON")? {
                    Some(i) => i,
                    None => {
                        let b = finish_unknown(self.expr(e)?)?;
                        match exprs.iter().position(|x| *x == b) {
                            Some(i) => i,
                            None => {
                                exprs.push(b);
                                exprs.len() - 1
                            }
                        }
                    }
                };
                idx.push(i);
            }
            for k in keys.iter().take(idx.len()) {
                if !matches!(k.expr, Expr::Column(c) if idx.contains(&c)) {
                    return Err(err(
                        "42P10",
                        "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
                    ));
                }
            }
            for &i in &idx {
                if !keys.iter().take(idx.len()).any(|k| k.expr == Expr::Column(i)) {
                    keys.insert(
                        keys.len().min(idx.len()),
                        SortKey { expr: Expr::Column(i), desc: false, nulls_first: false },
                    );
                }
            }
            distinct_on = Some(idx);
        }
        let calls = self.windows.last_mut().and_then(|w| w.take()).unwrap_or_default();
        let mut width = self.scope_len();
        if let Some(g) = self.grouping.last_mut().and_then(|g| g.take()) {
            width = g.keys.len() + g.aggs.len();
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by: g.keys,
                aggs: g.aggs,
                sets: g.sets,
            };
            if let Some(h) = having {
                plan = Plan::Filter { input: Box::new(plan), predicate: h };
            }
        }
        if !calls.is_empty() {
            // Window results follow the input's columns.
            let remap = |c: usize| if c >= WINDOW_BASE { width + (c - WINDOW_BASE) } else { c };
            for e in exprs.iter_mut() {
                e.remap_columns(&remap);
            }
            plan = Plan::Window { input: Box::new(plan), calls };
        }
        plan = Plan::Project { input: Box::new(plan), exprs };
        match &sel.distinct {
            None | Some(ast::Distinct::All) => {}
            Some(ast::Distinct::Distinct) => {
                if visible != plan_width_of_project(&plan) {
                    return Err(err(
                        "42P10",
                        "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
                    ));
                }
                plan = Plan::Distinct { input: Box::new(plan) };
            }
            Some(ast::Distinct::On(_)) => {}
        }
        if !keys.is_empty() {
            plan = Plan::Sort { input: Box::new(plan), keys };
        }
        if let Some(idx) = distinct_on {
            plan = Plan::DistinctOn {
                input: Box::new(plan),
                on: idx.into_iter().map(Expr::Column).collect(),
            };
        }
        if plan_width_of(&plan) > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
            };
        }
        unknown.resize(columns.len(), false);
        Ok(Query { plan, columns, unknown, origins })
    }

    /// The origin of a select-list item bound to `e`: a column of the
    /// current scope (in a grouped query, a GROUP BY key that is one).
    fn origin_of(&self, e: &Expr) -> ColumnOrigin {
        // A cast to the column's own type is the column (PostgreSQL drops
        // it while parsing: `SELECT a::int` of an integer column).
        let (e, same_type_as) = match e {
            Expr::Cast { expr, to } => (expr.as_ref(), Some(to)),
            e => (e, None),
        };
        let Expr::Column(i) = e else { return None };
        let i = match self.grouping.last() {
            Some(Some(g)) => match g.keys.get(*i) {
                Some(Expr::Column(c)) => *c,
                _ => return None,
            },
            _ => *i,
        };
        let col = self.scopes.last()?.cols.get(i)?;
        if same_type_as.is_some_and(|t| *t != col.ty) {
            return None;
        }
        col.origin
    }

    /// A column read in an aggregating query: it must be a GROUP BY key.
    fn grouped_ref(&self, b: B, name: &str) -> Result<B> {
        let g = self
            .grouping
            .last()
            .and_then(|g| g.as_ref())
            .ok_or_else(|| Error::Internal("grouping".into()))?;
        match g.keys.iter().position(|k| *k == b.expr) {
            Some(i) => Ok(B::new(Expr::Column(i), g.key_types[i].clone())),
            None => Err(err(
                "42803",
                format!(
                    "column \"{name}\" must appear in the GROUP BY clause or be used in an aggregate function"
                ),
            )),
        }
    }

    /// GROUP BY 2 / GROUP BY alias → the select-list expression.
    fn group_target(&self, g: &ast::Expr, projection: &[ast::SelectItem]) -> Result<ast::Expr> {
        if let Some(i) = position_literal(g, "GROUP BY")? {
            let at = usize::try_from(i).ok().and_then(|i| i.checked_sub(1));
            return match at.and_then(|i| projection.get(i)) {
                Some(ast::SelectItem::UnnamedExpr(e))
                | Some(ast::SelectItem::ExprWithAlias { expr: e, .. }) => Ok(e.clone()),
                _ => Err(err("42P10", format!("GROUP BY position {i} is not in select list"))),
            };
        }
        if let ast::Expr::Identifier(id) = g {
            let name = ident(id);
            let in_input =
                self.scopes.last().is_some_and(|s| s.cols.iter().any(|c| c.name == name));
            if !in_input {
                for p in projection {
                    if let ast::SelectItem::ExprWithAlias { expr, alias } = p
                        && ident(alias) == name
                    {
                        return Ok(expr.clone());
                    }
                }
            }
        }
        Ok(g.clone())
    }

    /// ORDER BY 2 / ORDER BY alias → output column index. A name several
    /// output columns carry is ambiguous unless they are one expression
    /// (`SELECT a, a … ORDER BY a`), as in PostgreSQL; `exprs` are the
    /// output columns' expressions (empty where there are none to compare:
    /// a set operation's columns are all different).
    fn output_ref(
        &self,
        e: &ast::Expr,
        columns: &[(String, DataType)],
        exprs: &[Expr],
        clause: &str,
    ) -> Result<Option<usize>> {
        if let Some(i) = position_literal(e, clause)? {
            return match usize::try_from(i) {
                Ok(i) if i >= 1 && i <= columns.len() => Ok(Some(i - 1)),
                _ => Err(err("42P10", format!("{clause} position {i} is not in select list"))),
            };
        }
        match e {
            ast::Expr::Identifier(id) => {
                let name = ident(id);
                let hits: Vec<usize> = columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.0 == name)
                    .map(|(i, _)| i)
                    .collect();
                let same = |i: usize| exprs.get(i).is_some_and(|x| Some(x) == exprs.get(hits[0]));
                match hits.len() {
                    0 => Ok(None),
                    1 => Ok(Some(hits[0])),
                    _ if hits.iter().all(|&i| same(i)) => Ok(Some(hits[0])),
                    _ => Err(err("42702", format!("ORDER BY \"{name}\" is ambiguous"))),
                }
            }
            _ => Ok(None),
        }
    }

    /// ORDER BY of a set operation: output columns only.
    fn order_by_output(
        &mut self,
        columns: &[(String, DataType)],
        order_by: &[ast::OrderByExpr],
    ) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        for o in order_by {
            let (desc, nulls_first) = order_opts(o)?;
            let idx = self.output_ref(&o.expr, columns, &[], "ORDER BY")?.ok_or_else(|| {
                if let ast::Expr::Identifier(id) = &o.expr {
                    return err("42703", format!("column \"{}\" does not exist", ident(id)));
                }
                err(
                    "0A000",
                    format!(
                        "invalid UNION/INTERSECT/EXCEPT ORDER BY clause: \"{}\" is not a result column",
                        o.expr
                    ),
                )
            })?;
            keys.push(SortKey { expr: Expr::Column(idx), desc, nulls_first });
        }
        Ok(keys)
    }

    // ------------------------------------------------------------ FROM

    /// Binds FROM (filling the current scope) and WHERE into one plan.
    fn from(
        &mut self,
        from: &[ast::TableWithJoins],
        selection: Option<&ast::Expr>,
    ) -> Result<Plan> {
        let outer = std::mem::take(&mut self.pending_conds);
        let res = self.bind_from(from, selection);
        self.pending_conds = outer;
        res
    }

    fn bind_from<'q>(
        &mut self,
        from: &'q [ast::TableWithJoins],
        selection: Option<&'q ast::Expr>,
    ) -> Result<Plan> {
        let (inputs, mut conds) = self.bind_from_inputs(from)?;
        if let Some(w) = selection {
            conds.push(w);
        }
        if inputs.is_empty() {
            let mut plan = Plan::unit();
            for c in conds {
                let b = coerce_bool(self.expr(c)?, "WHERE")?;
                plan = Plan::Filter { input: Box::new(plan), predicate: b };
            }
            return Ok(plan);
        }
        self.collapse(inputs, conds)
    }

    /// UPDATE … FROM and DELETE … USING: the `from` items, then the target
    /// table (its columns under `alias`, then a hidden rowid column), all
    /// joined under `selection`; `f` binds SET and RETURNING in that
    /// scope. Returns the plan, the target's first column in its rows,
    /// and what `f` returned.
    pub fn dml_join<T>(
        &mut self,
        table: &TableInfo,
        alias: &str,
        from: &[ast::TableWithJoins],
        selection: Option<&ast::Expr>,
        f: impl FnOnce(&mut Self, usize) -> Result<T>,
    ) -> Result<(Plan, usize, T)> {
        self.scopes.push(Scope::default());
        self.grouping.push(None);
        self.windows.push(None);
        let res = (|| {
            let (mut inputs, mut conds) = self.bind_from_inputs(from)?;
            let offset = self.scope_len();
            let columns: Vec<(String, DataType)> =
                table.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
            let scope = self.scopes.last_mut().ok_or_else(|| Error::Internal("no scope".into()))?;
            if scope.cols.iter().any(|c| c.table.as_deref() == Some(alias)) {
                return Err(err(
                    "42712",
                    format!("table name \"{alias}\" specified more than once"),
                ));
            }
            for (n, t) in &columns {
                scope.cols.push(ScopeCol {
                    table: Some(alias.to_string()),
                    name: n.clone(),
                    ty: t.clone(),
                    hidden: false,
                    origin: None,
                });
            }
            scope.cols.push(ScopeCol {
                table: Some(alias.to_string()),
                name: "ctid".into(),
                ty: DataType::BigInt,
                hidden: true,
                origin: None,
            });
            let indexes = crate::exec::dml::table_indexes(self, table)?;
            let expr_indexes = Arc::new(crate::exec::dml::expr_indexes(self, table)?);
            let width = columns.len() + 1;
            let plan = Plan::ScanRowids {
                table: TableRef {
                    id: table.id,
                    name: table.name.clone(),
                    columns,
                    indexes,
                    expr_indexes,
                    rowid_key: crate::storage::rowid_key(&table.def),
                    index_names: Arc::new(crate::exec::dml::index_names(self, table)?),
                },
            };
            inputs.push(JoinInput { plan, offset, width });
            if let Some(w) = selection {
                conds.push(w);
            }
            let plan = self.collapse(inputs, conds)?;
            let out = f(self, offset)?;
            Ok((plan, offset, out))
        })();
        self.windows.pop();
        self.grouping.pop();
        self.scopes.pop();
        res
    }

    /// The inputs and join conditions of a FROM list, its columns added to
    /// the current scope.
    fn bind_from_inputs<'q>(
        &mut self,
        from: &'q [ast::TableWithJoins],
    ) -> Result<(Vec<JoinInput>, Vec<&'q ast::Expr>)> {
        // Each comma item and each inner join is an input of one MultiJoin;
        // outer joins become binary Join nodes inside an input.
        let mut inputs: Vec<JoinInput> = Vec::new();
        let mut conds: Vec<&'q ast::Expr> = Vec::new();
        for twj in from {
            if is_lateral(&twj.relation) || (!inputs.is_empty() && is_function(&twj.relation)) {
                self.lateral_item(&twj.relation, &mut inputs, &mut conds, JoinKind::Inner, None)?;
            } else {
                self.join_item(&twj.relation, &mut inputs)?;
            }
            for j in &twj.joins {
                let (kind, constraint) = match &j.join_operator {
                    ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => {
                        (JoinKind::Inner, Some(c))
                    }
                    ast::JoinOperator::CrossJoin(c) => (JoinKind::Inner, Some(c)),
                    ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => {
                        (JoinKind::Left, Some(c))
                    }
                    ast::JoinOperator::Right(c) | ast::JoinOperator::RightOuter(c) => {
                        (JoinKind::Right, Some(c))
                    }
                    ast::JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c)),
                    other => return Err(unsupported(format!("join {other:?}"))),
                };
                let function = is_function(&j.relation);
                if is_lateral(&j.relation) || (function && kind != JoinKind::Right) {
                    if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
                        return Err(err(
                            "42P10",
                            "the combining JOIN type must be INNER or LEFT for a LATERAL reference",
                        ));
                    }
                    self.lateral_item(&j.relation, &mut inputs, &mut conds, kind, constraint)?;
                    continue;
                }
                if kind == JoinKind::Inner {
                    let left_cols = self.scope_len();
                    self.join_item(&j.relation, &mut inputs)?;
                    if let Some(c) = constraint {
                        self.join_constraint(c, left_cols, JoinKind::Inner, &mut conds)?;
                    }
                } else {
                    // Collapse what is joined so far into one input, then an
                    // outer join of it with the new relation.
                    let left =
                        self.collapse(std::mem::take(&mut inputs), std::mem::take(&mut conds))?;
                    let left_width = self.scope_len();
                    let mut right_inputs = Vec::new();
                    self.join_item(&j.relation, &mut right_inputs)?;
                    let right_width = self.scope_len() - left_width;
                    let mut right =
                        right_inputs.pop().ok_or_else(|| Error::Internal("no input".into()))?;
                    right.offset = 0;
                    let mut on_conds = Vec::new();
                    if let Some(c) = constraint {
                        self.join_constraint(c, left_width, kind, &mut on_conds)?;
                    }
                    let mut on_parts = Vec::new();
                    for c in std::mem::take(&mut self.pending_conds) {
                        split_and(c, &mut on_parts);
                    }
                    for c in on_conds {
                        let b = coerce_bool(self.expr(c)?, "JOIN/ON")?;
                        split_and(b, &mut on_parts);
                    }
                    // ON conditions on the nullable side alone filter that
                    // side before the join (LEFT JOIN b ON … AND b.k = 1).
                    let (mut left, mut right_plan) = (left, right.plan);
                    let mut on = Expr::Const(Value::Bool(true));
                    for c in on_parts {
                        match join_side(&c, left_width) {
                            Some(false) if kind == JoinKind::Left => {
                                right_plan = push_filter(right_plan, shift_columns(c, left_width));
                            }
                            Some(true) if kind == JoinKind::Right => {
                                left = push_filter(left, c);
                            }
                            _ => on = and(on, c),
                        }
                    }
                    let plan =
                        Plan::Join { left: Box::new(left), right: Box::new(right_plan), kind, on };
                    inputs.push(JoinInput { plan, offset: 0, width: left_width + right_width });
                }
            }
        }
        Ok((inputs, conds))
    }

    /// A LATERAL derived table: what is joined so far becomes one input,
    /// and the subquery (which may read its columns) runs per row of it.
    fn lateral_item<'q>(
        &mut self,
        f: &ast::TableFactor,
        inputs: &mut Vec<JoinInput>,
        conds: &mut Vec<&'q ast::Expr>,
        kind: JoinKind,
        constraint: Option<&'q ast::JoinConstraint>,
    ) -> Result<()> {
        // A function in FROM may read the items to its left (it is
        // implicitly LATERAL, as in PostgreSQL): bound first as a
        // subquery's only item, to see whether it does.
        let mut function = None;
        if let ast::TableFactor::Table { args: Some(_), .. } | ast::TableFactor::UNNEST { .. } = f {
            self.frames.push((self.scopes.len(), false));
            self.scopes.push(Scope::default());
            let mut item = Vec::new();
            let res = self.join_item(f, &mut item);
            let scope = self.scopes.pop().unwrap_or_default();
            let correlated = self.frames.pop().is_some_and(|f| f.1);
            res?;
            let plan = item.pop().map(|i| i.plan).unwrap_or_else(Plan::unit);
            let a = scope.cols.first().and_then(|c| c.table.clone()).unwrap_or_default();
            let cols: Vec<(String, DataType)> =
                scope.cols.into_iter().map(|c| (c.name, c.ty)).collect();
            if !correlated && kind == JoinKind::Inner && !inputs.is_empty() {
                // It reads nothing to its left: an ordinary input of the
                // join, so that the planner orders it with the others and
                // the WHERE conditions join it (pgjdbc's getImportedKeys
                // joins `generate_series(1, 32) pos(n)` among eight
                // catalog relations with commas).
                let left_width = self.scope_len();
                self.push_item(inputs, left_width, (plan, a, cols))?;
                if let Some(c) = constraint {
                    self.join_constraint(c, left_width, JoinKind::Inner, conds)?;
                }
                return Ok(());
            }
            function = Some((plan, a, cols));
        }
        let left = if inputs.is_empty() {
            Plan::unit()
        } else {
            self.collapse(std::mem::take(inputs), std::mem::take(conds))?
        };
        let left_width = self.scope_len();
        let (plan, a, cols) = match f {
            _ if let Some(item) = function => item,
            ast::TableFactor::Derived { subquery, alias, .. } => {
                self.grouping.push(None);
                let sub = self.subquery(subquery);
                self.grouping.pop();
                let (plan, _, columns) = sub?;
                alias_fits(f, columns.len())?;
                let a = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default();
                (plan, a, columns).with_alias(alias.as_ref())
            }
            _ => return Err(unsupported("LATERAL of this FROM item")),
        };
        let right_width = cols.len();
        let scope = self.scopes.last_mut().ok_or_else(|| Error::Internal("no scope".into()))?;
        if !a.is_empty() && scope.cols.iter().any(|c| c.table.as_deref() == Some(a.as_str())) {
            return Err(err("42712", format!("table name \"{a}\" specified more than once")));
        }
        for (name, ty) in cols {
            scope.cols.push(ScopeCol {
                table: Some(a.clone()),
                name,
                ty,
                hidden: false,
                origin: None,
            });
        }
        let mut on = Expr::Const(Value::Bool(true));
        if let Some(c) = constraint {
            if kind == JoinKind::Inner {
                self.join_constraint(c, left_width, JoinKind::Inner, conds)?;
            } else {
                let mut on_conds = Vec::new();
                self.join_constraint(c, left_width, kind, &mut on_conds)?;
                for c in std::mem::take(&mut self.pending_conds) {
                    on = and(on, c);
                }
                for c in on_conds {
                    let b = coerce_bool(self.expr(c)?, "JOIN/ON")?;
                    on = and(on, b);
                }
            }
        }
        let plan =
            Plan::Lateral { left: Box::new(left), right: Box::new(plan), kind, on, right_width };
        inputs.push(JoinInput { plan, offset: 0, width: left_width + right_width });
        Ok(())
    }

    fn scope_len(&self) -> usize {
        self.scopes.last().map_or(0, |s| s.cols.len())
    }

    /// Binds conditions over the current scope and joins `inputs` with them.
    fn collapse(&mut self, mut inputs: Vec<JoinInput>, conds: Vec<&ast::Expr>) -> Result<Plan> {
        let width = self.scope_len();
        let mut bound = Vec::new();
        for c in std::mem::take(&mut self.pending_conds) {
            split_and(c, &mut bound);
        }
        for c in &conds {
            let b = coerce_bool(self.expr(c)?, "WHERE")?;
            split_and(b, &mut bound);
        }
        // A condition on one outer join's columns goes into it (see
        // `push_filter`): below the join where that is sound.
        let mut kept = Vec::with_capacity(bound.len());
        for b in bound {
            let set = super::inputs_of(&b, &inputs);
            match set.single() {
                Some(i) if matches!(inputs[i].plan, Plan::Join { .. }) && !b.has_subquery() => {
                    let off = inputs[i].offset;
                    let plan = std::mem::replace(&mut inputs[i].plan, Plan::unit());
                    inputs[i].plan = push_filter(plan, shift_columns(b, off));
                }
                _ => kept.push(b),
            }
        }
        let bound = kept;
        for inp in inputs.iter_mut() {
            use_index(inp, &bound);
        }
        if inputs.len() == 1 {
            let mut plan = inputs.pop().map(|i| i.plan).unwrap_or_else(Plan::unit);
            for b in bound {
                if index_decides(&plan, &b) {
                    continue;
                }
                plan = Plan::Filter { input: Box::new(plan), predicate: b };
            }
            return Ok(plan);
        }
        let conds = bound
            .into_iter()
            .map(|expr| {
                let set = super::inputs_of(&expr, &inputs);
                JoinCond { expr, inputs: set }
            })
            .collect();
        Ok(Plan::MultiJoin { inputs, conds, width })
    }

    fn join_constraint<'q>(
        &mut self,
        c: &'q ast::JoinConstraint,
        left_cols: usize,
        kind: JoinKind,
        conds: &mut Vec<&'q ast::Expr>,
    ) -> Result<()> {
        match c {
            ast::JoinConstraint::None => Ok(()),
            ast::JoinConstraint::On(e) => {
                conds.push(e);
                Ok(())
            }
            ast::JoinConstraint::Using(names) => {
                for n in names {
                    let name = object_name(n)?.pop().unwrap_or_default();
                    self.using_cond(&name, left_cols, kind, conds)?;
                }
                Ok(())
            }
            ast::JoinConstraint::Natural => {
                let scope = self.scopes.last().cloned().unwrap_or_default();
                let left: Vec<String> = scope.cols[..left_cols]
                    .iter()
                    .filter(|c| !c.hidden)
                    .map(|c| c.name.clone())
                    .chain(scope.merged.iter().map(|m| m.name.clone()))
                    .collect();
                let right: Vec<String> =
                    scope.cols[left_cols..].iter().map(|c| c.name.clone()).collect();
                for name in left {
                    if right.contains(&name) {
                        self.using_cond(&name, left_cols, kind, conds)?;
                    }
                }
                Ok(())
            }
            other => Err(unsupported(format!("join constraint {other:?}"))),
        }
    }

    /// USING (x): left.x = right.x; the two columns merge into one that an
    /// unqualified `x` and `*` see (PostgreSQL's rules: the left column,
    /// the right one for RIGHT joins, their COALESCE for FULL joins).
    fn using_cond(
        &mut self,
        name: &str,
        left_cols: usize,
        kind: JoinKind,
        conds: &mut Vec<&ast::Expr>,
    ) -> Result<()> {
        let scope = self.scopes.last_mut().ok_or_else(|| Error::Internal("no scope".into()))?;
        // A merged column of the left side (not one of a parenthesized
        // USING join on the right, whose merged columns are here too).
        let lm = scope
            .merged
            .iter()
            .position(|m| m.name == name && join_side(&m.expr, left_cols) == Some(true));
        let l = scope.cols[..left_cols].iter().position(|c| c.name == name && !c.hidden);
        let r = scope.cols[left_cols..].iter().position(|c| c.name == name);
        let missing = || {
            err(
                "42703",
                format!("column \"{name}\" specified in USING clause does not exist in left table"),
            )
        };
        let Some(r) = r else {
            return Err(err(
                "42703",
                format!(
                    "column \"{name}\" specified in USING clause does not exist in right table"
                ),
            ));
        };
        let r = left_cols + r;
        let (left_expr, left_ty) = match (lm, l) {
            (Some(m), _) => (scope.merged[m].expr.clone(), scope.merged[m].ty.clone()),
            (None, Some(l)) => (Expr::Column(l), scope.cols[l].ty.clone()),
            (None, None) => return Err(missing()),
        };
        let right_ty = scope.cols[r].ty.clone();
        let ty = common_type(&left_ty, &right_ty).ok_or_else(|| {
            err(
                "42804",
                format!(
                    "JOIN/USING types {} and {} cannot be matched",
                    left_ty.sql_name(),
                    right_ty.sql_name()
                ),
            )
        })?;
        let expr = match kind {
            JoinKind::Inner | JoinKind::Left => left_expr.clone(),
            JoinKind::Right => Expr::Column(r),
            JoinKind::Full => {
                Expr::Func { func: Func::Coalesce, args: vec![left_expr.clone(), Expr::Column(r)] }
            }
        };
        if let Some(l) = l {
            scope.cols[l].hidden = true;
        }
        scope.cols[r].hidden = true;
        match lm {
            Some(m) => scope.merged[m] = Merged { name: name.to_string(), expr, ty },
            None => scope.merged.push(Merged { name: name.to_string(), expr, ty }),
        }
        // The condition, bound now: left = right.
        self.pending_conds.push(Expr::Binary {
            op: BinOp::Eq,
            left: left_expr.boxed(),
            right: Expr::Column(r).boxed(),
        });
        let _ = conds;
        Ok(())
    }

    /// Binds one table factor, appending its columns to the current scope.
    fn join_item(&mut self, f: &ast::TableFactor, inputs: &mut Vec<JoinInput>) -> Result<()> {
        let offset = self.scope_len();
        let mut origins: Vec<ColumnOrigin> = Vec::new();
        let (plan, alias, cols): (Plan, String, Vec<(String, DataType)>) = match f {
            ast::TableFactor::Table { name, alias, args, with_ordinality, .. } => {
                if let Some(a) = args {
                    let fname = object_name(name)?.pop().unwrap_or_default();
                    if let Some(cols) = crate::system::empty_function(&fname, *with_ordinality) {
                        alias_fits(f, cols.len())?;
                        let plan = Plan::Values { rows: Vec::new(), width: cols.len() };
                        return self.push_item(
                            inputs,
                            offset,
                            (plan, fname, cols).with_alias(alias.as_ref()),
                        );
                    }
                    if fname != "generate_series" {
                        let exprs = a
                            .args
                            .iter()
                            .map(|x| match x {
                                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                                other => Err(unsupported(format!("argument {other}"))),
                            })
                            .collect::<Result<Vec<_>>>()?;
                        self.table_function(&fname, &exprs, alias.as_ref())?
                    } else {
                        // Arguments see no FROM sibling (no LATERAL).
                        self.scopes.push(Scope::default());
                        let bound: Result<Vec<B>> = a
                            .args
                            .iter()
                            .map(|x| match x {
                                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                                    self.expr(e)
                                }
                                other => Err(unsupported(format!("argument {other}"))),
                            })
                            .collect();
                        self.scopes.pop();
                        let bound = bound?;
                        if !(2..=3).contains(&bound.len()) {
                            return Err(err(
                                "42883",
                                "function generate_series needs 2 or 3 arguments",
                            ));
                        }
                        let (mut exprs, ty) = series_args(bound)?;
                        let step = if exprs.len() == 3 { exprs.pop() } else { None };
                        let stop = exprs.pop().unwrap_or(Expr::Const(Value::Null));
                        let start = exprs.pop().unwrap_or(Expr::Const(Value::Null));
                        let plan = Plan::Series { start, stop, step };
                        // A function's single column takes the table alias's name.
                        let col = match alias {
                            Some(a) if a.columns.is_empty() => ident(&a.name),
                            _ => "generate_series".to_string(),
                        };
                        (plan, "generate_series".to_string(), vec![(col, ty)])
                            .with_alias(alias.as_ref())
                    }
                } else {
                    let parts = object_name(name)?;
                    let found = match parts.len() {
                        1 => self
                            .ctes
                            .iter()
                            .enumerate()
                            .rev()
                            .find_map(|(i, m)| m.get(&parts[0]).map(|q| (i, q.clone()))),
                        _ => None,
                    };
                    let cte = match found {
                        Some((level, q)) => {
                            let again = self
                                .correlated_ctes
                                .iter()
                                .rev()
                                .find(|c| c.0 == level && c.1 == parts[0])
                                .map(|c| c.2.clone());
                            match again {
                                Some(c) => {
                                    let mut q = self.query(&c.query)?;
                                    for (i, a) in c.alias.columns.iter().enumerate() {
                                        if let Some(col) = q.columns.get_mut(i) {
                                            col.0 = ident(&a.name);
                                        }
                                    }
                                    Some(q)
                                }
                                None => Some(q),
                            }
                        }
                        None => None,
                    };
                    let default_alias = parts.last().cloned().unwrap_or_default();
                    let system = match cte {
                        None => crate::system::resolve(&parts, &self.schema.db_name),
                        Some(_) => None,
                    };
                    match cte {
                        Some(q) => {
                            origins = q.origins;
                            (q.plan, default_alias, q.columns)
                        }
                        None if let Some(table) = system => {
                            let columns = crate::system::columns(table);
                            let rel = crate::system::system_rel_oid(table);
                            origins =
                                (0..columns.len()).map(|k| attribute_origin(rel, k)).collect();
                            let plan = Plan::System { table, width: columns.len() };
                            (plan, default_alias, columns)
                        }
                        None => {
                            let view = self.view(name)?;
                            match view {
                                Some(q) => {
                                    origins = q.origins;
                                    (q.plan, default_alias, q.columns)
                                }
                                None => {
                                    let t = self.table(name)?;
                                    let indexes = crate::exec::dml::table_indexes(self, &t)?;
                                    let expr_indexes =
                                        Arc::new(crate::exec::dml::expr_indexes(self, &t)?);
                                    let columns: Vec<(String, DataType)> = t
                                        .def
                                        .columns
                                        .iter()
                                        .map(|c| (c.name.clone(), c.data_type.clone()))
                                        .collect();
                                    origins = (0..columns.len())
                                        .map(|k| attribute_origin(t.id, k))
                                        .collect();
                                    let plan = Plan::Scan {
                                        table: TableRef {
                                            id: t.id,
                                            name: t.name.clone(),
                                            columns: columns.clone(),
                                            indexes,
                                            expr_indexes,
                                            rowid_key: crate::storage::rowid_key(&t.def),
                                            index_names: Arc::new(crate::exec::dml::index_names(
                                                self, &t,
                                            )?),
                                        },
                                    };
                                    (plan, default_alias, columns)
                                }
                            }
                        }
                    }
                    .with_alias(alias.as_ref())
                }
            }
            ast::TableFactor::Derived { lateral, subquery, alias, .. } => {
                if *lateral {
                    return Err(unsupported("LATERAL"));
                }
                // A derived table cannot see its FROM siblings.
                self.scopes.push(Scope::default());
                self.grouping.push(None);
                let q = self.query(subquery);
                self.grouping.pop();
                self.scopes.pop();
                let q = q?;
                let a = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default();
                origins = q.origins;
                (q.plan, a, q.columns).with_alias(alias.as_ref())
            }
            ast::TableFactor::NestedJoin { table_with_joins, alias } => {
                if alias.is_some() {
                    return Err(unsupported("alias on a parenthesized join"));
                }
                // Bound in a scope of its own, so that its inputs' offsets,
                // its conditions' columns and its rows count from 0 (a
                // MultiJoin's rows are as wide as its scope); its columns
                // then follow the left side's in this scope. Bound in this
                // scope instead, a parenthesized join after the first FROM
                // item read its conditions and columns shifted by the left
                // side's width: wrong rows.
                self.scopes.push(Scope::default());
                let plan = self.from(std::slice::from_ref(table_with_joins), None);
                let inner = self.scopes.pop().unwrap_or_default();
                let plan = plan?;
                let scope =
                    self.scopes.last_mut().ok_or_else(|| Error::Internal("no scope".into()))?;
                for c in &inner.cols {
                    if let Some(t) = c.table.as_deref()
                        && !c.hidden
                        && scope.cols.iter().any(|o| o.table.as_deref() == Some(t))
                    {
                        return Err(err(
                            "42712",
                            format!("table name \"{t}\" specified more than once"),
                        ));
                    }
                }
                let width = inner.cols.len();
                scope.cols.extend(inner.cols);
                scope.merged.extend(inner.merged.into_iter().map(|mut m| {
                    m.expr.remap_columns(&|c| c + offset);
                    m
                }));
                inputs.push(JoinInput { plan, offset, width });
                return Ok(());
            }
            ast::TableFactor::UNNEST { alias, array_exprs, with_offset, .. } => {
                if *with_offset {
                    return Err(unsupported("UNNEST … WITH OFFSET"));
                }
                let exprs: Vec<&ast::Expr> = array_exprs.iter().collect();
                self.table_function("unnest", &exprs, alias.as_ref())?
            }
            other => return Err(unsupported(format!("FROM item {other}"))),
        };
        let (mut plan, mut cols) = (plan, cols);
        if let ast::TableFactor::Table { args: Some(_), with_ordinality: true, alias: a, .. }
        | ast::TableFactor::UNNEST { with_ordinality: true, alias: a, .. } = f
        {
            // WITH ORDINALITY: a bigint column numbering the function's
            // rows from 1, after its own (named by the alias's next column).
            let name = a
                .as_ref()
                .and_then(|a| a.columns.get(cols.len()))
                .map_or_else(|| "ordinality".to_string(), |c| ident(&c.name));
            let call = super::WindowCall {
                func: super::WindowFunc::RowNumber,
                args: Vec::new(),
                partition: Vec::new(),
                order: Vec::new(),
                frame: super::Frame {
                    units: FrameUnits::Rows,
                    start: FrameBound::UnboundedPreceding,
                    end: FrameBound::CurrentRow,
                },
            };
            plan = Plan::Window { input: Box::new(plan), calls: vec![call] };
            cols.push((name, DataType::BigInt));
        }
        alias_fits(f, cols.len())?;
        self.push_item_from(inputs, offset, (plan, alias, cols), &origins)
    }

    /// Adds a bound FROM item's columns to the current scope.
    fn push_item(
        &mut self,
        inputs: &mut Vec<JoinInput>,
        offset: usize,
        item: (Plan, String, Vec<(String, DataType)>),
    ) -> Result<()> {
        self.push_item_from(inputs, offset, item, &[])
    }

    /// `push_item` with the columns' origins (missing ones: none).
    fn push_item_from(
        &mut self,
        inputs: &mut Vec<JoinInput>,
        offset: usize,
        (plan, alias, cols): (Plan, String, Vec<(String, DataType)>),
        origins: &[ColumnOrigin],
    ) -> Result<()> {
        let scope = self.scopes.last_mut().ok_or_else(|| Error::Internal("no scope".into()))?;
        if !alias.is_empty()
            && scope.cols.iter().any(|c| c.table.as_deref() == Some(alias.as_str()))
        {
            return Err(err("42712", format!("table name \"{alias}\" specified more than once")));
        }
        let width = cols.len();
        for (k, (name, ty)) in cols.into_iter().enumerate() {
            let origin = origins.get(k).copied().flatten();
            scope.cols.push(ScopeCol {
                table: Some(alias.clone()),
                name,
                ty,
                hidden: false,
                origin,
            });
        }
        inputs.push(JoinInput { plan, offset, width });
        Ok(())
    }

    fn view(&mut self, name: &ast::ObjectName) -> Result<Option<Query>> {
        let parts = object_name(name)?;
        let Some(obj) = self.schema.relation(self.catalog, self.txn, &parts)? else {
            return Ok(None);
        };
        let Def::View(v) = &obj.def else { return Ok(None) };
        let stmts = crate::session::parse(&v.query)?;
        let Some(ast::Statement::Query(q)) = stmts.into_iter().next() else {
            return Err(Error::Internal(format!("view {} has no query", obj.name)));
        };
        // Bound in its own scope stack: a view never sees the query using it.
        let saved = std::mem::take(&mut self.scopes);
        let saved_g = std::mem::take(&mut self.grouping);
        let res = self.query(&q);
        self.scopes = saved;
        self.grouping = saved_g;
        let mut q = res?;
        for (i, c) in v.columns.iter().enumerate() {
            if let Some(col) = q.columns.get_mut(i) {
                col.0 = c.clone();
            }
        }
        // A view's columns are its own (PostgreSQL reports the view).
        q.origins = (0..q.columns.len()).map(|k| attribute_origin(obj.id, k)).collect();
        Ok(Some(q))
    }

    // ------------------------------------------------------------ expressions

    /// Binds an expression in the current scope (and grouping, if any).
    pub fn expr_typed(&mut self, e: &ast::Expr) -> Result<(Expr, DataType)> {
        let b = self.expr(e)?;
        let ty = b.ty.clone();
        Ok((finish_unknown(b)?, ty))
    }

    /// Binds an expression over the given columns (for DML and CHECK).
    pub fn with_columns<T>(
        &mut self,
        table: &str,
        cols: &[(String, DataType)],
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.with_tables(&[(table, cols)], f)
    }

    /// Binds over several tables' columns side by side (ON CONFLICT's
    /// target row and `excluded`).
    pub fn with_tables<T>(
        &mut self,
        tables: &[(&str, &[(String, DataType)])],
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let scope = Scope {
            cols: tables
                .iter()
                .flat_map(|(table, cols)| {
                    cols.iter().map(move |(n, t)| ScopeCol {
                        table: Some(table.to_string()),
                        name: n.clone(),
                        ty: t.clone(),
                        hidden: false,
                        origin: None,
                    })
                })
                .collect(),
            merged: Vec::new(),
        };
        self.scopes.push(scope);
        self.grouping.push(None);
        let r = f(self);
        self.grouping.pop();
        self.scopes.pop();
        r
    }

    /// Binds a RETURNING list over a table's columns: expressions and
    /// output columns.
    pub fn returning(
        &mut self,
        table: &str,
        cols: &[(String, DataType)],
        items: &[ast::SelectItem],
    ) -> Result<super::Returning> {
        let star: Vec<(usize, (String, DataType))> = cols.iter().cloned().enumerate().collect();
        self.with_columns(table, cols, |b| b.returning_items(items, &star, None))
    }

    /// RETURNING of UPDATE … FROM / DELETE … USING, in `dml_join`'s
    /// scope: `*` is the target's columns (from `offset`), then the other
    /// FROM items' columns, as in PostgreSQL.
    pub fn returning_joined(
        &mut self,
        offset: usize,
        ncols: usize,
        items: &[ast::SelectItem],
    ) -> Result<super::Returning> {
        let cols = self.scopes.last().map(|s| s.cols.clone()).unwrap_or_default();
        let mut star: Vec<(usize, (String, DataType))> = (offset..offset + ncols)
            .map(|i| (i, (cols[i].name.clone(), cols[i].ty.clone())))
            .collect();
        for (i, c) in cols.iter().enumerate() {
            if !c.hidden && !(offset..offset + ncols).contains(&i) {
                star.push((i, (c.name.clone(), c.ty.clone())));
            }
        }
        self.returning_items(items, &star, Some(offset + ncols))
    }

    /// The columns `t.*` names in the current scope, in order: position,
    /// name, type and origin; `skip` (a target's hidden rowid) left out.
    /// 42P01 if no FROM item is `t`; `what` prefixes the 0A000 of an
    /// expression's `.*`.
    fn table_columns(
        &self,
        kind: &ast::SelectItemQualifiedWildcardKind,
        what: &str,
        skip: Option<usize>,
    ) -> Result<Vec<(usize, String, DataType, ColumnOrigin)>> {
        let name = match kind {
            ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?,
            ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                return Err(unsupported(format!("{what}{e}.*")));
            }
        };
        let t = name.last().cloned().unwrap_or_default();
        let cols: Vec<_> = self
            .scopes
            .last()
            .into_iter()
            .flat_map(|s| s.cols.iter().enumerate())
            .filter(|(i, c)| c.table.as_deref() == Some(t.as_str()) && Some(*i) != skip)
            .map(|(i, c)| (i, c.name.clone(), c.ty.clone(), c.origin))
            .collect();
        if cols.is_empty() {
            return Err(err("42P01", format!("missing FROM-clause entry for table \"{t}\"")));
        }
        Ok(cols)
    }

    /// `star` is what `*` expands to; `rowid` the scope index of the
    /// target's hidden rowid column, which `alias.*` leaves out.
    fn returning_items(
        &mut self,
        items: &[ast::SelectItem],
        star: &[(usize, (String, DataType))],
        rowid: Option<usize>,
    ) -> Result<super::Returning> {
        let mut exprs = Vec::new();
        let mut out = Vec::new();
        for item in items {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    for (i, c) in star {
                        exprs.push(Expr::Column(*i));
                        out.push(c.clone());
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let (x, t) = self.expr_typed(e)?;
                    exprs.push(x);
                    out.push((output_name(e), t));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (x, t) = self.expr_typed(expr)?;
                    exprs.push(x);
                    out.push((ident(alias), t));
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    // `alias.*`: that table's columns, as in a SELECT list.
                    for (i, name, ty, _) in self.table_columns(kind, "RETURNING ", rowid)? {
                        exprs.push(Expr::Column(i));
                        out.push((name, ty));
                    }
                }
                other => return Err(unsupported(format!("RETURNING {other}"))),
            }
        }
        Ok((exprs, out))
    }

    /// Binds and coerces to a type (assignment context).
    pub fn expr_as(&mut self, e: &ast::Expr, ty: &DataType) -> Result<Expr> {
        let b = self.expr(e)?;
        if b.unknown {
            // Parsed as the base type; the length or precision limit is
            // applied by the assignment itself (22001, 22003).
            fn base(ty: &DataType) -> DataType {
                match ty {
                    DataType::Varchar(_) | DataType::Char(_) => DataType::Text,
                    DataType::Numeric(_) => DataType::Numeric(None),
                    DataType::Array(e) => DataType::Array(Box::new(base(e))),
                    other => other.clone(),
                }
            }
            return coerce(b, &base(ty));
        }
        if !cast::implicit(&b.ty, ty) && !assignable(&b.ty, ty) {
            return Err(err(
                "42804",
                format!(
                    "column is of type {} but expression is of type {}",
                    ty.sql_name(),
                    b.ty.sql_name()
                ),
            ));
        }
        // The caller assigns (cast::assign) the value to the column.
        Ok(b.expr)
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<B> {
        if self.depth >= MAX_EXPR_DEPTH {
            return Err(err(
                "54001",
                format!(
                    "stack depth limit exceeded: expressions nest more than {MAX_EXPR_DEPTH} deep"
                ),
            ));
        }
        self.depth += 1;
        let r = self.expr_guarded(e);
        self.depth -= 1;
        r
    }

    fn expr_guarded(&mut self, e: &ast::Expr) -> Result<B> {
        // Inside an aggregation: a subexpression equal to a GROUP BY key
        // reads that key; a bare column elsewhere is an error.
        if self.grouping.last().is_some_and(|g| g.is_some())
            && !matches!(e, ast::Expr::Function(_) if is_aggregate_call(e))
            && !contains_aggregate(e)
            && !matches!(e, ast::Expr::Value(_))
        {
            let g = self.grouping.last_mut().and_then(|g| g.take());
            let plain = self.expr(e);
            let g = {
                let slot =
                    self.grouping.last_mut().ok_or_else(|| Error::Internal("grouping".into()))?;
                *slot = g;
                slot.as_ref().ok_or_else(|| Error::Internal("grouping".into()))?
            };
            let plain = plain?;
            if let Some(i) = g.keys.iter().position(|k| *k == plain.expr) {
                return Ok(B::new(Expr::Column(i), g.key_types[i].clone()));
            }
            let mut cols = Vec::new();
            plain.expr.columns_used(&mut cols);
            if cols.is_empty() {
                return Ok(plain);
            }
            if let ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) = e {
                return Err(err(
                    "42803",
                    format!(
                        "column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"
                    ),
                ));
            }
            // Fall through: bind the parts (some may be keys).
        }
        self.expr_inner(e)
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> Result<B> {
        use ast::Expr as E;
        Ok(match e {
            E::Identifier(id) => self.column(None, &ident(id))?,
            E::CompoundIdentifier(ids) => {
                let parts: Vec<String> = ids.iter().map(ident).collect();
                match parts.as_slice() {
                    [t, c] => self.column(Some(t), c)?,
                    [_, t, c] => self.column(Some(t), c)?,
                    _ => return Err(unsupported(format!("name {e}"))),
                }
            }
            E::Value(v) => literal(&v.value, &mut self.params)?,
            E::Nested(inner) => self.expr(inner)?,
            // Collations other than the default are not implemented; psql
            // writes COLLATE pg_catalog.default.
            E::Collate { expr, collation } => {
                let c = object_name(collation)?.pop().unwrap_or_default();
                if !matches!(c.as_str(), "default" | "C" | "POSIX" | "c" | "posix") {
                    return Err(unsupported(format!("COLLATE {collation}")));
                }
                self.expr(expr)?
            }
            E::UnaryOp { op, expr } => {
                let b = self.expr(expr)?;
                match op {
                    ast::UnaryOperator::Not => {
                        let b = coerce_bool(b, "NOT")?;
                        B::new(Expr::Unary { op: UnOp::Not, expr: b.boxed() }, DataType::Boolean)
                    }
                    ast::UnaryOperator::Minus => {
                        // Fold -literal so that -2147483648 is an integer.
                        if let E::Value(v) = expr.as_ref()
                            && let ast::Value::Number(n, _) = &v.value
                        {
                            return number(&format!("-{n}"));
                        }
                        let b = if b.unknown { coerce_b(b, &DataType::Double)? } else { b };
                        if !is_numeric(&b.ty) && b.ty != DataType::Interval {
                            return Err(no_operator("-", None, &b.ty));
                        }
                        B::new(Expr::Unary { op: UnOp::Neg, expr: b.expr.boxed() }, b.ty)
                    }
                    ast::UnaryOperator::Plus => {
                        if !is_numeric(&b.ty) && !b.unknown {
                            return Err(no_operator("+", None, &b.ty));
                        }
                        b
                    }
                    ast::UnaryOperator::BitwiseNot => {
                        let b = if b.unknown { coerce_b(b, &DataType::Integer)? } else { b };
                        if !matches!(
                            b.ty,
                            DataType::SmallInt | DataType::Integer | DataType::BigInt
                        ) {
                            return Err(no_operator("~", None, &b.ty));
                        }
                        B::new(Expr::Func { func: Func::BitNot, args: vec![b.expr] }, b.ty)
                    }
                    other => return Err(unsupported(format!("operator {other}"))),
                }
            }
            E::BinaryOp {
                op: op @ (ast::BinaryOperator::And | ast::BinaryOperator::Or), ..
            } => {
                let (bop, name) = if *op == ast::BinaryOperator::And {
                    (BinOp::And, "AND")
                } else {
                    (BinOp::Or, "OR")
                };
                let mut items = Vec::new();
                for x in chain_operands(e, op) {
                    items.push(coerce_bool(self.expr(x)?, name)?);
                }
                B::new(balanced(bop, items), DataType::Boolean)
            }
            E::BinaryOp { left, op: ast::BinaryOperator::Overlaps, right } => {
                self.overlaps(left, right)?
            }
            E::BinaryOp { left, op, right }
                if row_items(left).is_some() && subquery_of(right).is_some() =>
            {
                // (a, b) op (SELECT x, y …): the subquery's one row (none:
                // NULL; more: 21000), compared with the row as PostgreSQL
                // compares rows (`eval`). Like PostgreSQL, only with the
                // subquery on the right: on the left it is a scalar
                // subquery, which must have one column.
                let (Some(items), Some(q)) = (row_items(left), subquery_of(right)) else {
                    return Err(Error::Internal("row and subquery".into()));
                };
                let bop =
                    cmp_op(op).ok_or_else(|| unsupported(format!("comparing rows with {op}")))?;
                let (row, plan, correlated) = self.row_and_subquery(&items, q, "row comparison")?;
                B::new(
                    Expr::Quantified {
                        expr: row.boxed(),
                        op: bop,
                        all: false,
                        single: true,
                        plan: Box::new(plan),
                        correlated,
                    },
                    DataType::Boolean,
                )
            }
            E::BinaryOp { left, op, right }
                if row_items(left).is_some() || row_items(right).is_some() =>
            {
                use ast::BinaryOperator as O;
                if subquery_of(left).is_some() {
                    // A subquery on the left is a scalar one, as in
                    // PostgreSQL: 42601 if it has more than one column.
                    self.expr(left)?;
                }
                if !matches!(op, O::Eq | O::NotEq | O::Lt | O::LtEq | O::Gt | O::GtEq) {
                    // PostgreSQL applies any other operator pairwise and
                    // wants a boolean from it: say what the first pair gives.
                    let (l, r) = row_pair(left, right)?;
                    let first = self.expr(&E::BinaryOp {
                        left: Box::new(l[0].clone()),
                        op: op.clone(),
                        right: Box::new(r[0].clone()),
                    })?;
                    if first.ty != DataType::Boolean {
                        return Err(err(
                            "42804",
                            format!(
                                "row comparison operator must yield type boolean, not type {}",
                                first.ty.sql_name()
                            ),
                        ));
                    }
                    return Err(unsupported(format!("comparing rows with {op}")));
                }
                self.expr(&row_comparison(left, op, right)?)?
            }
            E::BinaryOp { left, op, right } => {
                let l = self.expr(left)?;
                let r = self.expr(right)?;
                self.binary(op, l, r)?
            }
            E::IsNull(x) | E::IsNotNull(x) => {
                let b = self.expr(x)?;
                B::new(
                    Expr::IsNull { expr: b.expr.boxed(), negated: matches!(e, E::IsNotNull(_)) },
                    DataType::Boolean,
                )
            }
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => {
                let b = coerce_bool(self.expr(x)?, "IS TRUE")?;
                B::new(
                    Expr::IsBool {
                        expr: b.boxed(),
                        value: matches!(e, E::IsTrue(_) | E::IsNotTrue(_)),
                        negated: matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)),
                    },
                    DataType::Boolean,
                )
            }
            E::IsUnknown(x) | E::IsNotUnknown(x) => {
                let b = coerce_bool(self.expr(x)?, "IS UNKNOWN")?;
                B::new(
                    Expr::IsNull { expr: b.boxed(), negated: matches!(e, E::IsNotUnknown(_)) },
                    DataType::Boolean,
                )
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b)
                if row_items(a).is_some() || row_items(b).is_some() =>
            {
                // Rows are distinct if any pair of fields is.
                let (l, r) = row_pair(a, b)?;
                let distinct = matches!(e, E::IsDistinctFrom(..));
                let pairs = l.into_iter().zip(r).map(|(x, y)| match distinct {
                    true => E::IsDistinctFrom(Box::new(x), Box::new(y)),
                    false => E::IsNotDistinctFrom(Box::new(x), Box::new(y)),
                });
                let op = if distinct { ast::BinaryOperator::Or } else { ast::BinaryOperator::And };
                self.expr(&fold_ast(pairs, op))?
            }
            E::In { expr, target: ast::InTarget::List(list), negated, .. }
                if row_items(expr).is_some() =>
            {
                // (a, b) IN ((1, 2), (3, 4)): equal to any of the rows.
                let mut any = Vec::with_capacity(list.len());
                for item in list {
                    any.push(row_comparison(expr, &ast::BinaryOperator::Eq, item)?);
                }
                let or = fold_ast(any.into_iter(), ast::BinaryOperator::Or);
                let e = match negated {
                    true => E::UnaryOp { op: ast::UnaryOperator::Not, expr: Box::new(or) },
                    false => or,
                };
                self.expr(&e)?
            }
            E::In { expr, target: ast::InTarget::Subquery(subquery), negated, .. }
                if let Some(items) = row_items(expr) =>
            {
                // (a, b) IN (SELECT x, y …): the row's fields, each in the
                // type it shares with its column, as one record compared
                // with the subquery's rows field by field (`eval`).
                let (row, plan, correlated) = self.row_and_subquery(&items, subquery, "IN")?;
                B::new(
                    Expr::InSubquery {
                        expr: row.boxed(),
                        plan: Box::new(plan),
                        negated: *negated,
                        correlated,
                    },
                    DataType::Boolean,
                )
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                let (l, r) = self.unify(a, b, "IS DISTINCT FROM")?;
                B::new(
                    Expr::IsDistinct {
                        left: l.boxed(),
                        right: r.boxed(),
                        negated: matches!(e, E::IsNotDistinctFrom(..)),
                    },
                    DataType::Boolean,
                )
            }
            E::In { expr, target: ast::InTarget::List(list), negated, .. } => {
                let x = self.expr(expr)?;
                let mut items: Vec<B> = list.iter().map(|i| self.expr(i)).collect::<Result<_>>()?;
                let mut ty = if x.unknown { None } else { Some(x.ty.clone()) };
                for i in &items {
                    if !i.unknown {
                        ty = Some(match ty {
                            None => i.ty.clone(),
                            Some(t) => {
                                common_type(&t, &i.ty).ok_or_else(|| mismatch("IN", &t, &i.ty))?
                            }
                        });
                    }
                }
                let ty = ty.unwrap_or(DataType::Text);
                let x = coerce_cmp(x, &ty)?;
                let list = items.drain(..).map(|i| coerce_cmp(i, &ty)).collect::<Result<_>>()?;
                B::new(Expr::InList { expr: x.boxed(), list, negated: *negated }, DataType::Boolean)
            }
            E::Between { expr, negated, low, high } => {
                let x = self.expr(expr)?;
                let lo = self.expr(low)?;
                let hi = self.expr(high)?;
                let mut ty = None;
                for b in [&x, &lo, &hi] {
                    if !b.unknown {
                        ty = Some(match ty {
                            None => b.ty.clone(),
                            Some(t) => common_type(&t, &b.ty)
                                .ok_or_else(|| mismatch("BETWEEN", &t, &b.ty))?,
                        });
                    }
                }
                let ty = ty.unwrap_or(DataType::Text);
                B::new(
                    Expr::Between {
                        expr: coerce_cmp(x, &ty)?.boxed(),
                        low: coerce_cmp(lo, &ty)?.boxed(),
                        high: coerce_cmp(hi, &ty)?.boxed(),
                        negated: *negated,
                    },
                    DataType::Boolean,
                )
            }
            E::Like { negated, any, expr, pattern, escape_char }
            | E::ILike { negated, any, expr, pattern, escape_char } => {
                if *any {
                    return Err(unsupported("LIKE ANY"));
                }
                let x = self.expr(expr)?;
                let p = self.expr(pattern)?;
                let x = coerce(x, &DataType::Text)?;
                let mut p = coerce(p, &DataType::Text)?;
                // `ESCAPE c`: the pattern rewritten to backslash escapes.
                if let Some(esc) = escape_char {
                    let esc = coerce(self.expr(esc)?, &DataType::Text)?;
                    p = Expr::Func { func: Func::LikeEscape, args: vec![p, esc] };
                }
                B::new(
                    Expr::Like {
                        expr: x.boxed(),
                        pattern: p.boxed(),
                        negated: *negated,
                        case_insensitive: matches!(e, E::ILike { .. }),
                    },
                    DataType::Boolean,
                )
            }
            E::Case { operand, conditions, else_result, .. } => {
                let operand_b = match operand {
                    Some(o) => Some(self.expr(o)?),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut results = Vec::new();
                for cw in conditions {
                    let c = self.expr(&cw.condition)?;
                    let c = match &operand_b {
                        Some(o) => {
                            // CASE x WHEN v: compare like x = v.
                            let t = if c.unknown {
                                o.ty.clone()
                            } else if o.unknown {
                                c.ty.clone()
                            } else {
                                common_type(&o.ty, &c.ty)
                                    .ok_or_else(|| mismatch("CASE/WHEN", &o.ty, &c.ty))?
                            };
                            coerce_cmp(c, &t)?
                        }
                        None => coerce_bool(c, "CASE/WHEN")?,
                    };
                    whens.push(c);
                    results.push(self.expr(&cw.result)?);
                }
                let else_b = match else_result {
                    Some(x) => Some(self.expr(x)?),
                    None => None,
                };
                let mut ty: Option<DataType> = None;
                for r in results.iter().chain(else_b.iter()) {
                    if !r.unknown {
                        ty = Some(match ty {
                            None => r.ty.clone(),
                            Some(t) => {
                                common_type(&t, &r.ty).ok_or_else(|| mismatch("CASE", &t, &r.ty))?
                            }
                        });
                    }
                }
                let ty = ty.unwrap_or(DataType::Text);
                let operand = match operand_b {
                    Some(o) => {
                        let t = o.ty.clone();
                        Some(coerce_cmp(o, &t)?.boxed())
                    }
                    None => None,
                };
                let whens = whens
                    .into_iter()
                    .zip(results)
                    .map(|(w, r)| Ok((w, coerce(r, &ty)?)))
                    .collect::<Result<_>>()?;
                let else_ = match else_b {
                    Some(b) => Some(coerce(b, &ty)?.boxed()),
                    None => None,
                };
                B::new(Expr::Case { operand, whens, else_ }, ty)
            }
            E::Cast { kind: _, expr, data_type, format: _ }
                if let Some(kind) = reg_type(data_type) =>
            {
                let b = self.expr(expr)?;
                crate::system::reg_cast(kind, b)?
            }
            E::Cast { kind: _, expr, data_type, format: _ } => {
                let to = data_type_of(data_type)?;
                let precision =
                    datetime::data_type(data_type).and_then(|r| r.ok()).and_then(|t| t.1);
                if let E::Array(a) = expr.as_ref()
                    && a.elem.is_empty()
                    && matches!(to, DataType::Array(_))
                {
                    return Ok(B::new(Expr::Const(Value::Array(Vec::new())), to));
                }
                if let E::Array(a) = expr.as_ref()
                    && let DataType::Array(elem) = &to
                {
                    // ARRAY[…] cast to an array type: each element is cast
                    // to the element type (PostgreSQL's transformArrayExpr
                    // given a target type), so `ARRAY[$1]::int[]` makes $1
                    // an integer.
                    let mut args = Vec::with_capacity(a.elem.len());
                    for x in &a.elem {
                        if matches!(x, E::Array(_)) {
                            return Err(crate::types::array::multi_dim());
                        }
                        let b = self.expr(x)?;
                        args.push(if b.unknown || b.ty == **elem {
                            coerce(b, elem)?
                        } else {
                            Expr::Cast { expr: b.expr.boxed(), to: (**elem).clone() }
                        });
                    }
                    return Ok(B::new(Expr::Func { func: Func::ArrayCtor, args }, to));
                }
                let b = self.expr(expr)?;
                // `'int4'::regtype::text`: a reg* value printed as text is
                // its name, as in PostgreSQL (the oid is an integer here).
                if let Expr::Func {
                    func: Func::Sys(crate::system::SysFunc::NameToOid(kind)), ..
                } = &b.expr
                    && matches!(to, DataType::Text | DataType::Varchar(_))
                {
                    let kind = *kind;
                    let name = crate::system::reg_cast(kind, b)?;
                    return Ok(B::new(Expr::Cast { expr: name.expr.boxed(), to: to.clone() }, to));
                }
                // An int2vector's text is its numbers separated by spaces.
                if b.ty == DataType::Int2Vector
                    && !b.unknown
                    && matches!(to, DataType::Text | DataType::Varchar(_))
                {
                    let sep = Expr::Const(Value::Text(" ".into()));
                    let s = Expr::Func { func: Func::ArrayToString, args: vec![b.expr, sep] };
                    return Ok(B::new(Expr::Cast { expr: s.boxed(), to: to.clone() }, to));
                }
                if let Expr::Const(v) = &b.expr
                    && b.unknown
                {
                    // A typed literal: parse now, so errors point at the query.
                    let c = Expr::Const(cast::cast(v.clone(), &to)?);
                    return Ok(B::new(datetime::round_to_precision(c, &to, precision), to));
                }
                if let Expr::Param(i) = &b.expr
                    && b.unknown
                {
                    note_param_type(*i, &to);
                }
                // character(n) to text or varchar drops its padding, as
                // PostgreSQL's bpchar does (as the implicit coercion does).
                let from = if !b.unknown
                    && matches!(b.ty, DataType::Char(_))
                    && matches!(to, DataType::Text | DataType::Varchar(_))
                {
                    Expr::Func { func: Func::Rtrim, args: vec![b.expr] }
                } else {
                    b.expr
                };
                let c = Expr::Cast { expr: from.boxed(), to: to.clone() };
                B::new(datetime::round_to_precision(c, &to, precision), to)
            }
            E::TypedString(ts) => {
                let to = data_type_of(&ts.data_type)?;
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                let precision =
                    datetime::data_type(&ts.data_type).and_then(|r| r.ok()).and_then(|t| t.1);
                let c = Expr::Const(cast::cast(Value::Text(text), &to)?);
                B::new(datetime::round_to_precision(c, &to, precision), to)
            }
            E::Function(f) => self.function(f)?,
            E::Subquery(q) => {
                let (plan, correlated, cols) = self.subquery(q)?;
                if cols.len() != 1 {
                    return Err(err("42601", "subquery must return only one column"));
                }
                B::new(Expr::ScalarSubquery { plan: Box::new(plan), correlated }, cols[0].1.clone())
            }
            E::Exists { subquery, negated } => {
                let (plan, correlated, _) = self.subquery(subquery)?;
                B::new(
                    Expr::Exists { plan: Box::new(plan), negated: *negated, correlated },
                    DataType::Boolean,
                )
            }
            E::In { expr, target: ast::InTarget::Subquery(subquery), negated, .. } => {
                let x = self.expr(expr)?;
                let (plan, correlated, cols) = self.subquery(subquery)?;
                if cols.len() != 1 {
                    return Err(err("42601", "subquery has too many columns"));
                }
                let ty = if x.unknown {
                    cols[0].1.clone()
                } else {
                    common_type(&x.ty, &cols[0].1)
                        .ok_or_else(|| mismatch("IN", &x.ty, &cols[0].1))?
                };
                let x = coerce_cmp(x, &ty)?;
                B::new(
                    Expr::InSubquery {
                        expr: x.boxed(),
                        plan: Box::new(plan),
                        negated: *negated,
                        correlated,
                    },
                    DataType::Boolean,
                )
            }
            E::AnyOp { left, compare_op, right, .. } | E::AllOp { left, compare_op, right } => {
                let all = matches!(e, E::AllOp { .. });
                let E::Subquery(q) = right.as_ref() else {
                    let x = self.expr(left)?;
                    let arr = self.expr(right)?;
                    return self.any_array(x, compare_op, arr, all);
                };
                let op = cmp_op(compare_op)
                    .ok_or_else(|| unsupported(format!("{compare_op} ANY/ALL")))?;
                let (x, plan, correlated) = match row_items(left) {
                    // (a, b) op ANY/ALL (SELECT x, y …): row comparisons.
                    Some(items) => self.row_and_subquery(&items, q, "ANY/ALL")?,
                    None => {
                        let x = self.expr(left)?;
                        let (plan, correlated, cols) = self.subquery(q)?;
                        if cols.len() != 1 {
                            return Err(err("42601", "subquery has too many columns"));
                        }
                        let ty = if x.unknown { cols[0].1.clone() } else { x.ty.clone() };
                        (coerce_cmp(x, &ty)?, plan, correlated)
                    }
                };
                B::new(
                    Expr::Quantified {
                        expr: x.boxed(),
                        op,
                        all,
                        single: false,
                        plan: Box::new(plan),
                        correlated,
                    },
                    DataType::Boolean,
                )
            }
            E::Ceil { expr, .. } | E::Floor { expr, .. } => {
                let b = self.expr(expr)?;
                let b = if b.unknown { coerce_b(b, &DataType::Double)? } else { b };
                let func = if matches!(e, E::Ceil { .. }) { Func::Ceil } else { Func::Floor };
                let ty = match b.ty {
                    DataType::Numeric(_) => DataType::Numeric(None),
                    _ => DataType::Double,
                };
                B::new(Expr::Func { func, args: vec![b.expr] }, ty)
            }
            E::Substring { expr, substring_from, substring_for, .. } => {
                let s = self.expr(expr)?;
                let bytes = !s.unknown && s.ty == DataType::Bytea;
                if !s.unknown && !is_text(&s.ty) && !bytes {
                    let more = if substring_for.is_some() { ", integer" } else { "" };
                    return Err(err(
                        "42883",
                        format!(
                            "function substring({}, integer{more}) does not exist",
                            s.ty.sql_name()
                        ),
                    ));
                }
                let ty = if bytes { DataType::Bytea } else { DataType::Text };
                let mut args = vec![coerce(s, &ty)?];
                if let Some(f) = substring_from {
                    args.push(coerce(self.expr(f)?, &DataType::Integer)?);
                } else {
                    args.push(Expr::Const(Value::Int4(1)));
                }
                if let Some(f) = substring_for {
                    args.push(coerce(self.expr(f)?, &DataType::Integer)?);
                }
                B::new(Expr::Func { func: Func::Substr, args }, ty)
            }
            E::Position { expr, r#in } => {
                let sub = coerce(self.expr(expr)?, &DataType::Text)?;
                let s = coerce(self.expr(r#in)?, &DataType::Text)?;
                B::new(Expr::Func { func: Func::Position, args: vec![sub, s] }, DataType::Integer)
            }
            E::Trim { trim_where, trim_what, expr, trim_characters } => {
                if trim_characters.is_some() {
                    return Err(unsupported("TRIM(… , characters)"));
                }
                let func = match trim_where {
                    Some(ast::TrimWhereField::Leading) => Func::Ltrim,
                    Some(ast::TrimWhereField::Trailing) => Func::Rtrim,
                    _ => Func::Trim,
                };
                let mut args = vec![coerce(self.expr(expr)?, &DataType::Text)?];
                if let Some(w) = trim_what {
                    args.push(coerce(self.expr(w)?, &DataType::Text)?);
                }
                B::new(Expr::Func { func, args }, DataType::Text)
            }
            E::Array(a) => {
                let mut items = Vec::with_capacity(a.elem.len());
                for x in &a.elem {
                    if matches!(x, E::Array(_)) {
                        return Err(crate::types::array::multi_dim());
                    }
                    items.push(self.expr(x)?);
                }
                self.array_ctor(items)?
            }
            E::CompoundFieldAccess { root, access_chain } => {
                // `t.col[1]` parses as t, .col, [1]: the leading dots are a name.
                let dots = access_chain
                    .iter()
                    .take_while(|a| matches!(a, ast::AccessExpr::Dot(E::Identifier(_))))
                    .count();
                let mut b = match root.as_ref() {
                    E::Identifier(first) if dots > 0 => {
                        let mut parts = vec![ident(first)];
                        for a in &access_chain[..dots] {
                            if let ast::AccessExpr::Dot(E::Identifier(i)) = a {
                                parts.push(ident(i));
                            }
                        }
                        match parts.as_slice() {
                            [t, c] => self.column(Some(t), c)?,
                            [_, t, c] => self.column(Some(t), c)?,
                            _ => return Err(unsupported(format!("name {e}"))),
                        }
                    }
                    _ => self.expr(root)?,
                };
                let skip = if matches!(root.as_ref(), E::Identifier(_)) { dots } else { 0 };
                for acc in &access_chain[skip..] {
                    b = match acc {
                        ast::AccessExpr::Subscript(sub) => self.subscript(b, sub)?,
                        ast::AccessExpr::Dot(E::Identifier(field)) => {
                            self.field_selection(b, &ident(field))?
                        }
                        ast::AccessExpr::Dot(_) => return Err(unsupported("field selection")),
                    };
                }
                b
            }
            // `(a, b)`: the same record as ROW(a, b).
            E::Tuple(items) => {
                let mut fields = Vec::with_capacity(items.len());
                let mut exprs = Vec::with_capacity(items.len());
                for (i, x) in items.iter().enumerate() {
                    let b = self.expr(x)?;
                    let b = if b.unknown { coerce_b(b, &DataType::Text)? } else { b };
                    fields.push((format!("f{}", i + 1), b.ty));
                    exprs.push(b.expr);
                }
                B::new(Expr::Func { func: Func::RowCtor, args: exprs }, DataType::Record(fields))
            }
            E::SimilarTo { negated, expr, pattern, escape_char } => {
                let v = coerce(self.expr(expr)?, &DataType::Text)?;
                let re = match (pattern.as_ref(), escape_char) {
                    (E::Value(p), None) => match &p.value {
                        ast::Value::SingleQuotedString(p) => similar_to_regex(p),
                        _ => return Err(unsupported("SIMILAR TO with a non-string pattern")),
                    },
                    _ => return Err(unsupported("SIMILAR TO with a computed pattern or ESCAPE")),
                };
                let m = Expr::Func {
                    func: Func::RegexMatch,
                    args: vec![v, Expr::Const(Value::Text(re))],
                };
                let m = if *negated { Expr::Unary { op: UnOp::Not, expr: m.boxed() } } else { m };
                B::new(m, DataType::Boolean)
            }
            E::Overlay { expr, overlay_what, overlay_from, overlay_for } => {
                let mut args =
                    vec![self.expr(expr)?, self.expr(overlay_what)?, self.expr(overlay_from)?];
                if let Some(f) = overlay_for {
                    args.push(self.expr(f)?);
                }
                more::function("overlay", &mut args)?
                    .ok_or_else(|| Error::Internal("overlay".into()))?
            }
            other => match self.datetime_expr(other)? {
                Some(b) => b,
                None => return Err(unsupported(format!("expression {other}"))),
            },
        })
    }

    fn unify(&mut self, a: &ast::Expr, b: &ast::Expr, what: &str) -> Result<(Expr, Expr)> {
        let l = self.expr(a)?;
        let r = self.expr(b)?;
        let ty = match (l.unknown, r.unknown) {
            (true, true) => DataType::Text,
            (true, false) => r.ty.clone(),
            (false, true) => l.ty.clone(),
            _ => common_type(&l.ty, &r.ty).ok_or_else(|| mismatch(what, &l.ty, &r.ty))?,
        };
        Ok((coerce_cmp(l, &ty)?, coerce_cmp(r, &ty)?))
    }

    /// `x op ANY/ALL (array)`.
    fn any_array(&mut self, x: B, op: &ast::BinaryOperator, arr: B, all: bool) -> Result<B> {
        let cmp = cmp_op(op).ok_or_else(|| unsupported(format!("{op} ANY/ALL")))?;
        let arr = vector_as_array(arr);
        let elem = match (&arr.ty, arr.unknown) {
            (_, true) => None,
            (DataType::Array(e), false) => Some((**e).clone()),
            (t, false) => {
                return Err(err(
                    "42809",
                    format!(
                        "op ANY/ALL (array) requires array on right side, not {}",
                        t.sql_name()
                    ),
                ));
            }
        };
        let ty = match (elem, x.unknown) {
            (None, true) => DataType::Text,
            (None, false) => x.ty.clone(),
            (Some(e), true) => e,
            (Some(e), false) => {
                common_type(&x.ty, &e).ok_or_else(|| no_operator(op_name(cmp), Some(&x.ty), &e))?
            }
        };
        if ty == DataType::Json {
            return Err(no_operator(op_name(cmp), Some(&ty), &ty));
        }
        let arr = if arr.unknown {
            coerce(arr, &DataType::Array(Box::new(ty.clone())))?
        } else {
            arr.expr
        };
        let x = coerce_cmp(x, &ty)?;
        Ok(B::new(
            Expr::Func { func: Func::ArrayAny { op: cmp, all }, args: vec![x, arr] },
            DataType::Boolean,
        ))
    }

    /// `ARRAY[…]`: the elements' common type.
    fn array_ctor(&mut self, items: Vec<B>) -> Result<B> {
        let mut ty: Option<DataType> = None;
        for i in &items {
            if !i.unknown {
                ty = Some(match ty {
                    None => i.ty.clone(),
                    Some(t) => {
                        common_type(&t, &i.ty).ok_or_else(|| mismatch("ARRAY", &t, &i.ty))?
                    }
                });
            }
        }
        let ty = match ty {
            Some(DataType::Array(_)) => return Err(crate::types::array::multi_dim()),
            Some(t) => t,
            None if items.is_empty() => {
                return Err(err("42P18", "cannot determine type of empty array"));
            }
            None => DataType::Text,
        };
        let args = items.into_iter().map(|i| coerce(i, &ty)).collect::<Result<_>>()?;
        Ok(B::new(Expr::Func { func: Func::ArrayCtor, args }, DataType::Array(Box::new(ty))))
    }

    /// `a[i]`, `a[lo:hi]`, and jsonb's `j['key']` / `j[i]`.
    fn subscript(&mut self, b: B, sub: &ast::Subscript) -> Result<B> {
        let int = |this: &mut Self, e: &ast::Expr| -> Result<Expr> {
            let x = this.expr(e)?;
            if !x.unknown
                && !matches!(x.ty, DataType::SmallInt | DataType::Integer | DataType::BigInt)
            {
                return Err(err(
                    "42804",
                    format!("array subscript must have type integer, not {}", x.ty.sql_name()),
                ));
            }
            if x.unknown { coerce(x, &DataType::Integer) } else { Ok(x.expr) }
        };
        match (&b.ty, sub) {
            // int2vector is subscripted from 0, as in PostgreSQL.
            (DataType::Int2Vector, ast::Subscript::Index { index }) if !b.unknown => {
                let i = Expr::Cast { expr: int(self, index)?.boxed(), to: DataType::Integer };
                let one = Expr::Const(Value::Int4(1));
                let i = Expr::Binary { op: BinOp::Add, left: i.boxed(), right: one.boxed() };
                Ok(B::new(
                    Expr::Func { func: Func::Subscript, args: vec![b.expr, i] },
                    DataType::SmallInt,
                ))
            }
            (DataType::Array(e), ast::Subscript::Index { index }) if !b.unknown => {
                let e = (**e).clone();
                let i = int(self, index)?;
                Ok(B::new(Expr::Func { func: Func::Subscript, args: vec![b.expr, i] }, e))
            }
            (DataType::Array(_), ast::Subscript::Slice { lower_bound, upper_bound, stride })
                if !b.unknown =>
            {
                if stride.is_some() {
                    return Err(unsupported("array slices with a stride"));
                }
                let lo = match lower_bound {
                    Some(x) => int(self, x)?,
                    None => Expr::Const(Value::Int8(i64::MIN)),
                };
                let hi = match upper_bound {
                    Some(x) => int(self, x)?,
                    None => Expr::Const(Value::Int8(i64::MAX)),
                };
                let ty = b.ty.clone();
                Ok(B::new(Expr::Func { func: Func::Slice, args: vec![b.expr, lo, hi] }, ty))
            }
            (DataType::Jsonb, ast::Subscript::Index { index }) if !b.unknown => {
                let k = self.expr(index)?;
                let k =
                    if k.unknown || is_text(&k.ty) { coerce(k, &DataType::Text)? } else { k.expr };
                Ok(B::new(
                    Expr::Func { func: Func::JsonGet, args: vec![b.expr, k] },
                    DataType::Jsonb,
                ))
            }
            _ => Err(err(
                "42804",
                format!(
                    "cannot subscript type {} because it does not support subscripting",
                    if b.unknown { "unknown".into() } else { b.ty.sql_name() }
                ),
            )),
        }
    }

    /// A set-returning function in FROM: unnest, json(b)_array_elements[_text],
    /// json(b)_each[_text], json(b)_object_keys, regexp_matches and
    /// regexp_split_to_table.
    fn table_function(
        &mut self,
        name: &str,
        args: &[&ast::Expr],
        alias: Option<&ast::TableAlias>,
    ) -> Result<FromItem> {
        // Arguments see no FROM sibling (no LATERAL).
        self.scopes.push(Scope::default());
        let bound: Result<Vec<B>> = args.iter().map(|e| self.expr(e)).collect();
        self.scopes.pop();
        let mut bound: Vec<B> = bound?.into_iter().map(vector_as_array).collect();
        let sig = |bound: &[B]| no_function(name, bound);
        if let "json_to_record" | "jsonb_to_record" | "json_to_recordset" | "jsonb_to_recordset" =
            name
        {
            return self.json_record_function(name, bound, alias);
        }
        if alias.is_some_and(|a| a.columns.iter().any(|c| c.data_type.is_some())) {
            return Err(err(
                "42601",
                "a column definition list is only allowed for functions returning \"record\"",
            ));
        }
        if let "regexp_matches" | "regexp_split_to_table" = name {
            if !(2..=3).contains(&bound.len()) {
                return Err(sig(&bound));
            }
            let (func, args, ty) = more::regexp_set(name, &mut bound)?;
            let col = match alias {
                Some(a) if a.columns.is_empty() => ident(&a.name),
                _ => name.to_string(),
            };
            let plan = Plan::SetFunction { func, args, width: 1, record: Vec::new() };
            return Ok((plan, name.to_string(), vec![(col, ty)]).with_alias(alias));
        }
        if bound.len() != 1 {
            if name == "unnest" && bound.len() > 1 {
                return Err(unsupported("unnest with several arrays"));
            }
            return Err(sig(&bound));
        }
        let single_name = match alias {
            Some(a) if a.columns.is_empty() => ident(&a.name),
            _ => name.to_string(),
        };
        let json = name.starts_with("json_");
        let jtype = if json { DataType::Json } else { DataType::Jsonb };
        let (func, cols) = match name {
            "unnest" => {
                let b = &bound[0];
                let DataType::Array(e) = &b.ty else {
                    if b.unknown {
                        return Err(err("42725", "function unnest(unknown) is not unique"));
                    }
                    return Err(sig(&bound));
                };
                (SetFunc::Unnest, vec![(single_name, (**e).clone())])
            }
            "_pg_expandarray" => {
                let b = vector_as_array(bound.remove(0));
                let DataType::Array(e) = &b.ty else { return Err(sig(&[b])) };
                if b.unknown {
                    return Err(sig(&[b]));
                }
                let cols = expand_array_fields((**e).clone());
                bound.push(b);
                (SetFunc::ExpandArray { field: None }, cols)
            }
            "jsonb_array_elements" | "json_array_elements" => {
                (SetFunc::ArrayElements { text: false }, vec![("value".into(), jtype.clone())])
            }
            "jsonb_array_elements_text" | "json_array_elements_text" => {
                (SetFunc::ArrayElements { text: true }, vec![("value".into(), DataType::Text)])
            }
            "jsonb_each" | "json_each" => (
                SetFunc::Each { text: false },
                vec![("key".into(), DataType::Text), ("value".into(), jtype.clone())],
            ),
            "jsonb_each_text" | "json_each_text" => (
                SetFunc::Each { text: true },
                vec![("key".into(), DataType::Text), ("value".into(), DataType::Text)],
            ),
            "jsonb_object_keys" | "json_object_keys" => {
                (SetFunc::ObjectKeys, vec![(single_name, DataType::Text)])
            }
            _ => return Err(err("42883", format!("function {name} does not exist"))),
        };
        let arg = bound.remove(0);
        let arg = if matches!(func, SetFunc::Unnest | SetFunc::ExpandArray { .. }) {
            arg.expr
        } else {
            if !arg.unknown && arg.ty != jtype {
                return Err(sig(std::slice::from_ref(&arg)));
            }
            coerce(arg, &jtype)?
        };
        let width = cols.len();
        Ok((
            Plan::SetFunction { func, args: vec![arg], width, record: Vec::new() },
            name.to_string(),
            cols,
        )
            .with_alias(alias))
    }

    /// json(b)_to_record[set](json) AS alias(name type, …): the columns
    /// and their types come from the column definition list.
    fn json_record_function(
        &mut self,
        name: &str,
        mut bound: Vec<B>,
        alias: Option<&ast::TableAlias>,
    ) -> Result<FromItem> {
        if bound.len() != 1 {
            return Err(no_function(name, &bound));
        }
        let required = || {
            err("42601", "a column definition list is required for functions returning \"record\"")
        };
        let columns = alias.map_or(&[][..], |a| &a.columns[..]);
        if columns.is_empty() {
            return Err(required());
        }
        let defs = columns
            .iter()
            .map(|c| match &c.data_type {
                Some(t) => Ok((ident(&c.name), data_type_of(t)?)),
                None => Err(required()),
            })
            .collect::<Result<Vec<_>>>()?;
        let jtype = if name.starts_with("jsonb") { DataType::Jsonb } else { DataType::Json };
        let arg = bound.remove(0);
        if !arg.unknown && arg.ty != jtype {
            return Err(no_function(name, std::slice::from_ref(&arg)));
        }
        let arg = coerce(arg, &jtype)?;
        let func = SetFunc::ToRecord { set: name.ends_with("set") };
        let plan =
            Plan::SetFunction { func, args: vec![arg], width: defs.len(), record: defs.clone() };
        Ok((plan, name.to_string(), defs).with_alias(alias))
    }

    /// `(record).field`. A field of a set-returning call stays a
    /// set-returning call (of just that field), so that the select list
    /// expands it in step with the others, as PostgreSQL does.
    fn field_selection(&mut self, b: B, field: &str) -> Result<B> {
        let DataType::Record(fields) = &b.ty else {
            return Err(err(
                "42809",
                format!(
                    "column notation .{field} applied to type {}, which is not a composite type",
                    b.ty.sql_name()
                ),
            ));
        };
        let Some(k) = fields.iter().position(|(n, _)| n == field) else {
            return Err(err(
                "42703",
                format!("could not identify column \"{field}\" in record data type"),
            ));
        };
        let ty = fields[k].1.clone();
        Ok(match b.expr {
            Expr::Func { func: Func::SetReturning(SetFunc::ExpandArray { field: None }), args } => {
                let func = Func::SetReturning(SetFunc::ExpandArray { field: Some(k as u8) });
                B::new(Expr::Func { func, args }, ty)
            }
            e => B::new(Expr::Func { func: Func::RecordField(k), args: vec![e] }, ty),
        })
    }

    fn subquery(&mut self, q: &ast::Query) -> Result<Subquery> {
        self.frames.push((self.scopes.len(), false));
        let res = self.query(q);
        let (_, correlated) = self.frames.pop().unwrap_or((0, false));
        let q = res?;
        Ok((q.plan, correlated, q.columns))
    }

    fn column(&mut self, table: Option<&str>, name: &str) -> Result<B> {
        let n = self.scopes.len();
        for level in (0..n).rev() {
            let scope = &self.scopes[level];
            if table.is_none()
                && let Some(m) = scope.merged.iter().find(|m| m.name == name)
            {
                if level == n - 1 {
                    return Ok(B::new(m.expr.clone(), m.ty.clone()));
                }
                if let Expr::Column(i) = m.expr {
                    let ty = m.ty.clone();
                    return self.outer_ref(level, i, name, ty);
                }
                return Err(unsupported("an outer reference to a FULL JOIN USING column"));
            }
            let hits: Vec<usize> = scope
                .cols
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.name == name
                        && match table {
                            None => !c.hidden,
                            Some(t) => c.table.as_deref() == Some(t),
                        }
                })
                .map(|(i, _)| i)
                .collect();
            match hits.len() {
                0 => continue,
                1 => {
                    let ty = scope.cols[hits[0]].ty.clone();
                    if level == n - 1 {
                        return Ok(B::new(Expr::Column(hits[0]), ty));
                    }
                    return self.outer_ref(level, hits[0], name, ty);
                }
                _ => return Err(err("42702", format!("column reference \"{name}\" is ambiguous"))),
            }
        }
        if let Some(t) = table {
            let known =
                self.scopes.iter().any(|s| s.cols.iter().any(|c| c.table.as_deref() == Some(t)));
            if !known {
                return Err(err("42P01", format!("missing FROM-clause entry for table \"{t}\"")));
            }
            let e = err("42703", format!("column {t}.{name} does not exist"));
            return Err(self.with_column_hint(e, table, name));
        }
        // No column has the name: a FROM item of that name is a whole-row
        // reference, its columns as one record (`SELECT t FROM t`).
        for level in (0..n).rev() {
            let at: Vec<usize> = self.scopes[level]
                .cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.table.as_deref() == Some(name))
                .map(|(i, _)| i)
                .collect();
            if at.is_empty() {
                continue;
            }
            let mut fields = Vec::with_capacity(at.len());
            let mut exprs = Vec::with_capacity(at.len());
            for i in at {
                let c = &self.scopes[level].cols[i];
                let (cname, ty) = (c.name.clone(), c.ty.clone());
                let b = if level == n - 1 {
                    B::new(Expr::Column(i), ty.clone())
                } else {
                    self.outer_ref(level, i, &cname, ty.clone())?
                };
                exprs.push(b.expr);
                fields.push((cname, ty));
            }
            return Ok(B::new(
                Expr::Func { func: Func::RowCtor, args: exprs },
                DataType::Record(fields),
            ));
        }
        let e = err("42703", format!("column \"{name}\" does not exist"));
        Err(self.with_column_hint(e, None, name))
    }

    /// PostgreSQL's hint for a missing column (`errorMissingColumn`): the
    /// visible columns nearest to `name` by edit distance, at most 3 edits
    /// and at most half of `name`'s length; one nearest column, or two of
    /// different tables, are named; more are no hint.
    fn with_column_hint(&self, e: Error, table: Option<&str>, name: &str) -> Error {
        let limit = (name.chars().count() / 2).min(3);
        let mut best: Vec<(&str, &str)> = Vec::new();
        let mut best_d = usize::MAX;
        for scope in &self.scopes {
            for c in &scope.cols {
                let Some(t) = c.table.as_deref() else { continue };
                if c.hidden || table.is_some_and(|want| want != t) {
                    continue;
                }
                let d = edit_distance(&c.name, name);
                if d > limit || d > best_d {
                    continue;
                }
                if d < best_d {
                    best_d = d;
                    best.clear();
                }
                if !best.contains(&(t, c.name.as_str())) {
                    best.push((t, c.name.as_str()));
                }
            }
        }
        match best.as_slice() {
            [(t, c)] => e.with_hint(format!("Perhaps you meant to reference the column \"{t}.{c}\".")),
            [(t1, c1), (t2, c2)] if t1 != t2 => e.with_hint(format!(
                "Perhaps you meant to reference the column \"{t1}.{c1}\" or the column \"{t2}.{c2}\"."
            )),
            _ => e,
        }
    }

    /// A column of the enclosing query at scope `level`: every subquery in
    /// between is correlated, and each is one outer row at run time.
    fn outer_ref(&mut self, level: usize, index: usize, name: &str, ty: DataType) -> Result<B> {
        for f in self.cte_frames.iter_mut().filter(|f| f.0 > level) {
            f.1 = true;
        }
        let mut depth = 0;
        for f in self.frames.iter_mut().filter(|f| f.0 > level) {
            f.1 = true;
            depth += 1;
        }
        if depth == 0 {
            // A FROM item reading a sibling without LATERAL.
            let table = self.scopes[level].cols[index].table.clone().unwrap_or_default();
            return Err(err(
                "42P01",
                format!(
                    "invalid reference to FROM-clause entry for table \"{table}\" (column \"{name}\"): use LATERAL"
                ),
            ));
        }
        Ok(B::new(Expr::Outer { depth, index }, ty))
    }

    fn binary(&mut self, op: &ast::BinaryOperator, l: B, r: B) -> Result<B> {
        use ast::BinaryOperator as O;
        if let O::PGCustomBinaryOperator(parts) = op {
            // OPERATOR(pg_catalog.~), as psql writes it: the operator itself.
            let named = match parts.as_slice() {
                [op] => Some(op.as_str()),
                [s, op] if s == "pg_catalog" => Some(op.as_str()),
                _ => None,
            };
            let plain = match named {
                Some("~") => O::PGRegexMatch,
                Some("~*") => O::PGRegexIMatch,
                Some("!~") => O::PGRegexNotMatch,
                Some("!~*") => O::PGRegexNotIMatch,
                Some("=") => O::Eq,
                Some("<>") => O::NotEq,
                Some("<") => O::Lt,
                Some("<=") => O::LtEq,
                Some(">") => O::Gt,
                Some(">=") => O::GtEq,
                Some("||") => O::StringConcat,
                Some("+") => O::Plus,
                Some("-") => O::Minus,
                _ => {
                    return Err(err(
                        "42883",
                        format!("operator does not exist: OPERATOR({})", parts.join(".")),
                    ));
                }
            };
            return self.binary(&plain, l, r);
        }
        let (l, r) = match typed_binary(op, l, r)? {
            Ok(b) => return Ok(b),
            Err(pair) => pair,
        };
        if let O::PGExp | O::BitwiseXor = op {
            // `^` is exponentiation in PostgreSQL (double precision).
            return scalar_function("power", vec![l, r]);
        }
        if let O::PGRegexMatch | O::PGRegexIMatch | O::PGRegexNotMatch | O::PGRegexNotIMatch = op {
            let ci = matches!(op, O::PGRegexIMatch | O::PGRegexNotIMatch);
            let func = if ci { Func::RegexIMatch } else { Func::RegexMatch };
            let m = Expr::Func {
                func,
                args: vec![coerce(l, &DataType::Text)?, coerce(r, &DataType::Text)?],
            };
            let m = if matches!(op, O::PGRegexNotMatch | O::PGRegexNotIMatch) {
                Expr::Unary { op: UnOp::Not, expr: m.boxed() }
            } else {
                m
            };
            return Ok(B::new(m, DataType::Boolean));
        }
        let bit = match op {
            O::BitwiseAnd => Some(Func::BitAnd),
            O::BitwiseOr => Some(Func::BitOr),
            O::PGBitwiseXor => Some(Func::BitXor),
            O::PGBitwiseShiftLeft => Some(Func::ShiftLeft),
            O::PGBitwiseShiftRight => Some(Func::ShiftRight),
            _ => None,
        };
        if let Some(func) = bit {
            return bitwise(func, &op.to_string(), l, r);
        }
        let bop = match op {
            O::Plus => BinOp::Add,
            O::Minus => BinOp::Sub,
            O::Multiply => BinOp::Mul,
            O::Divide => BinOp::Div,
            O::Modulo => BinOp::Mod,
            O::StringConcat => BinOp::Concat,
            O::And => BinOp::And,
            O::Or => BinOp::Or,
            other => match cmp_op(other) {
                Some(c) => c,
                None => return Err(unsupported(format!("operator {other}"))),
            },
        };
        match bop {
            BinOp::And | BinOp::Or => {
                let name = if bop == BinOp::And { "AND" } else { "OR" };
                let l = coerce_bool(l, name)?;
                let r = coerce_bool(r, name)?;
                Ok(B::new(
                    Expr::Binary { op: bop, left: l.boxed(), right: r.boxed() },
                    DataType::Boolean,
                ))
            }
            BinOp::Concat => {
                let l = coerce(l, &DataType::Text)?;
                let r = coerce(r, &DataType::Text)?;
                Ok(B::new(
                    Expr::Binary { op: bop, left: l.boxed(), right: r.boxed() },
                    DataType::Text,
                ))
            }
            c if c.is_comparison() => {
                let ty = match (l.unknown, r.unknown) {
                    (true, true) => DataType::Text,
                    (true, false) => r.ty.clone(),
                    (false, true) => l.ty.clone(),
                    _ => common_type(&l.ty, &r.ty)
                        .ok_or_else(|| no_operator(op_name(c), Some(&l.ty), &r.ty))?,
                };
                if ty == DataType::Json {
                    return Err(no_operator(op_name(c), Some(&ty), &ty));
                }
                let l = coerce_cmp(l, &ty)?;
                let r = coerce_cmp(r, &ty)?;
                Ok(B::new(
                    Expr::Binary { op: bop, left: l.boxed(), right: r.boxed() },
                    DataType::Boolean,
                ))
            }
            _ => {
                // Arithmetic.
                let (l, r) = match datetime::arith(bop, l, r)? {
                    Ok(b) => return Ok(b),
                    Err(lr) => lr,
                };
                let (l, r) = match (l.unknown, r.unknown) {
                    (true, true) => {
                        return Err(err(
                            "42725",
                            format!("operator is not unique: unknown {} unknown", op_name(bop)),
                        ));
                    }
                    (true, false) => {
                        let t = r.ty.clone();
                        (coerce_b(l, &t)?, r)
                    }
                    (false, true) => {
                        let t = l.ty.clone();
                        let r = coerce_b(r, &t)?;
                        (l, r)
                    }
                    _ => (l, r),
                };
                if !is_numeric(&l.ty) || !is_numeric(&r.ty) {
                    return Err(no_operator(op_name(bop), Some(&l.ty), &r.ty));
                }
                let ty = arith_type(&l.ty, &r.ty);
                Ok(B::new(
                    Expr::Binary { op: bop, left: l.expr.boxed(), right: r.expr.boxed() },
                    ty,
                ))
            }
        }
    }

    fn function(&mut self, f: &ast::Function) -> Result<B> {
        let name = object_name(&f.name)?.pop().unwrap_or_default();
        if let Some(over) = &f.over {
            return self.window_call(f, &name, over);
        }
        let (args, distinct, clauses): (
            Vec<&ast::FunctionArg>,
            bool,
            &[ast::FunctionArgumentClause],
        ) = match &f.args {
            ast::FunctionArguments::None => (vec![], false, &[]),
            ast::FunctionArguments::List(l) => (
                l.args.iter().collect(),
                matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)),
                &l.clauses,
            ),
            ast::FunctionArguments::Subquery(q) if name == "array" => {
                let (plan, correlated, cols) = self.subquery(q)?;
                if cols.len() != 1 {
                    return Err(err("42601", "subquery must return only one column"));
                }
                if matches!(cols[0].1, DataType::Array(_)) {
                    return Err(crate::types::array::multi_dim());
                }
                let ty = DataType::Array(Box::new(cols[0].1.clone()));
                return Ok(B::new(Expr::ArraySubquery { plan: Box::new(plan), correlated }, ty));
            }
            ast::FunctionArguments::Subquery(_) => return Err(unsupported("function(subquery)")),
        };
        if name == "grouping" && self.grouping.last().is_some_and(|g| g.is_some()) {
            return self.grouping_call(&args);
        }
        if let Some(agg) = agg_func(&name, &args) {
            return self.aggregate(
                agg,
                &name,
                &args,
                distinct,
                f.filter.as_deref(),
                clauses,
                &f.within_group,
            );
        }
        if distinct || f.filter.is_some() {
            return Err(err(
                "42809",
                format!("DISTINCT/FILTER specified, but {name} is not an aggregate function"),
            ));
        }
        if name == "make_interval" {
            return self.make_interval(&args);
        }
        if matches!(name.as_str(), "row_to_json" | "to_json" | "to_jsonb")
            && let [
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(id))),
            ] = args.as_slice()
            && let Some(cols) = self.row_columns(&ident(id))
        {
            if self.grouping.last().is_some_and(|g| g.is_some()) {
                return Err(unsupported("row_to_json of a whole row in a grouped query"));
            }
            let mut a = Vec::with_capacity(cols.len() * 2);
            for (n, i) in cols {
                a.push(Expr::Const(Value::Text(n)));
                a.push(Expr::Column(i));
            }
            if name == "to_jsonb" {
                return Ok(B::new(
                    Expr::Func { func: Func::JsonbBuildObject, args: a },
                    DataType::Jsonb,
                ));
            }
            return Ok(B::new(Expr::Func { func: Func::RowToJson, args: a }, DataType::Json));
        }
        let mut bs = Vec::new();
        for a in &args {
            match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => bs.push(self.expr(e)?),
                other => return Err(unsupported(format!("argument {other}"))),
            }
        }
        scalar_function(&name, bs)
    }

    /// The columns (name, position) of FROM item `alias` in the current
    /// query, for a whole-row reference; `None` if `alias` names a column.
    fn row_columns(&self, alias: &str) -> Option<Vec<(String, usize)>> {
        let scope = self.scopes.last()?;
        if scope.cols.iter().any(|c| c.name == alias && !c.hidden) {
            return None;
        }
        let cols: Vec<(String, usize)> = scope
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.table.as_deref() == Some(alias))
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        (!cols.is_empty()).then_some(cols)
    }

    /// `f(...) OVER (PARTITION BY … ORDER BY … frame)`: registered in the
    /// SELECT's window list; reads as a column placed after the input's.
    /// One end of a window frame: ROWS and GROUPS take a non-negative
    /// integer constant; RANGE an offset of the single ORDER BY value's
    /// type (an interval for date/time values).
    fn frame_bound(
        &mut self,
        b: &ast::WindowFrameBound,
        start: bool,
        units: FrameUnits,
        order: &[DataType],
    ) -> Result<FrameBound> {
        let (offset, preceding) = match b {
            ast::WindowFrameBound::CurrentRow => return Ok(FrameBound::CurrentRow),
            ast::WindowFrameBound::Preceding(None) => {
                if !start {
                    return Err(err("42P20", "frame end cannot be UNBOUNDED PRECEDING"));
                }
                return Ok(FrameBound::UnboundedPreceding);
            }
            ast::WindowFrameBound::Following(None) => {
                if start {
                    return Err(err("42P20", "frame start cannot be UNBOUNDED FOLLOWING"));
                }
                return Ok(FrameBound::UnboundedFollowing);
            }
            ast::WindowFrameBound::Preceding(Some(e)) => (e.as_ref(), true),
            ast::WindowFrameBound::Following(Some(e)) => (e.as_ref(), false),
        };
        let mut cols = Vec::new();
        let bound = self.expr(offset)?;
        bound.expr.columns_used(&mut cols);
        if !cols.is_empty() || matches!(bound.expr, Expr::Outer { .. }) {
            return Err(err("42P10", "argument of a frame offset must not contain variables"));
        }
        if units == FrameUnits::Range {
            let [key] = order else {
                return Err(err(
                    "42P20",
                    "RANGE with offset PRECEDING/FOLLOWING requires exactly one ORDER BY column",
                ));
            };
            let offset_ty = match key {
                DataType::Date
                | DataType::Timestamp
                | DataType::TimestampTz
                | DataType::Time
                | DataType::Interval => DataType::Interval,
                t if is_numeric(t) => t.clone(),
                t => {
                    return Err(err(
                        "0A000",
                        format!(
                            "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {}",
                            t.sql_name()
                        ),
                    ));
                }
            };
            if !bound.unknown && !is_numeric(&bound.ty) && bound.ty != offset_ty {
                return Err(err(
                    "42883",
                    format!(
                        "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {} and offset type {}",
                        key.sql_name(),
                        bound.ty.sql_name()
                    ),
                ));
            }
            let e = if bound.unknown || offset_ty == DataType::Interval {
                coerce(bound, &offset_ty)?
            } else {
                bound.expr
            };
            return Ok(if preceding {
                FrameBound::ValuePreceding(e)
            } else {
                FrameBound::ValueFollowing(e)
            });
        }
        let e = coerce(bound, &DataType::BigInt)?;
        let e = match e {
            Expr::Cast { expr, to } => match *expr {
                Expr::Const(v) => Expr::Const(cast::cast(v, &to)?),
                other => Expr::Cast { expr: Box::new(other), to },
            },
            Expr::Unary { op: UnOp::Neg, expr } if matches!(*expr, Expr::Const(_)) => {
                return Err(err("22013", "frame starting offset must not be negative"));
            }
            other => other,
        };
        let k = match e {
            Expr::Const(Value::Int8(k)) if k >= 0 => k as u64,
            Expr::Const(Value::Int8(_)) => {
                return Err(err("22013", "frame starting offset must not be negative"));
            }
            Expr::Const(Value::Null) => {
                return Err(err("22004", "frame starting offset must not be null"));
            }
            _ => return Err(unsupported("frame offsets that are not constants")),
        };
        Ok(if preceding { FrameBound::Preceding(k) } else { FrameBound::Following(k) })
    }

    /// A row constructor's fields compared with a subquery's columns: the
    /// subquery bound (42601 unless it has as many columns as the row has
    /// fields), and the fields, each cast to the type it shares with its
    /// column, as one `RowCtor` expression.
    fn row_and_subquery(
        &mut self,
        items: &[ast::Expr],
        q: &ast::Query,
        what: &str,
    ) -> Result<(Expr, Plan, bool)> {
        let (plan, correlated, cols) = self.subquery(q)?;
        if cols.len() != items.len() {
            let few = if cols.len() < items.len() { "few" } else { "many" };
            return Err(err("42601", format!("subquery has too {few} columns")));
        }
        let mut exprs = Vec::with_capacity(items.len());
        for (x, (_, cty)) in items.iter().zip(&cols) {
            let x = self.expr(x)?;
            let ty = if x.unknown {
                cty.clone()
            } else {
                common_type(&x.ty, cty).ok_or_else(|| mismatch(what, &x.ty, cty))?
            };
            exprs.push(coerce_cmp(x, &ty)?);
        }
        Ok((Expr::Func { func: Func::RowCtor, args: exprs }, plan, correlated))
    }

    /// Forbids window calls at this level (for `why`) until
    /// `unban_windows`, returning what that restores.
    fn ban_windows(&mut self, why: (&'static str, &'static str)) -> WindowsSaved {
        let slot = self.windows.last_mut().and_then(|w| w.take());
        (slot, self.window_ban.replace(why))
    }

    fn unban_windows(&mut self, (slot, ban): WindowsSaved) {
        if let Some(w) = self.windows.last_mut()
            && slot.is_some()
        {
            *w = slot;
        }
        self.window_ban = ban;
    }

    fn window_call(&mut self, f: &ast::Function, name: &str, over: &ast::WindowType) -> Result<B> {
        use super::{Frame, WindowCall, WindowFunc};
        let spec = match over {
            ast::WindowType::WindowSpec(spec) if spec.window_name.is_none() => spec.clone(),
            ast::WindowType::WindowSpec(_) => {
                return Err(unsupported("a window that extends a named window"));
            }
            ast::WindowType::NamedWindow(id) => {
                let wname = ident(id);
                self.named_windows
                    .last()
                    .and_then(|m| m.get(&wname))
                    .cloned()
                    .ok_or_else(|| err("42704", format!("window \"{wname}\" does not exist")))?
            }
        };
        if !matches!(self.windows.last(), Some(Some(_))) {
            if let Some((code, msg)) = self.window_ban {
                return Err(err(code, msg));
            }
            return Err(err("42P20", format!("window functions are not allowed here ({name})")));
        }
        // Window calls inside this one's arguments, PARTITION BY or ORDER
        // BY are nested calls, which PostgreSQL refuses.
        let saved = self.ban_windows(("42P20", "window function calls cannot be nested"));
        let res = (|| {
            let args: Vec<&ast::FunctionArg> = match &f.args {
                ast::FunctionArguments::List(l) => l.args.iter().collect(),
                _ => vec![],
            };
            let mut bound = Vec::new();
            for a in &args {
                match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                        bound.push(self.expr(e)?)
                    }
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => {}
                    other => return Err(unsupported(format!("argument {other}"))),
                }
            }
            let nargs = bound.len();
            let arg_ty =
                |i: usize| bound.get(i).map(|b: &B| b.ty.clone()).unwrap_or(DataType::Text);
            let (func, ty) = match (name, nargs) {
                ("row_number", 0) => (WindowFunc::RowNumber, DataType::BigInt),
                ("rank", 0) => (WindowFunc::Rank, DataType::BigInt),
                ("dense_rank", 0) => (WindowFunc::DenseRank, DataType::BigInt),
                ("percent_rank", 0) => (WindowFunc::PercentRank, DataType::Double),
                ("cume_dist", 0) => (WindowFunc::CumeDist, DataType::Double),
                ("ntile", 1) => (WindowFunc::Ntile, DataType::Integer),
                ("lag", 1..=3) => (WindowFunc::Lag, arg_ty(0)),
                ("lead", 1..=3) => (WindowFunc::Lead, arg_ty(0)),
                ("first_value", 1) => (WindowFunc::FirstValue, arg_ty(0)),
                ("last_value", 1) => (WindowFunc::LastValue, arg_ty(0)),
                ("nth_value", 2) => (WindowFunc::NthValue, arg_ty(0)),
                _ => {
                    // Any aggregate over the rows of the frame. Its arguments were
                    // bound above in the query's own context, so in an aggregating
                    // query they may use its aggregates: sum(sum(x)) OVER ().
                    let Some(afunc) = agg_func(name, &args) else {
                        return Err(err(
                            "42809",
                            format!(
                                "OVER specified, but {name} is not a window function nor an aggregate function"
                            ),
                        ));
                    };
                    let distinct = matches!(&f.args, ast::FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)));
                    let filter = match f.filter.as_deref() {
                        Some(x) => Some(coerce_bool(self.expr(x)?, "FILTER")?),
                        None => None,
                    };
                    let arg_ty = bound
                        .first()
                        .map(|b| if b.unknown { DataType::Text } else { b.ty.clone() });
                    let data_type = agg_type(afunc, &arg_ty, name)?;
                    let mut it = std::mem::take(&mut bound).into_iter();
                    let arg = match it.next() {
                        Some(b) => Some(finish_unknown(b)?),
                        None => None,
                    };
                    let extra = match it.next() {
                        Some(b) => Some(coerce(b, &DataType::Text)?),
                        None => None,
                    };
                    if matches!(
                        afunc,
                        AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode
                    ) {
                        return Err(unsupported(format!("{name} as a window function")));
                    }
                    let call = AggCall {
                        func: afunc,
                        arg,
                        extra,
                        distinct,
                        filter,
                        order_by: Vec::new(),
                        data_type: data_type.clone(),
                    };
                    (WindowFunc::Agg(call), data_type)
                }
            };
            let mut args_exprs = Vec::new();
            if !matches!(func, WindowFunc::Agg(_)) {
                for (i, b) in bound.into_iter().enumerate() {
                    // lag/lead offsets and ntile/nth_value counts are integers;
                    // a default takes the value's type.
                    let target = match (&func, i) {
                        (WindowFunc::Ntile, 0)
                        | (WindowFunc::NthValue, 1)
                        | (WindowFunc::Lag | WindowFunc::Lead, 1) => DataType::BigInt,
                        (WindowFunc::Lag | WindowFunc::Lead, 2) => ty.clone(),
                        _ => {
                            args_exprs.push(finish_unknown(b)?);
                            continue;
                        }
                    };
                    args_exprs.push(coerce(b, &target)?);
                }
            }
            self.window_ban =
                Some(("42P20", "window functions are not allowed in window definitions"));
            let partition = spec
                .partition_by
                .iter()
                .map(|e| self.expr_typed(e).map(|x| x.0))
                .collect::<Result<Vec<_>>>()?;
            let mut order = Vec::new();
            let mut order_types = Vec::new();
            for o in &spec.order_by {
                let (desc, nulls_first) = order_opts(o)?;
                let (expr, ty) = self.expr_typed(&o.expr)?;
                order.push(SortKey { expr, desc, nulls_first });
                order_types.push(ty);
            }
            let frame = match &spec.window_frame {
                None => Frame {
                    units: FrameUnits::Range,
                    start: FrameBound::UnboundedPreceding,
                    end: FrameBound::CurrentRow,
                },
                Some(wf) => {
                    let units = match wf.units {
                        ast::WindowFrameUnits::Rows => FrameUnits::Rows,
                        ast::WindowFrameUnits::Range => FrameUnits::Range,
                        ast::WindowFrameUnits::Groups => FrameUnits::Groups,
                    };
                    if units == FrameUnits::Groups && order.is_empty() {
                        return Err(err("42P20", "GROUPS mode requires an ORDER BY clause"));
                    }
                    let start = self.frame_bound(&wf.start_bound, true, units, &order_types)?;
                    let end = match &wf.end_bound {
                        Some(e) => self.frame_bound(e, false, units, &order_types)?,
                        None => FrameBound::CurrentRow,
                    };
                    let rank = |b: &FrameBound| match b {
                        FrameBound::UnboundedPreceding => 0,
                        FrameBound::Preceding(_) | FrameBound::ValuePreceding(_) => 1,
                        FrameBound::CurrentRow => 2,
                        FrameBound::Following(_) | FrameBound::ValueFollowing(_) => 3,
                        FrameBound::UnboundedFollowing => 4,
                    };
                    if rank(&start) == 2 && rank(&end) == 1 {
                        return Err(err(
                            "42P20",
                            "frame starting from current row cannot have preceding rows",
                        ));
                    }
                    if rank(&start) == 3 && rank(&end) < 3 {
                        return Err(err(
                            "42P20",
                            "frame starting from following row cannot have preceding rows",
                        ));
                    }
                    Frame { units, start, end }
                }
            };
            Ok((func, args_exprs, partition, order, frame, ty))
        })();
        self.unban_windows(saved);
        let (func, args_exprs, partition, order, frame, ty) = res?;
        let calls = self
            .windows
            .last_mut()
            .and_then(|w| w.as_mut())
            .ok_or_else(|| Error::Internal("windows".into()))?;
        calls.push(WindowCall { func, args: args_exprs, partition, order, frame });
        Ok(B::new(Expr::Column(WINDOW_BASE + calls.len() - 1), ty))
    }

    /// GROUPING(a, b, …): a bit per argument (the first is the highest),
    /// set when the current grouping set does not group by it.
    fn grouping_call(&mut self, args: &[&ast::FunctionArg]) -> Result<B> {
        if args.is_empty() || args.len() > 31 {
            return Err(err("54011", "GROUPING must have fewer than 32 arguments"));
        }
        let mut idx = Vec::new();
        for a in args {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                return Err(unsupported(format!("GROUPING argument {a}")));
            };
            let b = self.expr_guarded(e);
            match b.map(|b| b.expr) {
                Ok(Expr::Column(i)) => idx.push(i),
                _ => {
                    return Err(err(
                        "42803",
                        "arguments to GROUPING must be grouping expressions of the associated query level",
                    ));
                }
            }
        }
        let g = self
            .grouping
            .last()
            .and_then(|g| g.as_ref())
            .ok_or_else(|| Error::Internal("grouping".into()))?;
        let mask = |set: Option<&Vec<usize>>| {
            let mut m = 0i32;
            for &i in &idx {
                m <<= 1;
                if set.is_some_and(|s| !s.contains(&i)) {
                    m |= 1;
                }
            }
            Expr::Const(Value::Int4(m))
        };
        if g.sets.is_empty() {
            return Ok(B::new(mask(None), DataType::Integer));
        }
        let set_col = Expr::Column(g.keys.len() - 1);
        let whens = g
            .sets
            .iter()
            .enumerate()
            .map(|(si, set)| (Expr::Const(Value::Int4(si as i32)), mask(Some(set))))
            .collect();
        Ok(B::new(
            Expr::Case { operand: Some(Box::new(set_col)), whens, else_: None },
            DataType::Integer,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &mut self,
        func: AggFunc,
        name: &str,
        args: &[&ast::FunctionArg],
        distinct: bool,
        filter: Option<&ast::Expr>,
        clauses: &[ast::FunctionArgumentClause],
        within_group: &[ast::OrderByExpr],
    ) -> Result<B> {
        let mut order_ast: Vec<&ast::OrderByExpr> = Vec::new();
        for c in clauses {
            match c {
                ast::FunctionArgumentClause::OrderBy(o) => order_ast.extend(o.iter()),
                other => return Err(unsupported(format!("{other} inside an aggregate"))),
            }
        }
        let ordered_set =
            matches!(func, AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode);
        if ordered_set {
            let want = if func == AggFunc::Mode { 0 } else { 1 };
            if within_group.len() != 1 || args.len() != want || distinct || !order_ast.is_empty() {
                return Err(err(
                    "42883",
                    format!(
                        "{name} is an ordered-set aggregate: write {name}({}) WITHIN GROUP (ORDER BY expression)",
                        if want == 1 { "fraction" } else { "" }
                    ),
                ));
            }
        } else if !within_group.is_empty() {
            return Err(err(
                "42883",
                format!("WITHIN GROUP is specified, but {name} is not an ordered-set aggregate"),
            ));
        }
        // Arguments are bound without the grouping (they read input rows).
        let Some(slot) = self.grouping.last_mut() else {
            return Err(err("42803", format!("aggregate function {name} is not allowed here")));
        };
        let Some(g) = slot.take() else {
            return Err(err("42803", format!("aggregate functions are not allowed here ({name})")));
        };
        let saved = self.ban_windows((
            "42803",
            "aggregate function calls cannot contain window function calls",
        ));
        let res = (|| {
            let mut bound = Vec::new();
            for a in args {
                match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                        if contains_aggregate(e) {
                            return Err(err("42803", "aggregate function calls cannot be nested"));
                        }
                        bound.push(self.expr(e)?)
                    }
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => {}
                    other => return Err(unsupported(format!("argument {other}"))),
                }
            }
            self.window_ban = Some(("42P20", "window functions are not allowed in FILTER"));
            let filter = match filter {
                Some(f) => Some(coerce_bool(self.expr(f)?, "FILTER")?),
                None => None,
            };
            self.window_ban =
                Some(("42803", "aggregate function calls cannot contain window function calls"));
            let mut order = Vec::new();
            for o in order_ast.iter().copied().chain(within_group) {
                if contains_aggregate(&o.expr) {
                    return Err(err("42803", "aggregate function calls cannot be nested"));
                }
                let (desc, nulls_first) = order_opts(o)?;
                let b = self.expr(&o.expr)?;
                order.push((b, desc, nulls_first));
            }
            Ok((bound, filter, order))
        })();
        self.unban_windows(saved);
        let slot = self.grouping.last_mut().ok_or_else(|| Error::Internal("grouping".into()))?;
        *slot = Some(g);
        let (mut bound, filter, mut order) = res?;
        if ordered_set {
            // The sorted expression is the aggregated value; the fraction
            // is a double precision constant per group.
            let (key, desc, nulls_first) = order.remove(0);
            let key = if func == AggFunc::PercentileCont {
                if !is_numeric(&key.ty) && !key.unknown {
                    return Err(err(
                        "42883",
                        format!(
                            "function {name}(double precision, {}) does not exist",
                            key.ty.sql_name()
                        ),
                    ));
                }
                B::new(coerce(key, &DataType::Double)?, DataType::Double)
            } else {
                key
            };
            let key_expr = finish_unknown(key.clone())?;
            let fraction = bound.pop().map(|f| coerce(f, &DataType::Double)).transpose()?;
            let data_type = key.ty.clone();
            let call = AggCall {
                func,
                arg: Some(key_expr.clone()),
                extra: fraction,
                distinct: false,
                filter,
                order_by: vec![SortKey { expr: key_expr, desc, nulls_first }],
                data_type: data_type.clone(),
            };
            return self.add_agg(call, data_type);
        }
        if distinct && !order.is_empty() {
            // PostgreSQL: the ORDER BY of a DISTINCT aggregate may only
            // sort by the argument.
            let arg = bound.first().map(|b| &b.expr);
            if order.iter().any(|(o, _, _)| Some(&o.expr) != arg) {
                return Err(err(
                    "42P10",
                    "in an aggregate with DISTINCT, ORDER BY expressions must appear in argument list",
                ));
            }
        }
        let order_by = order
            .into_iter()
            .map(|(b, desc, nulls_first)| {
                Ok(SortKey { expr: finish_unknown(b)?, desc, nulls_first })
            })
            .collect::<Result<Vec<_>>>()?;
        let arg_ty = bound.first().map(|b| if b.unknown { DataType::Text } else { b.ty.clone() });
        let data_type = agg_type(func, &arg_ty, name)?;
        let arg = if bound.is_empty() { None } else { Some(finish_unknown(bound.remove(0))?) };
        let extra = if bound.is_empty() {
            None
        } else if matches!(func, AggFunc::JsonObjectAgg | AggFunc::JsonbObjectAgg) {
            Some(finish_unknown(bound.remove(0))?)
        } else {
            Some(coerce(bound.remove(0), &DataType::Text)?)
        };
        let mut order_by = order_by;
        if distinct
            && order_by.is_empty()
            && matches!(
                func,
                AggFunc::StringAgg | AggFunc::ArrayAgg | AggFunc::JsonAgg | AggFunc::JsonbAgg
            )
            && let Some(a) = &arg
        {
            // PostgreSQL sorts a DISTINCT aggregate's input to find the
            // duplicates, so the values come out in that order.
            order_by.push(SortKey { expr: a.clone(), desc: false, nulls_first: false });
        }
        let call =
            AggCall { func, arg, extra, distinct, filter, order_by, data_type: data_type.clone() };
        self.add_agg(call, data_type)
    }

    /// Registers an aggregate call of the current grouping (once per
    /// distinct call) and returns the expression that reads its result.
    fn add_agg(&mut self, call: AggCall, data_type: DataType) -> Result<B> {
        let g = self
            .grouping
            .last_mut()
            .and_then(|g| g.as_mut())
            .ok_or_else(|| Error::Internal("grouping".into()))?;
        let idx = match g.aggs.iter().position(|a| *a == call) {
            Some(i) => i,
            None => {
                g.aggs.push(call);
                g.aggs.len() - 1
            }
        };
        Ok(B::new(Expr::Column(g.keys.len() + idx), data_type))
    }
}

// ---------------------------------------------------------------- helpers

trait WithAlias {
    fn with_alias(self, alias: Option<&ast::TableAlias>)
    -> (Plan, String, Vec<(String, DataType)>);
}

impl WithAlias for (Plan, String, Vec<(String, DataType)>) {
    fn with_alias(
        self,
        alias: Option<&ast::TableAlias>,
    ) -> (Plan, String, Vec<(String, DataType)>) {
        let (plan, mut name, mut cols) = self;
        if let Some(a) = alias {
            name = ident(&a.name);
            for (i, c) in a.columns.iter().enumerate() {
                if let Some(col) = cols.get_mut(i) {
                    col.0 = ident(&c.name);
                }
            }
        }
        (plan, name, cols)
    }
}

/// 42P10 when a FROM item's alias names more columns than the item has
/// (`width`, with WITH ORDINALITY's column); fewer rename the first ones.
fn alias_fits(f: &ast::TableFactor, width: usize) -> Result<()> {
    let alias = match f {
        ast::TableFactor::Table { alias, .. }
        | ast::TableFactor::Derived { alias, .. }
        | ast::TableFactor::UNNEST { alias, .. }
        | ast::TableFactor::NestedJoin { alias, .. }
        | ast::TableFactor::Function { alias, .. } => alias.as_ref(),
        _ => None,
    };
    match alias {
        Some(a) if a.columns.len() > width => Err(err(
            "42P10",
            format!(
                "table \"{}\" has {width} columns available but {} columns specified",
                ident(&a.name),
                a.columns.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn plan_width_of_project(p: &Plan) -> usize {
    match p {
        Plan::Project { exprs, .. } => exprs.len(),
        _ => 0,
    }
}

fn plan_width_of(p: &Plan) -> usize {
    match p {
        Plan::Project { exprs, .. } => exprs.len(),
        Plan::Sort { input, .. }
        | Plan::Distinct { input }
        | Plan::DistinctOn { input, .. }
        | Plan::Limit { input, .. } => plan_width_of(input),
        _ => 0,
    }
}

/// An ORDER BY or GROUP BY item that is a literal, as PostgreSQL reads it:
/// an integer (a negative one too, which its grammar folds into the
/// constant; parentheses do not matter) is an output column position;
/// any other literal (a string, a float, a number past `integer`, a
/// boolean, NULL) is 42601. `None`: an expression, to sort or group by.
fn position_literal(e: &ast::Expr, clause: &str) -> Result<Option<i64>> {
    let (v, negative) = match e {
        ast::Expr::Nested(inner) => return position_literal(inner, clause),
        ast::Expr::Value(v) => (&v.value, false),
        ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => match expr.as_ref() {
            ast::Expr::Value(v) if matches!(v.value, ast::Value::Number(..)) => (&v.value, true),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    match v {
        // `$1` is a parameter, an expression.
        ast::Value::Placeholder(_) => Ok(None),
        ast::Value::Number(n, _) => match n.parse::<i32>() {
            Ok(i) => Ok(Some(if negative { -i64::from(i) } else { i64::from(i) })),
            Err(_) => Err(err("42601", format!("non-integer constant in {clause}"))),
        },
        _ => Err(err("42601", format!("non-integer constant in {clause}"))),
    }
}

/// ASC/DESC and NULLS FIRST/LAST of a sort key. `USING <` is ASC and
/// `USING >` DESC (also as `OPERATOR(pg_catalog.>)`), as PostgreSQL's
/// btree ordering operators; any other operator is 42809.
fn order_opts(o: &ast::OrderByExpr) -> Result<(bool, bool)> {
    let desc = match &o.options.sort {
        Some(ast::OrderBySort::Desc) => true,
        Some(ast::OrderBySort::Using(op)) => {
            let name = op.to_string();
            let bare = name.strip_prefix("pg_catalog.").unwrap_or(&name);
            match bare {
                "<" => false,
                ">" => true,
                _ => {
                    return Err(err(
                        "42809",
                        format!("operator {name} is not a valid ordering operator"),
                    )
                    .with_hint(
                        "Ordering operators must be \"<\" or \">\" members of btree operator families.",
                    ));
                }
            }
        }
        _ => false,
    };
    // PostgreSQL: NULLS LAST for ASC, NULLS FIRST for DESC, by default.
    let nulls_first = o.options.nulls_first.unwrap_or(desc);
    Ok((desc, nulls_first))
}

fn and(a: Expr, b: Expr) -> Expr {
    if a == Expr::Const(Value::Bool(true)) {
        return b;
    }
    Expr::Binary { op: BinOp::And, left: a.boxed(), right: b.boxed() }
}

pub(crate) fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary { op: BinOp::And, left, right } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        other => out.push(other),
    }
}

fn cast_col(i: usize, from: &DataType, to: &DataType) -> Expr {
    if from == to {
        Expr::Column(i)
    } else {
        Expr::Cast { expr: Expr::Column(i).boxed(), to: to.clone() }
    }
}

/// The column name PostgreSQL gives an unaliased select-list expression.
fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(ids) => ids.last().map(ident).unwrap_or_default(),
        ast::Expr::Function(f) => {
            object_name(&f.name).ok().and_then(|mut v| v.pop()).unwrap_or_default()
        }
        ast::Expr::Cast { expr, data_type, .. } => match expr.as_ref() {
            ast::Expr::Identifier(_)
            | ast::Expr::CompoundIdentifier(_)
            | ast::Expr::CompoundFieldAccess { .. } => output_name(expr),
            _ => data_type_of(data_type)
                .map(|t| pg_type_label(&t))
                .unwrap_or_else(|_| "?column?".into()),
        },
        ast::Expr::Nested(inner) => output_name(inner),
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Array(_) => "array".into(),
        ast::Expr::CompoundFieldAccess { root, access_chain } => {
            match access_chain.iter().rev().find_map(|a| match a {
                ast::AccessExpr::Dot(ast::Expr::Identifier(i)) => Some(ident(i)),
                _ => None,
            }) {
                Some(name) => name,
                None => output_name(root),
            }
        }
        ast::Expr::Exists { .. } => "exists".into(),
        ast::Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.first() {
                Some(ast::SelectItem::UnnamedExpr(e)) => output_name(e),
                Some(ast::SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        ast::Expr::Ceil { .. } => "ceil".into(),
        ast::Expr::Floor { .. } => "floor".into(),
        ast::Expr::Substring { shorthand: true, .. } => "substr".into(),
        ast::Expr::Substring { .. } => "substring".into(),
        ast::Expr::Trim { .. } => "btrim".into(),
        ast::Expr::Position { .. } => "position".into(),
        _ => "?column?".into(),
    }
}

/// The name of a type as a column label (`SELECT 1::int` is "int4").
fn pg_type_label(t: &DataType) -> String {
    match t {
        DataType::SmallInt => "int2".into(),
        DataType::Integer => "int4".into(),
        DataType::BigInt => "int8".into(),
        DataType::Real => "float4".into(),
        DataType::Double => "float8".into(),
        DataType::Numeric(_) => "numeric".into(),
        DataType::Boolean => "bool".into(),
        DataType::Varchar(_) => "varchar".into(),
        DataType::Char(_) => "bpchar".into(),
        DataType::Array(e) => pg_type_label(e),
        other => other.sql_name(),
    }
}

fn is_lateral(f: &ast::TableFactor) -> bool {
    matches!(f, ast::TableFactor::Derived { lateral: true, .. })
}

/// A function call in FROM (`generate_series(…)`, `unnest(…)`).
fn is_function(f: &ast::TableFactor) -> bool {
    matches!(f, ast::TableFactor::Table { args: Some(_), .. } | ast::TableFactor::UNNEST { .. })
}

fn is_aggregate_call(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Function(f) if f.over.is_none() => {
            let name = object_name(&f.name).ok().and_then(|mut v| v.pop()).unwrap_or_default();
            let args: Vec<&ast::FunctionArg> = match &f.args {
                ast::FunctionArguments::List(l) => l.args.iter().collect(),
                _ => vec![],
            };
            // GROUPING() is not an aggregate, but like one it reads the
            // grouped row, not the input.
            name == "grouping" || agg_func(&name, &args).is_some()
        }
        _ => false,
    }
}

/// Whether an aggregate call appears in `e` (not inside subqueries).
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    use ast::Expr as E;
    // An explicit stack: a 10,000-term OR must not recurse 10,000 deep.
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if is_aggregate_call(e) {
            return true;
        }
        match e {
            E::Nested(x) | E::UnaryOp { expr: x, .. } | E::IsNull(x) | E::IsNotNull(x) => {
                stack.push(x)
            }
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => stack.push(x),
            E::IsUnknown(x) | E::IsNotUnknown(x) => stack.push(x),
            E::Cast { expr, .. } | E::Ceil { expr, .. } | E::Floor { expr, .. } => stack.push(expr),
            E::BinaryOp { left, right, .. }
            | E::IsDistinctFrom(left, right)
            | E::IsNotDistinctFrom(left, right) => {
                stack.push(left);
                stack.push(right);
            }
            E::In { expr, target, .. } => {
                stack.push(expr);
                if let ast::InTarget::List(list) = target {
                    stack.extend(list.iter());
                }
            }
            E::AnyOp { left, right, .. } | E::AllOp { left, right, .. } => {
                stack.push(left);
                if !matches!(right.as_ref(), E::Subquery(_)) {
                    stack.push(right);
                }
            }
            E::Array(a) => stack.extend(a.elem.iter()),
            E::CompoundFieldAccess { root, .. } => stack.push(root),
            E::Between { expr, low, high, .. } => stack.extend([&**expr, &**low, &**high]),
            E::Like { expr, pattern, .. } | E::ILike { expr, pattern, .. } => {
                stack.extend([&**expr, &**pattern])
            }
            E::Case { operand, conditions, else_result, .. } => {
                stack.extend(operand.as_deref());
                for c in conditions {
                    stack.extend([&c.condition, &c.result]);
                }
                stack.extend(else_result.as_deref());
            }
            E::Function(f) => {
                if let ast::FunctionArguments::List(l) = &f.args {
                    for a in &l.args {
                        if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) = a {
                            stack.push(x);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// The result type of aggregate `func` over an argument of type `arg_ty`.
/// Expands GROUP BY's ROLLUP, CUBE and GROUPING SETS: the distinct key
/// expressions, and (when any of those appear) the sets, as indices into
/// them: the cross product of each item's alternatives, as PostgreSQL
/// defines it.
#[allow(clippy::type_complexity)]
fn grouping_sets(items: &[ast::Expr]) -> Result<(Vec<ast::Expr>, Option<Vec<Vec<usize>>>)> {
    let special = items.iter().any(|e| {
        matches!(e, ast::Expr::Rollup(_) | ast::Expr::Cube(_) | ast::Expr::GroupingSets(_))
    });
    if !special {
        return Ok((items.to_vec(), None));
    }
    let mut exprs: Vec<ast::Expr> = Vec::new();
    let mut id = |e: &ast::Expr| -> usize {
        match exprs.iter().position(|x| x == e) {
            Some(i) => i,
            None => {
                exprs.push(e.clone());
                exprs.len() - 1
            }
        }
    };
    let mut sets: Vec<Vec<usize>> = vec![Vec::new()];
    for item in items {
        let alternatives: Vec<Vec<usize>> = match item {
            ast::Expr::Rollup(groups) => (0..=groups.len())
                .rev()
                .map(|k| groups[..k].iter().flatten().map(&mut id).collect())
                .collect(),
            ast::Expr::Cube(groups) => {
                if groups.len() > 12 {
                    return Err(err("54001", "CUBE is limited to 12 elements"));
                }
                let n = groups.len();
                (0..1u32 << n)
                    .rev()
                    .map(|mask| {
                        (0..n)
                            .filter(|i| mask & (1 << (n - 1 - i)) != 0)
                            .flat_map(|i| groups[i].iter())
                            .map(&mut id)
                            .collect()
                    })
                    .collect()
            }
            ast::Expr::GroupingSets(groups) => {
                groups.iter().map(|g| g.iter().map(&mut id).collect()).collect()
            }
            ast::Expr::Nested(inner) => vec![vec![id(inner)]],
            other => vec![vec![id(other)]],
        };
        let mut next = Vec::with_capacity(sets.len() * alternatives.len());
        for s in &sets {
            for a in &alternatives {
                let mut x = s.clone();
                x.extend(a.iter().copied());
                next.push(x);
            }
        }
        if next.len() > 4096 {
            return Err(err("54001", "too many grouping sets present (maximum 4096)"));
        }
        sets = next;
    }
    Ok((exprs, Some(sets)))
}

fn agg_type(func: AggFunc, arg_ty: &Option<DataType>, name: &str) -> Result<DataType> {
    Ok(match (func, &arg_ty) {
        (AggFunc::CountStar | AggFunc::Count, _) => DataType::BigInt,
        (AggFunc::Sum, Some(DataType::SmallInt | DataType::Integer)) => DataType::BigInt,
        (AggFunc::Sum, Some(DataType::BigInt | DataType::Numeric(_))) => DataType::Numeric(None),
        (AggFunc::Sum, Some(DataType::Real)) => DataType::Real,
        (AggFunc::Sum, Some(DataType::Double)) => DataType::Double,
        (AggFunc::Avg, Some(DataType::Real | DataType::Double)) => DataType::Double,
        (AggFunc::Avg, Some(t)) if is_numeric(t) => DataType::Numeric(None),
        (
            AggFunc::StddevPop | AggFunc::StddevSamp | AggFunc::VarPop | AggFunc::VarSamp,
            Some(DataType::Real | DataType::Double),
        ) => DataType::Double,
        (
            AggFunc::StddevPop | AggFunc::StddevSamp | AggFunc::VarPop | AggFunc::VarSamp,
            Some(t),
        ) if is_numeric(t) => DataType::Numeric(None),
        (AggFunc::Min | AggFunc::Max, Some(t)) => t.clone(),
        (AggFunc::Sum | AggFunc::Avg, Some(DataType::Interval)) => DataType::Interval,
        (AggFunc::BoolAnd | AggFunc::BoolOr, Some(DataType::Boolean)) => DataType::Boolean,
        (AggFunc::StringAgg, Some(_)) => DataType::Text,
        (AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode, t) => {
            (*t).clone().unwrap_or(DataType::Double)
        }
        (AggFunc::ArrayAgg, Some(DataType::Array(_))) => {
            return Err(crate::types::array::multi_dim());
        }
        (AggFunc::ArrayAgg, Some(t)) => DataType::Array(Box::new(t.clone())),
        (AggFunc::JsonAgg | AggFunc::JsonObjectAgg, Some(_)) => DataType::Json,
        (AggFunc::JsonbAgg | AggFunc::JsonbObjectAgg, Some(_)) => DataType::Jsonb,
        (_, t) => {
            return Err(err(
                "42883",
                format!(
                    "function {name}({}) does not exist",
                    t.as_ref().map_or("*".to_string(), |t| t.sql_name())
                ),
            ));
        }
    })
}

/// The operands of a chain of one operator (`a OR b OR (c OR d)`), left
/// to right, found without recursion.
fn chain_operands<'e>(e: &'e ast::Expr, op: &ast::BinaryOperator) -> Vec<&'e ast::Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            ast::Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            ast::Expr::Nested(inner) if matches!(inner.as_ref(), ast::Expr::BinaryOp { op: o, .. } if o == op) => {
                stack.push(inner)
            }
            other => out.push(other),
        }
    }
    out
}

/// The equalities `column = value` among `conds` that read only input `i`
/// on one side and nothing of the current row on the other: (column
/// position within the input, value).
fn inputs_snapshot(conds: &[Expr], inp: &JoinInput) -> Vec<(usize, Expr)> {
    let mut out = Vec::new();
    let row_free = |e: &Expr| {
        let mut cols = Vec::new();
        e.columns_used(&mut cols);
        cols.is_empty() && !contains_subquery(e)
    };
    let local = |e: &Expr| match e {
        Expr::Column(col) if *col >= inp.offset && *col < inp.offset + inp.width => {
            Some(*col - inp.offset)
        }
        _ => None,
    };
    for c in conds {
        match c {
            Expr::Binary { op: BinOp::Eq, left, right } => {
                for (a, b) in [(left, right), (right, left)] {
                    if let Some(col) = local(a)
                        && row_free(b)
                    {
                        out.push((col, (**b).clone()));
                    }
                }
            }
            // `col IN (v, …)` and `col = ANY(array)`: one lookup per value.
            Expr::InList { expr, list, negated: false }
                if !list.is_empty() && list.len() <= MAX_KEY_SET && list.iter().all(row_free) =>
            {
                if let Some(col) = local(expr) {
                    let array = Expr::Func { func: Func::ArrayCtor, args: list.clone() };
                    out.push((col, key_set(array)));
                }
            }
            Expr::Func { func: Func::ArrayAny { op: BinOp::Eq, all: false }, args }
                if args.len() == 2 && row_free(&args[1]) =>
            {
                if let Some(col) = local(&args[0]) {
                    out.push((col, key_set(args[1].clone())));
                }
            }
            _ => {}
        }
    }
    out
}

/// The most values an IN list may have to be looked up one by one in an
/// index (and the most key combinations one index scan looks up).
pub(crate) const MAX_KEY_SET: usize = 10_000;

/// An index key that takes each element of `array` in turn (an IN list
/// or `= ANY(array)`): written `NULL = ANY(array)`, which as an ordinary
/// key would match nothing. `exec::stream::lookup` expands it into one
/// lookup per distinct element. Because the conditions stay above every
/// index scan, reading this key as a set can only ever add candidates.
pub(crate) fn key_set(array: Expr) -> Expr {
    Expr::Func {
        func: Func::ArrayAny { op: BinOp::Eq, all: false },
        args: vec![Expr::Const(Value::Null), array],
    }
}

/// The array of a `key_set` key.
pub(crate) fn as_key_set(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Func { func: Func::ArrayAny { op: BinOp::Eq, all: false }, args }
            if args.len() == 2 && args[0] == Expr::Const(Value::Null) =>
        {
            Some(&args[1])
        }
        _ => None,
    }
}

fn contains_subquery(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if matches!(
            x,
            Expr::ScalarSubquery { .. }
                | Expr::ArraySubquery { .. }
                | Expr::Exists { .. }
                | Expr::InSubquery { .. }
                | Expr::Quantified { .. }
        ) {
            found = true;
        }
    });
    found
}

/// `e` with its columns moved down by `off` (onto a join input's own row).
fn shift_columns(mut e: Expr, off: usize) -> Expr {
    if off > 0 {
        e.remap_columns(&|c| c - off);
    }
    e
}

/// Which side of a join of a `lw`-column left input `e` reads: Some(true)
/// the left only, Some(false) the right only; None for both, neither, or
/// a subquery (whose outer references may read anything).
pub(crate) fn join_side(e: &Expr, lw: usize) -> Option<bool> {
    if e.has_subquery() {
        return None;
    }
    let mut cols = Vec::new();
    e.columns_used(&mut cols);
    if cols.is_empty() {
        None
    } else if cols.iter().all(|&c| c < lw) {
        Some(true)
    } else if cols.iter().all(|&c| c >= lw) {
        Some(false)
    } else {
        None
    }
}

/// Whether `e` is NULL whenever the columns in `cols` are (a column, or
/// arithmetic or a cast over one).
fn null_if_null(e: &Expr, cols: &std::ops::Range<usize>) -> bool {
    match e {
        Expr::Column(c) => cols.contains(c),
        Expr::Binary {
            op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod,
            left,
            right,
        } => null_if_null(left, cols) || null_if_null(right, cols),
        Expr::Unary { expr, .. } | Expr::Cast { expr, .. } => null_if_null(expr, cols),
        _ => false,
    }
}

/// Whether condition `e` is never true when the columns in `cols` are all
/// NULL (a comparison, LIKE, BETWEEN, IN or IS NOT NULL of such a value):
/// then a row an outer join padded with NULLs there cannot pass it.
fn rejects_nulls(e: &Expr, cols: &std::ops::Range<usize>) -> bool {
    match e {
        Expr::Binary { op: BinOp::And, left, right } => {
            rejects_nulls(left, cols) || rejects_nulls(right, cols)
        }
        Expr::Binary { op: BinOp::Or, left, right } => {
            rejects_nulls(left, cols) && rejects_nulls(right, cols)
        }
        Expr::Binary { op, left, right } if op.is_comparison() => {
            null_if_null(left, cols) || null_if_null(right, cols)
        }
        Expr::IsNull { expr, negated: true } => null_if_null(expr, cols),
        Expr::Like { expr, pattern, .. } => null_if_null(expr, cols) || null_if_null(pattern, cols),
        Expr::Between { expr, negated: false, .. } | Expr::InList { expr, negated: false, .. } => {
            null_if_null(expr, cols)
        }
        _ => false,
    }
}

/// `plan` filtered by `cond` (over `plan`'s own columns), the filter put
/// as deep as is sound. Into an outer join: a condition on the preserved
/// side goes into that side; one on the nullable side that rejects NULLs
/// first turns the join inner (no padded row could pass it: outer-join
/// simplification), then goes into that side; into a MultiJoin it joins
/// the conditions (going into the one input it reads); over a table scan
/// it may choose an index.
fn push_filter(plan: Plan, cond: Expr) -> Plan {
    match plan {
        Plan::Join { left, right, mut kind, on } => {
            let lw = crate::exec::plan_width(&left, None);
            let rw = crate::exec::plan_width(&right, None);
            let (mut left, mut right) = (*left, *right);
            match join_side(&cond, lw) {
                Some(true) => {
                    if matches!(kind, JoinKind::Right | JoinKind::Full)
                        && rejects_nulls(&cond, &(0..lw))
                    {
                        kind =
                            if kind == JoinKind::Right { JoinKind::Inner } else { JoinKind::Left };
                    }
                    if matches!(kind, JoinKind::Inner | JoinKind::Left) {
                        left = push_filter(left, cond);
                        return Plan::Join { left: left.into(), right: right.into(), kind, on };
                    }
                    let join = Plan::Join { left: left.into(), right: right.into(), kind, on };
                    Plan::Filter { input: Box::new(join), predicate: cond }
                }
                Some(false) => {
                    if matches!(kind, JoinKind::Left | JoinKind::Full)
                        && rejects_nulls(&cond, &(lw..lw + rw))
                    {
                        kind =
                            if kind == JoinKind::Left { JoinKind::Inner } else { JoinKind::Right };
                    }
                    if matches!(kind, JoinKind::Inner | JoinKind::Right) {
                        right = push_filter(right, shift_columns(cond, lw));
                        return Plan::Join { left: left.into(), right: right.into(), kind, on };
                    }
                    let join = Plan::Join { left: left.into(), right: right.into(), kind, on };
                    Plan::Filter { input: Box::new(join), predicate: cond }
                }
                None => {
                    let join = Plan::Join { left: left.into(), right: right.into(), kind, on };
                    Plan::Filter { input: Box::new(join), predicate: cond }
                }
            }
        }
        Plan::MultiJoin { mut inputs, mut conds, width } => {
            let set = super::inputs_of(&cond, &inputs);
            match set.single() {
                Some(i) if !cond.has_subquery() => {
                    let off = inputs[i].offset;
                    let p = std::mem::replace(&mut inputs[i].plan, Plan::unit());
                    inputs[i].plan = push_filter(p, shift_columns(cond, off));
                }
                _ => conds.push(JoinCond { expr: cond, inputs: set }),
            }
            Plan::MultiJoin { inputs, conds, width }
        }
        Plan::Scan { table } => {
            let width = table.columns.len();
            let mut inp = JoinInput { plan: Plan::Scan { table }, offset: 0, width };
            use_index(&mut inp, std::slice::from_ref(&cond));
            Plan::Filter { input: Box::new(inp.plan), predicate: cond }
        }
        other => Plan::Filter { input: Box::new(other), predicate: cond },
    }
}

/// Turns a table scan into an index scan when equalities cover the
/// leading columns of one of its indexes (or the leading expressions of an
/// expression index), or a range its first; a partial index only when
/// `conds` include every conjunct of its WHERE.
fn use_index(inp: &mut JoinInput, conds: &[Expr]) {
    let Plan::Scan { table } = &inp.plan else { return };
    let eqs = inputs_snapshot(conds, inp);
    let ranges = range_bounds(conds, inp);
    let mut best = choose_index(&table.indexes, &eqs, &ranges);
    for x in table.expr_indexes.iter() {
        if let Some(c) = choose_expr_index(x, conds, inp)
            && best.as_ref().is_none_or(|b| c.score > b.score)
        {
            best = Some(c);
        }
    }
    if let Some(c) = best {
        inp.plan = Plan::IndexScan {
            table: table.clone(),
            index: c.index,
            unique: c.unique,
            columns: c.columns,
            keys: c.keys,
            range: c.range,
            reverse: false,
            index_only: false,
        };
    }
}

/// Whether condition `cond` holds for every row `plan` yields, because
/// `plan` is a lookup of a unique index on one integer column by a
/// constant or parameter (`is_key_operand`) and `cond` is that equality: the lookup finds the
/// row whose key equals the value exactly (`exec::index_value`: a value
/// the column cannot hold, or NULL, finds nothing, as the comparison
/// would), so a Filter above it would test what the key already decided.
fn index_decides(plan: &Plan, cond: &Expr) -> bool {
    if range_decides(plan, cond) {
        return true;
    }
    let Plan::IndexScan { table, index, unique: true, columns, keys, range: None, .. } = plan
    else {
        return false;
    };
    let ([col], [key]) = (columns.as_slice(), keys.as_slice()) else { return false };
    if table.expr_index(*index).is_some()
        || !matches!(
            table.columns.get(*col).map(|c| &c.1),
            Some(DataType::SmallInt | DataType::Integer | DataType::BigInt)
        )
        || !is_key_operand(key, &table.columns[*col].1)
    {
        return false;
    }
    match cond {
        Expr::Binary { op: BinOp::Eq, left, right } => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), k) | (k, Expr::Column(c)) => c == col && k == key,
            _ => false,
        },
        _ => false,
    }
}

/// Whether condition `cond` holds for every row `plan` yields because
/// `plan` scans an integer column's index over exactly the range `cond`
/// states: `col BETWEEN a AND b`, `col >= a` or `col <= b` (inclusive, as
/// the scan's bounds are), with bounds that are constants the column can
/// hold (or NULL) or parameters cast to the column's type. The scan finds
/// nothing for a NULL bound, as the comparison would; a bound the column
/// cannot hold would leave the range open on that side (`stream::lookup`),
/// so such bounds, and bare parameters whose values could be any number,
/// keep the Filter. `<` and `>` keep it too.
fn range_decides(plan: &Plan, cond: &Expr) -> bool {
    let Plan::IndexScan { table, index, range: Some(r), .. } = plan else { return false };
    let Some(ty) = table.columns.get(r.column).map(|c| &c.1) else { return false };
    if table.expr_index(*index).is_some()
        || !matches!(ty, DataType::SmallInt | DataType::Integer | DataType::BigInt)
    {
        return false;
    }
    let exact = |e: &Expr| match e {
        Expr::Const(v) => v.is_null() || crate::exec::index_value(v.clone(), ty).is_some(),
        Expr::Cast { expr, to } => to == ty && matches!(expr.as_ref(), Expr::Param(_)),
        _ => false,
    };
    let same = |bound: &Option<Expr>, e: Option<&Expr>| match (bound, e) {
        (Some(b), Some(e)) => b == e && exact(e),
        (None, None) => true,
        _ => false,
    };
    let (col, low, high) = match cond {
        Expr::Between { expr, low, high, negated: false } => {
            (expr.as_ref(), Some(low.as_ref()), Some(high.as_ref()))
        }
        Expr::Binary { op: BinOp::GtEq, left, right } => {
            (left.as_ref(), Some(right.as_ref()), None)
        }
        Expr::Binary { op: BinOp::LtEq, left, right } => {
            (left.as_ref(), None, Some(right.as_ref()))
        }
        _ => return false,
    };
    matches!(col, Expr::Column(c) if *c == r.column) && same(&r.low, low) && same(&r.high, high)
}

/// A constant, a parameter, or a parameter cast to the key column's own
/// type (how an untyped `$1` compared with the column is bound).
fn is_key_operand(e: &Expr, ty: &DataType) -> bool {
    match e {
        Expr::Const(_) | Expr::Param(_) => true,
        Expr::Cast { expr, to } => to == ty && matches!(expr.as_ref(), Expr::Param(_)),
        _ => false,
    }
}

/// `column < value`, `column >= value`, `column BETWEEN a AND b` … among
/// `conds` on input `inp`, with values that read no column.
pub(crate) fn range_bounds(conds: &[Expr], inp: &JoinInput) -> Vec<IndexRange> {
    let row_free = |e: &Expr| {
        let mut cols = Vec::new();
        e.columns_used(&mut cols);
        cols.is_empty() && !contains_subquery(e)
    };
    let local = |e: &Expr| match e {
        Expr::Column(c) if *c >= inp.offset && *c < inp.offset + inp.width => Some(*c - inp.offset),
        _ => None,
    };
    let mut out = Vec::new();
    for c in conds {
        match c {
            Expr::Binary { op, left, right }
                if matches!(op, BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq) =>
            {
                let (col, v, op) = match (local(left), local(right)) {
                    (Some(col), None) if row_free(right) => (col, right, *op),
                    (None, Some(col)) if row_free(left) => {
                        let flipped = match op {
                            BinOp::Lt => BinOp::Gt,
                            BinOp::LtEq => BinOp::GtEq,
                            BinOp::Gt => BinOp::Lt,
                            _ => BinOp::LtEq,
                        };
                        (col, left, flipped)
                    }
                    _ => continue,
                };
                let (low, high) = match op {
                    BinOp::Gt | BinOp::GtEq => (Some((**v).clone()), None),
                    _ => (None, Some((**v).clone())),
                };
                out.push(IndexRange { column: col, low, high });
            }
            Expr::Between { expr, low, high, negated: false } => {
                if let Some(col) = local(expr)
                    && row_free(low)
                    && row_free(high)
                {
                    out.push(IndexRange {
                        column: col,
                        low: Some((**low).clone()),
                        high: Some((**high).clone()),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// What `choose_index` picked.
pub(crate) struct IndexChoice {
    pub index: u64,
    pub unique: bool,
    pub columns: Vec<usize>,
    pub keys: Vec<Expr>,
    pub range: Option<IndexRange>,
    /// (fully covered unique, equality columns, has range): higher is better.
    pub score: (bool, usize, bool),
}

/// How expression or partial index `x` can serve `conds` on input `inp`:
/// its WHERE's conjuncts must all be among `conds` (as written); then
/// `key = value` and range conditions on its key expressions play the
/// part column conditions play for a plain index. The choice's columns
/// are key positions.
pub(crate) fn choose_expr_index(
    x: &crate::plan::ExprIndex,
    conds: &[Expr],
    inp: &JoinInput,
) -> Option<IndexChoice> {
    let off = inp.offset;
    let shift = |e: &Expr| {
        let mut e = e.clone();
        e.remap_columns(&|c| c + off);
        e
    };
    if let Some(p) = &x.predicate {
        let mut parts = Vec::new();
        split_and(shift(p), &mut parts);
        if !parts.iter().all(|p| conds.contains(p)) {
            return None;
        }
    }
    let keys: Vec<Expr> = x.keys.iter().map(shift).collect();
    // Conditions on a key expression, as if on key position k.
    let row_free = |e: &Expr| {
        let mut cols = Vec::new();
        e.columns_used(&mut cols);
        cols.is_empty() && !contains_subquery(e)
    };
    let key_of = |e: &Expr| keys.iter().position(|k| k == e);
    let mut eqs = Vec::new();
    let mut ranges = Vec::new();
    for c in conds {
        match c {
            Expr::Binary { op, left, right }
                if matches!(op, BinOp::Eq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq) =>
            {
                let (k, v, op) = match (key_of(left), key_of(right)) {
                    (Some(k), _) if row_free(right) => (k, right, *op),
                    (_, Some(k)) if row_free(left) => {
                        let flipped = match op {
                            BinOp::Lt => BinOp::Gt,
                            BinOp::LtEq => BinOp::GtEq,
                            BinOp::Gt => BinOp::Lt,
                            BinOp::GtEq => BinOp::LtEq,
                            _ => BinOp::Eq,
                        };
                        (k, left, flipped)
                    }
                    _ => continue,
                };
                match op {
                    BinOp::Eq => eqs.push((k, (**v).clone())),
                    BinOp::Gt | BinOp::GtEq => {
                        ranges.push(IndexRange { column: k, low: Some((**v).clone()), high: None })
                    }
                    _ => {
                        ranges.push(IndexRange { column: k, low: None, high: Some((**v).clone()) })
                    }
                }
            }
            Expr::Between { expr, low, high, negated: false } => {
                if let Some(k) = key_of(expr)
                    && row_free(low)
                    && row_free(high)
                {
                    ranges.push(IndexRange {
                        column: k,
                        low: Some((**low).clone()),
                        high: Some((**high).clone()),
                    });
                }
            }
            _ => {}
        }
    }
    let positions = vec![(x.id, (0..keys.len()).collect(), x.unique)];
    if let Some(c) = choose_index(&positions, &eqs, &ranges) {
        return Some(c);
    }
    // A partial index whose WHERE holds may be scanned whole (the rows
    // it has are the only candidates).
    x.predicate.as_ref().map(|_| IndexChoice {
        index: x.id,
        unique: false,
        columns: Vec::new(),
        keys: Vec::new(),
        range: None,
        score: (false, 0, false),
    })
}

/// The index that equalities `(column, value)` cover best: the longest
/// prefix of leading columns (a fully covered unique index first), then a
/// range on the next column; or an index whose first column has a range.
pub(crate) fn choose_index(
    indexes: &[(u64, Vec<usize>, bool)],
    eqs: &[(usize, Expr)],
    ranges: &[IndexRange],
) -> Option<IndexChoice> {
    // Score: (fully covered unique, equality columns, has range).
    type Candidate<'a> =
        ((bool, usize, bool), &'a (u64, Vec<usize>, bool), usize, Option<IndexRange>);
    let mut best: Option<Candidate> = None;
    for ix in indexes {
        let covered = ix.1.iter().take_while(|c| eqs.iter().any(|(e, _)| e == *c)).count();
        let full_unique = ix.2 && covered == ix.1.len();
        let range = if full_unique {
            None
        } else {
            ix.1.get(covered).and_then(|next| {
                // Merge every bound on that column: one low, one high.
                let mut r: Option<IndexRange> = None;
                for b in ranges.iter().filter(|b| b.column == *next) {
                    let cur = r.get_or_insert(IndexRange { column: *next, low: None, high: None });
                    if cur.low.is_none() {
                        cur.low = b.low.clone();
                    }
                    if cur.high.is_none() {
                        cur.high = b.high.clone();
                    }
                }
                r
            })
        };
        if covered == 0 && range.is_none() {
            continue;
        }
        let score = (full_unique, covered, range.is_some());
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, ix, covered, range));
        }
    }
    let (score, ix, covered, range) = best?;
    let unique = score.0;
    let columns: Vec<usize> = ix.1[..covered].to_vec();
    let keys = columns
        .iter()
        .map(|c| {
            eqs.iter()
                .find(|(e, _)| e == c)
                .map(|(_, v)| v.clone())
                .unwrap_or(Expr::Const(Value::Null))
        })
        .collect();
    Some(IndexChoice { index: ix.0, unique, columns, keys, range, score })
}

/// `column = value` equalities of a WHERE over one table (for UPDATE and
/// DELETE): (column, value) pairs whose value reads no column.
pub(crate) fn equalities(filter: &Expr, ncols: usize) -> (Vec<(usize, Expr)>, Vec<IndexRange>) {
    let mut conj = Vec::new();
    split_and(filter.clone(), &mut conj);
    let inp = JoinInput { plan: Plan::unit(), offset: 0, width: ncols };
    (inputs_snapshot(&conj, &inp), range_bounds(&conj, &inp))
}

/// A balanced tree of `op` over the operands: depth log2(n), not n.
fn balanced(op: BinOp, mut items: Vec<Expr>) -> Expr {
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(b) => next.push(Expr::Binary { op, left: a.boxed(), right: b.boxed() }),
                None => next.push(a),
            }
        }
        items = next;
    }
    items.pop().unwrap_or(Expr::Const(Value::Bool(op == BinOp::And)))
}

fn agg_func(name: &str, args: &[&ast::FunctionArg]) -> Option<AggFunc> {
    Some(match name {
        "count" => {
            if matches!(
                args.first(),
                Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard))
            ) {
                AggFunc::CountStar
            } else {
                AggFunc::Count
            }
        }
        "sum" => AggFunc::Sum,
        "avg" => AggFunc::Avg,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "bool_and" | "every" => AggFunc::BoolAnd,
        "bool_or" => AggFunc::BoolOr,
        "string_agg" => AggFunc::StringAgg,
        "stddev" | "stddev_samp" => AggFunc::StddevSamp,
        "stddev_pop" => AggFunc::StddevPop,
        "variance" | "var_samp" => AggFunc::VarSamp,
        "var_pop" => AggFunc::VarPop,
        "percentile_cont" => AggFunc::PercentileCont,
        "percentile_disc" => AggFunc::PercentileDisc,
        "mode" => AggFunc::Mode,
        "array_agg" => AggFunc::ArrayAgg,
        "json_agg" => AggFunc::JsonAgg,
        "jsonb_agg" => AggFunc::JsonbAgg,
        "json_object_agg" => AggFunc::JsonObjectAgg,
        "jsonb_object_agg" => AggFunc::JsonbObjectAgg,
        _ => return None,
    })
}

fn scalar_function(name: &str, mut args: Vec<B>) -> Result<B> {
    if let Some(b) = crate::system::function(name, &mut args)? {
        return Ok(b);
    }
    if datetime::is_function(name)
        && (name != "to_char" || args.first().is_some_and(|a| datetime::is_datetime(&a.ty)))
    {
        return datetime::function(name, args);
    }
    let n = args.len();
    let sig_msg = no_function_message(name, &args);
    let sig = || err("42883", sig_msg.clone());
    let num1 = |args: &mut Vec<B>| -> Result<(Expr, DataType)> {
        let b = args.remove(0);
        let b = if b.unknown { coerce_b(b, &DataType::Double)? } else { b };
        if !is_numeric(&b.ty) {
            return Err(err(
                "42883",
                format!("function {name}({}) does not exist", b.ty.sql_name()),
            ));
        }
        Ok((b.expr, b.ty))
    };
    // A text parameter takes an untyped literal or a string type, never
    // another type (PostgreSQL has no implicit cast from, say, integer to
    // text: `length(5)` does not exist).
    let text_args = |args: Vec<B>| -> Result<Vec<Expr>> {
        if args.iter().any(|b| !b.unknown && !is_text(&b.ty)) {
            return Err(sig());
        }
        args.into_iter().map(|b| coerce(b, &DataType::Text)).collect()
    };
    Ok(match (name, n) {
        ("abs", 1) => {
            let (e, t) = num1(&mut args)?;
            B::new(Expr::Func { func: Func::Abs, args: vec![e] }, t)
        }
        ("sign", 1) => {
            let (e, t) = num1(&mut args)?;
            let t = if matches!(t, DataType::Numeric(_)) { t } else { DataType::Double };
            B::new(Expr::Func { func: Func::Sign, args: vec![e] }, t)
        }
        ("sqrt", 1) => {
            let (e, t) = num1(&mut args)?;
            let t = if matches!(t, DataType::Numeric(_)) { t } else { DataType::Double };
            B::new(Expr::Func { func: Func::Sqrt, args: vec![e] }, t)
        }
        ("ceil" | "ceiling" | "floor", 1) => {
            let (e, t) = num1(&mut args)?;
            let t = if matches!(t, DataType::Numeric(_)) { t } else { DataType::Double };
            let func = if name == "floor" { Func::Floor } else { Func::Ceil };
            B::new(Expr::Func { func, args: vec![e] }, t)
        }
        ("round" | "trunc", 1 | 2) => {
            let (e, t) = num1(&mut args)?;
            let func = if name == "round" { Func::Round } else { Func::Trunc };
            let mut a = vec![e];
            let t = if n == 2 {
                a.push(coerce(args.remove(0), &DataType::Integer)?);
                DataType::Numeric(None)
            } else if matches!(t, DataType::Numeric(_)) {
                t
            } else {
                DataType::Double
            };
            B::new(Expr::Func { func, args: a }, t)
        }
        ("power" | "pow", 2)
            if args.iter().any(|b| matches!(b.ty, DataType::Numeric(_)) && !b.unknown)
                && args
                    .iter()
                    .all(|b| b.unknown || !matches!(b.ty, DataType::Double | DataType::Real)) =>
        {
            // power(numeric, numeric): PostgreSQL's exact digits.
            let t = DataType::Numeric(None);
            let a = coerce(args.remove(0), &t)?;
            let b = coerce(args.remove(0), &t)?;
            B::new(Expr::Func { func: Func::Power, args: vec![a, b] }, t)
        }
        ("power" | "pow", 2) => {
            let a = coerce(args.remove(0), &DataType::Double)?;
            let b = coerce(args.remove(0), &DataType::Double)?;
            B::new(Expr::Func { func: Func::Power, args: vec![a, b] }, DataType::Double)
        }
        ("mod", 2) => {
            let mut l = args.remove(0);
            let mut r = args.remove(0);
            // An untyped literal takes the other argument's type.
            if l.unknown && !r.unknown && is_numeric(&r.ty) {
                let t = r.ty.clone();
                l = B::new(coerce(l, &t)?, t);
            } else if r.unknown && !l.unknown && is_numeric(&l.ty) {
                let t = l.ty.clone();
                r = B::new(coerce(r, &t)?, t);
            }
            if !is_numeric(&l.ty) || !is_numeric(&r.ty) {
                return Err(sig());
            }
            let t = arith_type(&l.ty, &r.ty);
            B::new(Expr::Func { func: Func::Mod, args: vec![l.expr, r.expr] }, t)
        }
        ("coalesce" | "greatest" | "least", 1..) => {
            let mut ty: Option<DataType> = None;
            for a in &args {
                if !a.unknown {
                    ty = Some(match ty {
                        None => a.ty.clone(),
                        Some(t) => common_type(&t, &a.ty)
                            .ok_or_else(|| mismatch(&name.to_uppercase(), &t, &a.ty))?,
                    });
                }
            }
            let ty = ty.unwrap_or(DataType::Text);
            let exprs = args.into_iter().map(|a| coerce(a, &ty)).collect::<Result<_>>()?;
            let func = match name {
                "coalesce" => Func::Coalesce,
                "greatest" => Func::Greatest,
                _ => Func::Least,
            };
            B::new(Expr::Func { func, args: exprs }, ty)
        }
        ("nullif", 2) => {
            let l = args.remove(0);
            let r = args.remove(0);
            // The result has the first argument's type.
            let ty = match (l.unknown, r.unknown) {
                (true, true) => DataType::Text,
                (true, false) => r.ty.clone(),
                _ => l.ty.clone(),
            };
            let cmp = if r.unknown {
                ty.clone()
            } else {
                common_type(&ty, &r.ty).ok_or_else(|| mismatch("NULLIF", &ty, &r.ty))?
            };
            let l = coerce_b(l, &ty)?;
            B::new(
                Expr::Func {
                    func: Func::NullIf,
                    args: vec![coerce_cmp(l, &cmp)?, coerce_cmp(r, &cmp)?],
                },
                ty,
            )
        }
        ("lower" | "upper" | "reverse", 1) => {
            let func = match name {
                "lower" => Func::Lower,
                "upper" => Func::Upper,
                _ => Func::Reverse,
            };
            B::new(Expr::Func { func, args: text_args(args)? }, DataType::Text)
        }
        // length(bytea) counts bytes.
        ("length", 1) if args[0].ty == DataType::Bytea && !args[0].unknown => B::new(
            Expr::Func { func: Func::OctetLength, args: vec![args.remove(0).expr] },
            DataType::Integer,
        ),
        ("length" | "char_length" | "character_length", 1) => {
            B::new(Expr::Func { func: Func::Length, args: text_args(args)? }, DataType::Integer)
        }
        ("substr" | "substring", 2 | 3) => {
            let s = args.remove(0);
            let ty = if !s.unknown && s.ty == DataType::Bytea {
                DataType::Bytea
            } else {
                DataType::Text
            };
            let s = match ty {
                DataType::Bytea => s.expr,
                _ => text_args(vec![s])?.remove(0),
            };
            let mut a = vec![s];
            for b in args {
                a.push(coerce(b, &DataType::Integer)?);
            }
            B::new(Expr::Func { func: Func::Substr, args: a }, ty)
        }
        // btrim, ltrim and rtrim of bytea take the bytes to trim.
        ("btrim" | "ltrim" | "rtrim", 2) if !args[0].unknown && args[0].ty == DataType::Bytea => {
            let func = match name {
                "ltrim" => Func::Ltrim,
                "rtrim" => Func::Rtrim,
                _ => Func::Trim,
            };
            let set = coerce(args.remove(1), &DataType::Bytea)?;
            B::new(Expr::Func { func, args: vec![args.remove(0).expr, set] }, DataType::Bytea)
        }
        ("btrim" | "ltrim" | "rtrim", 1 | 2) => {
            let func = match name {
                "ltrim" => Func::Ltrim,
                "rtrim" => Func::Rtrim,
                _ => Func::Trim,
            };
            B::new(Expr::Func { func, args: text_args(args)? }, DataType::Text)
        }
        ("replace", 3) => {
            B::new(Expr::Func { func: Func::Replace, args: text_args(args)? }, DataType::Text)
        }
        ("strpos", 2) => {
            B::new(Expr::Func { func: Func::StrposFn, args: text_args(args)? }, DataType::Integer)
        }
        ("concat", _) => {
            let a = args.into_iter().map(finish_unknown).collect::<Result<_>>()?;
            B::new(Expr::Func { func: Func::Concat, args: a }, DataType::Text)
        }
        ("left" | "right" | "repeat", 2) => {
            let s = text_args(vec![args.remove(0)])?.remove(0);
            let k = coerce(args.remove(0), &DataType::Integer)?;
            let func = match name {
                "left" => Func::Left,
                "right" => Func::Right,
                _ => Func::Repeat,
            };
            B::new(Expr::Func { func, args: vec![s, k] }, DataType::Text)
        }
        ("random", 0) => B::new(Expr::Func { func: Func::Random, args: vec![] }, DataType::Double),
        ("nextval" | "currval", 1) => {
            let func = if name == "nextval" { Func::Nextval } else { Func::Currval };
            B::new(Expr::Func { func, args: vec![sequence_arg(args.remove(0))?] }, DataType::BigInt)
        }
        ("lastval", 0) => {
            B::new(Expr::Func { func: Func::Lastval, args: vec![] }, DataType::BigInt)
        }
        ("setval", 2 | 3) => {
            let seq = sequence_arg(args.remove(0))?;
            let v = coerce(args.remove(0), &DataType::BigInt)?;
            let mut a = vec![seq, v];
            if let Some(c) = args.pop() {
                a.push(coerce(c, &DataType::Boolean)?);
            }
            B::new(Expr::Func { func: Func::Setval, args: a }, DataType::BigInt)
        }
        _ => match more::function(name, &mut args)? {
            Some(b) => b,
            None => return type_function(name, args)?.ok_or_else(sig),
        },
    })
}

/// The element type of an array argument (42804 for anything else).
/// An int2vector (`pg_index.indkey`) used where an array is expected is
/// the smallint array it holds (its values are arrays already).
fn vector_as_array(mut b: B) -> B {
    if b.ty == DataType::Int2Vector {
        b.ty = DataType::Array(Box::new(DataType::SmallInt));
    }
    b
}

fn array_arg(b: B, fname: &str) -> Result<(Expr, DataType)> {
    let b = vector_as_array(b);
    match &b.ty {
        DataType::Array(e) if !b.unknown => {
            let e = (**e).clone();
            Ok((b.expr, e))
        }
        _ => Err(err(
            "42883",
            format!(
                "function {fname}({}) does not exist",
                if b.unknown { "unknown".into() } else { b.ty.sql_name() }
            ),
        )),
    }
}

/// An integer bitwise operator: `&`, `|` and `#` on two integers of the
/// wider type (an unknown literal takes the other's type), `<<` and `>>`
/// on the left one's type with an integer count (PostgreSQL has these for
/// smallint, integer and bigint).
fn bitwise(func: Func, name: &str, l: B, r: B) -> Result<B> {
    let int = |t: &DataType| matches!(t, DataType::SmallInt | DataType::Integer | DataType::BigInt);
    let shift = matches!(func, Func::ShiftLeft | Func::ShiftRight);
    let ty = match (l.unknown, r.unknown) {
        (true, true) => {
            return Err(err("42725", format!("operator is not unique: unknown {name} unknown")));
        }
        (true, false) if !shift => r.ty.clone(),
        (true, _) => DataType::Integer,
        (false, true) | (false, false) if shift => l.ty.clone(),
        (false, true) => l.ty.clone(),
        (false, false) => arith_type(&l.ty, &r.ty),
    };
    let rty = if shift { DataType::Integer } else { ty.clone() };
    if !int(&ty) || (!l.unknown && !int(&l.ty)) || (!r.unknown && !int(&r.ty)) {
        return Err(no_operator(name, Some(&l.ty), &r.ty));
    }
    let args = vec![coerce(l, &ty)?, coerce(r, &rty)?];
    Ok(B::new(Expr::Func { func, args }, ty))
}

/// The fields of `information_schema._pg_expandarray`'s record: the
/// element `x` and its position `n`.
fn expand_array_fields(elem: DataType) -> Vec<(String, DataType)> {
    vec![("x".into(), elem), ("n".into(), DataType::Integer)]
}

/// Functions of uuid, json/jsonb and arrays (`None`: not one of them).
fn type_function(name: &str, mut args: Vec<B>) -> Result<Option<B>> {
    let n = args.len();
    let json_ty = |name: &str| {
        if name.starts_with("jsonb") || name == "to_jsonb" {
            DataType::Jsonb
        } else {
            DataType::Json
        }
    };
    let f =
        |func: Func, args: Vec<Expr>, ty: DataType| Ok(Some(B::new(Expr::Func { func, args }, ty)));
    let text = DataType::Text;
    let text_arr = DataType::Array(Box::new(DataType::Text));
    match (name, n) {
        ("gen_random_uuid", 0) => f(Func::GenRandomUuid, vec![], DataType::Uuid),
        ("jsonb_typeof" | "json_typeof", 1) => {
            let a = coerce(args.remove(0), &json_ty(name))?;
            f(Func::JsonTypeof, vec![a], text)
        }
        ("jsonb_array_length" | "json_array_length", 1) => {
            let a = coerce(args.remove(0), &json_ty(name))?;
            f(Func::JsonArrayLength, vec![a], DataType::Integer)
        }
        (
            "jsonb_build_object" | "json_build_object" | "jsonb_build_array" | "json_build_array",
            _,
        ) => {
            let a = args.into_iter().map(finish_unknown).collect::<Result<_>>()?;
            let func = match name {
                "jsonb_build_object" => Func::JsonbBuildObject,
                "json_build_object" => Func::JsonBuildObject,
                "jsonb_build_array" => Func::JsonbBuildArray,
                _ => Func::JsonBuildArray,
            };
            f(func, a, json_ty(name))
        }
        ("to_jsonb" | "to_json", 1) => {
            let a = finish_unknown(args.remove(0))?;
            let func = if name == "to_jsonb" { Func::ToJsonb } else { Func::ToJson };
            f(func, vec![a], json_ty(name))
        }
        ("jsonb_set" | "jsonb_insert", 3 | 4) => {
            let mut a = vec![
                coerce(args.remove(0), &DataType::Jsonb)?,
                coerce(args.remove(0), &text_arr)?,
                coerce(args.remove(0), &DataType::Jsonb)?,
            ];
            if n == 4 {
                a.push(coerce(args.remove(0), &DataType::Boolean)?);
            }
            let func = if name == "jsonb_set" { Func::JsonbSet } else { Func::JsonbInsert };
            f(func, a, DataType::Jsonb)
        }
        ("json_object" | "jsonb_object", 1 | 2) => {
            let a = args.into_iter().map(|a| coerce(a, &text_arr)).collect::<Result<_>>()?;
            let func = if name == "jsonb_object" { Func::JsonbObject } else { Func::JsonObject };
            f(func, a, json_ty(name))
        }
        ("jsonb_pretty", 1) => {
            f(Func::JsonbPretty, vec![coerce(args.remove(0), &DataType::Jsonb)?], text)
        }
        ("jsonb_strip_nulls", 1) => f(
            Func::JsonbStripNulls,
            vec![coerce(args.remove(0), &DataType::Jsonb)?],
            DataType::Jsonb,
        ),
        ("unnest", 1) => {
            let (a, e) = array_arg(args.remove(0), name)?;
            f(Func::SetReturning(SetFunc::Unnest), vec![a], e)
        }
        ("generate_series", 2 | 3) => {
            let (exprs, ty) = series_args(args)?;
            f(Func::SetReturning(SetFunc::Series), exprs, ty)
        }
        ("_pg_expandarray", 1) => {
            let (a, e) = array_arg(args.remove(0), name)?;
            let ty = DataType::Record(expand_array_fields(e));
            f(Func::SetReturning(SetFunc::ExpandArray { field: None }), vec![a], ty)
        }
        ("generate_subscripts", 2 | 3) => {
            let zero_based = args[0].ty == DataType::Int2Vector && !args[0].unknown;
            let (a, _) = array_arg(args.remove(0), name)?;
            let mut a = vec![a, coerce(args.remove(0), &DataType::Integer)?];
            if let Some(rev) = args.pop() {
                a.push(coerce(rev, &DataType::Boolean)?);
            }
            f(Func::SetReturning(SetFunc::Subscripts { zero_based }), a, DataType::Integer)
        }
        (
            "jsonb_array_elements"
            | "json_array_elements"
            | "jsonb_array_elements_text"
            | "json_array_elements_text"
            | "jsonb_object_keys"
            | "json_object_keys",
            1,
        ) => {
            let a = coerce(args.remove(0), &json_ty(name))?;
            let (set, ty) = match name {
                "jsonb_object_keys" | "json_object_keys" => (SetFunc::ObjectKeys, text),
                n if n.ends_with("_text") => (SetFunc::ArrayElements { text: true }, text),
                _ => (SetFunc::ArrayElements { text: false }, json_ty(name)),
            };
            f(Func::SetReturning(set), vec![a], ty)
        }
        ("unnest" | "jsonb_each" | "json_each" | "jsonb_each_text" | "json_each_text", _) => {
            Err(unsupported(format!(
                "set-returning function {name} returning several columns in an expression (call it in FROM)"
            )))
        }
        // ROW(a, b, …): a record of fields f1, f2, … (an unknown literal
        // is text, as in PostgreSQL).
        ("row", _) => {
            let mut fields = Vec::with_capacity(args.len());
            let mut exprs = Vec::with_capacity(args.len());
            for (i, b) in args.into_iter().enumerate() {
                let b = if b.unknown { coerce_b(b, &DataType::Text)? } else { b };
                fields.push((format!("f{}", i + 1), b.ty));
                exprs.push(b.expr);
            }
            f(Func::RowCtor, exprs, DataType::Record(fields))
        }
        ("array_length", 2) => {
            let (a, _) = array_arg(args.remove(0), name)?;
            let d = coerce(args.remove(0), &DataType::Integer)?;
            f(Func::ArrayLength, vec![a, d], DataType::Integer)
        }
        ("array_lower" | "array_upper", 2) => {
            let (a, _) = array_arg(args.remove(0), name)?;
            let d = coerce(args.remove(0), &DataType::Integer)?;
            let func = if name == "array_lower" { Func::ArrayLower } else { Func::ArrayUpper };
            f(func, vec![a, d], DataType::Integer)
        }
        ("array_ndims", 1) => {
            let (a, _) = array_arg(args.remove(0), name)?;
            // 1, or NULL for an empty array.
            let len = Expr::Func { func: Func::Cardinality, args: vec![a] };
            let ndims = Expr::Func {
                func: Func::NullIf,
                args: vec![
                    Expr::Func { func: Func::Least, args: vec![len, Expr::Const(Value::Int4(1))] },
                    Expr::Const(Value::Int4(0)),
                ],
            };
            Ok(Some(B::new(ndims, DataType::Integer)))
        }
        (
            "jsonb_extract_path"
            | "jsonb_extract_path_text"
            | "json_extract_path"
            | "json_extract_path_text",
            1..,
        ) => {
            let j = coerce(args.remove(0), &json_ty(name))?;
            let steps = args.into_iter().map(|b| coerce(b, &text)).collect::<Result<_>>()?;
            let path = Expr::Func { func: Func::ArrayCtor, args: steps };
            let as_text = name.ends_with("_text");
            let func = if as_text { Func::JsonPathText } else { Func::JsonPath };
            f(func, vec![j, path], if as_text { text } else { json_ty(name) })
        }
        ("cardinality", 1) => {
            let (a, _) = array_arg(args.remove(0), name)?;
            f(Func::Cardinality, vec![a], DataType::Integer)
        }
        ("array_append", 2) => {
            let (a, e) = array_arg(args.remove(0), name)?;
            let x = coerce(args.remove(0), &e)?;
            f(Func::ArrayAppend, vec![a, x], DataType::Array(Box::new(e)))
        }
        ("array_prepend", 2) => {
            let x = args.remove(0);
            let (a, e) = array_arg(args.remove(0), name)?;
            let x = coerce(x, &e)?;
            f(Func::ArrayPrepend, vec![x, a], DataType::Array(Box::new(e)))
        }
        ("array_cat", 2) => {
            let (l, r) = (args.remove(0), args.remove(0));
            let ty = match (l.unknown, r.unknown) {
                (false, false) => common_type(&l.ty, &r.ty),
                (true, false) => Some(r.ty.clone()),
                (false, true) => Some(l.ty.clone()),
                _ => None,
            };
            let Some(ty @ DataType::Array(_)) = ty else {
                return Err(err(
                    "42883",
                    format!("function {name} does not exist for these types"),
                ));
            };
            let (l, r) = (coerce_arr(l, &ty)?, coerce_arr(r, &ty)?);
            f(Func::ArrayCat, vec![l, r], ty)
        }
        ("array_position" | "array_remove", 2 | 3) => {
            if name == "array_remove" && n == 3 {
                return Ok(None);
            }
            let (a, e) = array_arg(args.remove(0), name)?;
            let x = coerce_cmp(args.remove(0), &e)?;
            let mut v = vec![a, x];
            if n == 3 {
                v.push(coerce(args.remove(0), &DataType::Integer)?);
            }
            if name == "array_remove" {
                f(Func::ArrayRemove, v, DataType::Array(Box::new(e)))
            } else {
                f(Func::ArrayPosition, v, DataType::Integer)
            }
        }
        ("array_to_string", 2 | 3) => {
            let (a, _) = array_arg(args.remove(0), name)?;
            let mut v = vec![a];
            for b in args {
                v.push(coerce(b, &text)?);
            }
            f(Func::ArrayToString, v, text)
        }
        ("string_to_array", 2 | 3) => {
            let v = args.into_iter().map(|b| coerce(b, &DataType::Text)).collect::<Result<_>>()?;
            f(Func::StringToArray, v, text_arr)
        }
        _ => Ok(None),
    }
}

/// An array operand of an array operator: unknown literals parse as `ty`;
/// arrays of other element types compare by value (no cast needed).
fn coerce_arr(b: B, ty: &DataType) -> Result<Expr> {
    if b.unknown {
        return coerce(b, ty);
    }
    if b.ty == *ty || common_type(&b.ty, ty).is_some() {
        return Ok(if cast::implicit(&b.ty, ty) && b.ty != *ty {
            Expr::Cast { expr: b.expr.boxed(), to: ty.clone() }
        } else {
            b.expr
        });
    }
    Err(err(
        "42804",
        format!("argument is of type {}, but {} was expected", b.ty.sql_name(), ty.sql_name()),
    ))
}

/// Operators of json/jsonb and arrays (`->`, `@>`, `?`, `&&`, jsonb and
/// array `||`, jsonb `-`); other operands come back unchanged.
fn typed_binary(op: &ast::BinaryOperator, l: B, r: B) -> Result<std::result::Result<B, (B, B)>> {
    use ast::BinaryOperator as O;
    let lt = if l.unknown { None } else { Some(l.ty.clone()) };
    let rt = if r.unknown { None } else { Some(r.ty.clone()) };
    let is_int = |t: &Option<DataType>| {
        matches!(t, Some(DataType::SmallInt | DataType::Integer | DataType::BigInt))
    };
    let no_op = |name: &str| {
        let show = |t: &Option<DataType>| t.as_ref().map_or("unknown".into(), |t| t.sql_name());
        err("42883", format!("operator does not exist: {} {name} {}", show(&lt), show(&rt)))
    };
    let not_unique = |name: &str| {
        let show = |t: &Option<DataType>| t.as_ref().map_or("unknown".into(), |t| t.sql_name());
        err("42725", format!("operator is not unique: {} {name} {}", show(&lt), show(&rt)))
    };
    let done =
        |func: Func, args: Vec<Expr>, ty: DataType| Ok(Ok(B::new(Expr::Func { func, args }, ty)));
    let text_arr = DataType::Array(Box::new(DataType::Text));
    match op {
        O::Arrow | O::LongArrow | O::HashArrow | O::HashLongArrow => {
            let name = op.to_string();
            if l.unknown {
                return Err(not_unique(&name));
            }
            let Some(t @ (DataType::Json | DataType::Jsonb)) = lt.clone() else {
                return Err(no_op(&name));
            };
            let path = matches!(op, O::HashArrow | O::HashLongArrow);
            let key = if path {
                if !r.unknown && r.ty != text_arr {
                    return Err(no_op(&name));
                }
                coerce(r, &text_arr)?
            } else if is_int(&rt) {
                r.expr
            } else if r.unknown || is_text(&r.ty) {
                coerce(r, &DataType::Text)?
            } else {
                return Err(no_op(&name));
            };
            let as_text = matches!(op, O::LongArrow | O::HashLongArrow);
            let func = match (path, as_text) {
                (false, false) => Func::JsonGet,
                (false, true) => Func::JsonGetText,
                (true, false) => Func::JsonPath,
                (true, true) => Func::JsonPathText,
            };
            done(func, vec![l.expr, key], if as_text { DataType::Text } else { t })
        }
        O::AtArrow | O::ArrowAt | O::PGOverlap => {
            let name = op.to_string();
            let ty = match (&lt, &rt) {
                (Some(a), Some(b)) => common_type(a, b),
                (Some(a), None) => Some(a.clone()),
                (None, Some(b)) => Some(b.clone()),
                (None, None) => return Err(not_unique(&name)),
            };
            let ok = match &ty {
                Some(DataType::Array(_)) => true,
                Some(DataType::Jsonb) => !matches!(op, O::PGOverlap),
                _ => false,
            };
            let Some(ty) = ty.filter(|_| ok) else { return Err(no_op(&name)) };
            let (a, b) = (coerce_arr(l, &ty)?, coerce_arr(r, &ty)?);
            match op {
                O::AtArrow => done(Func::Contains, vec![a, b], DataType::Boolean),
                O::ArrowAt => done(Func::Contains, vec![b, a], DataType::Boolean),
                _ => done(Func::Overlap, vec![a, b], DataType::Boolean),
            }
        }
        O::Question | O::QuestionPipe | O::QuestionAnd => {
            let name = op.to_string();
            if lt != Some(DataType::Jsonb) {
                return Err(no_op(&name));
            }
            let (func, kt) = match op {
                O::Question => (Func::JsonExists, DataType::Text),
                O::QuestionPipe => (Func::JsonExistsAny, text_arr),
                _ => (Func::JsonExistsAll, text_arr),
            };
            let k = coerce(r, &kt).map_err(|_| no_op(&name))?;
            done(func, vec![l.expr, k], DataType::Boolean)
        }
        O::StringConcat if lt == Some(DataType::Jsonb) || rt == Some(DataType::Jsonb) => {
            if !matches!(lt, None | Some(DataType::Jsonb))
                || !matches!(rt, None | Some(DataType::Jsonb))
            {
                return Ok(Err((l, r)));
            }
            let (a, b) = (coerce(l, &DataType::Jsonb)?, coerce(r, &DataType::Jsonb)?);
            done(Func::JsonbConcat, vec![a, b], DataType::Jsonb)
        }
        O::StringConcat => match (&lt, &rt) {
            (Some(DataType::Array(_)), Some(DataType::Array(_)))
            | (Some(DataType::Array(_)), None)
            | (None, Some(DataType::Array(_))) => {
                let ty = match (&lt, &rt) {
                    (Some(a), Some(b)) => common_type(a, b).ok_or_else(|| no_op("||"))?,
                    (Some(a), None) => a.clone(),
                    (_, b) => b.clone().unwrap_or(text_arr),
                };
                let (a, b) = (coerce_arr(l, &ty)?, coerce_arr(r, &ty)?);
                done(Func::ArrayCat, vec![a, b], ty)
            }
            (Some(DataType::Array(e)), Some(_)) => {
                let e = (**e).clone();
                let ty = lt.clone().unwrap_or(text_arr);
                let x = coerce(r, &e).map_err(|_| no_op("||"))?;
                done(Func::ArrayAppend, vec![l.expr, x], ty)
            }
            (Some(_), Some(DataType::Array(e))) => {
                let e = (**e).clone();
                let ty = rt.clone().unwrap_or(text_arr);
                let x = coerce(l, &e).map_err(|_| no_op("||"))?;
                done(Func::ArrayPrepend, vec![x, r.expr], ty)
            }
            _ => Ok(Err((l, r))),
        },
        O::HashMinus => {
            if lt != Some(DataType::Jsonb) || !(r.unknown || r.ty == text_arr) {
                return Err(no_op("#-"));
            }
            let p = coerce(r, &text_arr)?;
            done(Func::JsonbDeletePath, vec![l.expr, p], DataType::Jsonb)
        }
        O::Minus if lt == Some(DataType::Jsonb) => {
            let k = if is_int(&rt) {
                r.expr
            } else if r.unknown || rt.as_ref().is_some_and(is_text) {
                coerce(r, &DataType::Text)?
            } else if rt == Some(text_arr.clone()) {
                r.expr
            } else {
                return Err(no_op("-"));
            };
            done(Func::JsonbDelete, vec![l.expr, k], DataType::Jsonb)
        }
        _ => Ok(Err((l, r))),
    }
}

/// generate_series's arguments, typed: timestamps (or dates) with an
/// interval step, else integers or numerics in their common type (42883
/// for floats or other types, as PostgreSQL has no such generate_series).
fn series_args(bound: Vec<B>) -> Result<(Vec<Expr>, DataType)> {
    if let Some(typed) = datetime::series_args(bound.clone())? {
        return Ok(typed);
    }
    let mut ty = DataType::Integer;
    for b in &bound {
        if !b.unknown {
            if !is_numeric(&b.ty) || matches!(b.ty, DataType::Real | DataType::Double) {
                return Err(err(
                    "42883",
                    format!("function generate_series({}) does not exist", b.ty.sql_name()),
                ));
            }
            ty = arith_type(&ty, &b.ty);
        }
    }
    let exprs = bound.into_iter().map(|b| coerce(b, &ty)).collect::<Result<Vec<_>>>()?;
    Ok((exprs, ty))
}

/// PostgreSQL's message for a call that no function takes:
/// `function name(integer, unknown) does not exist`.
fn no_function_message(name: &str, args: &[B]) -> String {
    let types: Vec<String> =
        args.iter().map(|b| if b.unknown { "unknown".into() } else { b.ty.sql_name() }).collect();
    format!("function {name}({}) does not exist", types.join(", "))
}

/// 42883 for a call of `name` with `args` that no function takes.
pub(crate) fn no_function(name: &str, args: &[B]) -> Error {
    err("42883", no_function_message(name, args))
}

/// The sequence argument of nextval, currval and setval, as the name the
/// executor looks up: a name (text), or a `regclass` oid, which in QubeDB is
/// an integer (`'s'::regclass`, as pg_dump and ORMs write column defaults),
/// turned back into the sequence's name.
fn sequence_arg(b: B) -> Result<Expr> {
    if !b.unknown && is_numeric(&b.ty) {
        return Ok(crate::system::reg_cast(crate::system::RegKind::Class, b)?.expr);
    }
    coerce(b, &DataType::Text)
}

fn cmp_op(op: &ast::BinaryOperator) -> Option<BinOp> {
    use ast::BinaryOperator as O;
    Some(match op {
        O::Eq => BinOp::Eq,
        O::NotEq => BinOp::NotEq,
        O::Lt => BinOp::Lt,
        O::LtEq => BinOp::LtEq,
        O::Gt => BinOp::Gt,
        O::GtEq => BinOp::GtEq,
        _ => return None,
    })
}

fn op_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Eq => "=",
        BinOp::NotEq => "<>",
        BinOp::Lt => "<",
        BinOp::LtEq => "<=",
        BinOp::Gt => ">",
        BinOp::GtEq => ">=",
        BinOp::And => "AND",
        BinOp::Or => "OR",
        BinOp::Concat => "||",
    }
}

fn no_operator(op: &str, l: Option<&DataType>, r: &DataType) -> Error {
    let msg = match l {
        Some(l) => format!("operator does not exist: {} {op} {}", l.sql_name(), r.sql_name()),
        None => format!("operator does not exist: {op} {}", r.sql_name()),
    };
    err("42883", msg)
}

fn mismatch(what: &str, a: &DataType, b: &DataType) -> Error {
    err("42804", format!("{what} types {} and {} cannot be matched", a.sql_name(), b.sql_name()))
}

pub fn is_numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::SmallInt
            | DataType::Integer
            | DataType::BigInt
            | DataType::Real
            | DataType::Double
            | DataType::Numeric(_)
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Text | DataType::Varchar(_) | DataType::Char(_))
}

/// The result type of arithmetic on two numeric types.
pub fn arith_type(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (Double, _) | (_, Double) => Double,
        (Real, Real) => Real,
        (Real, _) | (_, Real) => Double,
        (Numeric(_), _) | (_, Numeric(_)) => Numeric(None),
        (BigInt, _) | (_, BigInt) => BigInt,
        (Integer, _) | (_, Integer) => Integer,
        _ => SmallInt,
    }
}

/// The type two values are compared or combined as (UNION, CASE, IN …).
pub fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    if a == b {
        return Some(a.clone());
    }
    if is_numeric(a) && is_numeric(b) {
        return Some(arith_type(a, b));
    }
    if is_text(a) && is_text(b) {
        return Some(DataType::Text);
    }
    if let (DataType::Array(x), DataType::Array(y)) = (a, b) {
        return Some(DataType::Array(Box::new(common_type(x, y)?)));
    }
    datetime::common(a, b)
}

/// Whether a value of `from` may be stored in a column of `to` (PostgreSQL's
/// assignment casts for our types: numbers among themselves, anything to
/// text, text types among themselves).
fn assignable(from: &DataType, to: &DataType) -> bool {
    (is_numeric(from) && is_numeric(to))
        || is_text(to)
        || (is_text(from) && is_text(to))
        || datetime::assignable(from, to)
        || matches!(
            (from, to),
            (DataType::Json, DataType::Jsonb) | (DataType::Jsonb, DataType::Json)
        )
        || matches!((from, to), (DataType::Array(a), DataType::Array(b)) if assignable(a, b))
}

/// Gives an unknown literal a type, or checks an implicit conversion.
pub(crate) fn coerce(b: B, ty: &DataType) -> Result<Expr> {
    Ok(coerce_b(b, ty)?.expr)
}

fn coerce_b(b: B, ty: &DataType) -> Result<B> {
    if b.unknown {
        if let Expr::Param(i) = &b.expr {
            note_param_type(*i, ty);
        }
        return Ok(match b.expr {
            Expr::Const(v) => B::new(Expr::Const(cast::cast(v, ty)?), ty.clone()),
            other => B::new(Expr::Cast { expr: other.boxed(), to: ty.clone() }, ty.clone()),
        });
    }
    if b.ty == *ty {
        return Ok(b);
    }
    // character(n) → text drops the padding, as PostgreSQL's bpchar does.
    if matches!(b.ty, DataType::Char(_)) && matches!(ty, DataType::Text | DataType::Varchar(_)) {
        return Ok(B::new(Expr::Func { func: Func::Rtrim, args: vec![b.expr] }, ty.clone()));
    }
    if cast::implicit(&b.ty, ty) || (is_text(ty) && !is_text(&b.ty) && *ty == DataType::Text) {
        return Ok(B::new(Expr::Cast { expr: b.expr.boxed(), to: ty.clone() }, ty.clone()));
    }
    Err(err(
        "42804",
        format!("argument is of type {}, but {} was expected", b.ty.sql_name(), ty.sql_name()),
    ))
}

/// For comparisons: values of mixed numeric types compare by value, so no
/// cast is needed between numeric types (and none between text types).
fn coerce_cmp(b: B, ty: &DataType) -> Result<Expr> {
    if !b.unknown && matches!(b.ty, DataType::Char(_)) && *ty == DataType::Text {
        return coerce(b, ty);
    }
    if !b.unknown && ((is_numeric(&b.ty) && is_numeric(ty)) || (is_text(&b.ty) && is_text(ty))) {
        return Ok(b.expr);
    }
    coerce(b, ty)
}

fn coerce_bool(b: B, what: &str) -> Result<Expr> {
    if b.unknown {
        return coerce(b, &DataType::Boolean);
    }
    if b.ty != DataType::Boolean {
        return Err(err(
            "42804",
            format!("argument of {what} must be type boolean, not type {}", b.ty.sql_name()),
        ));
    }
    Ok(b.expr)
}

thread_local! {
    /// The types parameters were given by the first context that coerced
    /// them from unknown ($1 is index 0), for `Session::describe`. The
    /// coercions are free functions without the binder at hand, and one
    /// statement binds on one thread, so the binder's thread keeps them.
    static PARAM_TYPES: std::cell::RefCell<Vec<Option<DataType>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn note_param_type(i: usize, ty: &DataType) {
    PARAM_TYPES.with_borrow_mut(|p| {
        if p.len() <= i {
            p.resize(i + 1, None);
        }
        p[i].get_or_insert_with(|| ty.clone());
    });
}

/// Takes (and clears) the parameter types noted since the last call.
pub(crate) fn take_param_types() -> Vec<Option<DataType>> {
    PARAM_TYPES.with_borrow_mut(std::mem::take)
}

/// An unknown literal left without context is text.
fn finish_unknown(b: B) -> Result<Expr> {
    Ok(b.expr)
}

fn literal(v: &ast::Value, params: &mut Vec<Option<DataType>>) -> Result<B> {
    Ok(match v {
        ast::Value::Number(n, _) => return number(n),
        ast::Value::SingleQuotedString(s)
        | ast::Value::EscapedStringLiteral(s)
        | ast::Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
            B { expr: Expr::Const(Value::Text(s.clone())), ty: DataType::Text, unknown: true }
        }
        ast::Value::Boolean(b) => B::new(Expr::Const(Value::Bool(*b)), DataType::Boolean),
        ast::Value::Null => B { expr: Expr::Const(Value::Null), ty: DataType::Text, unknown: true },
        ast::Value::Placeholder(p) => {
            let i: usize = p
                .strip_prefix('$')
                .and_then(|d| d.parse().ok())
                // The wire protocol carries at most 65,535 parameters.
                .filter(|i| (1..=65_535).contains(i))
                .ok_or_else(|| err("42P02", format!("there is no parameter {p}")))?;
            if params.len() < i {
                params.resize(i, None);
            }
            B { expr: Expr::Param(i - 1), ty: DataType::Text, unknown: true }
        }
        other => return Err(unsupported(format!("literal {other}"))),
    })
}

fn number(n: &str) -> Result<B> {
    if !n.contains(['.', 'e', 'E']) {
        if let Ok(i) = n.parse::<i32>() {
            return Ok(B::new(Expr::Const(Value::Int4(i)), DataType::Integer));
        }
        if let Ok(i) = n.parse::<i64>() {
            return Ok(B::new(Expr::Const(Value::Int8(i)), DataType::BigInt));
        }
    }
    let d = cast::parse_numeric(n)?;
    Ok(B::new(Expr::Const(Value::Numeric(d)), DataType::Numeric(None)))
}

/// sqlparser's type → ours.
/// The `reg*` type a cast names, if any (`regclass`, `pg_catalog.regtype`).
fn reg_type(t: &ast::DataType) -> Option<crate::system::RegKind> {
    match t {
        ast::DataType::Regclass => Some(crate::system::RegKind::Class),
        ast::DataType::Custom(name, mods) if mods.is_empty() => {
            crate::system::reg_kind(&object_name(name).ok()?.pop()?)
        }
        _ => None,
    }
}

pub fn data_type_of(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    let len = |l: &Option<ast::CharacterLength>| -> Result<Option<u32>> {
        match l {
            None => Ok(None),
            Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                if *length == 0 || *length > 10_485_760 {
                    return Err(err(
                        "22023",
                        format!(
                            "length for type varchar must be between 1 and 10485760, not {length}"
                        ),
                    ));
                }
                Ok(Some(*length as u32))
            }
            Some(ast::CharacterLength::Max) => Err(unsupported("varchar(max)")),
        }
    };
    let numeric = |i: &ast::ExactNumberInfo| -> Result<DataType> {
        let (p, s) = match i {
            ast::ExactNumberInfo::None => return Ok(DataType::Numeric(None)),
            ast::ExactNumberInfo::Precision(p) => (*p, 0),
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
        };
        // PostgreSQL 15's ranges (numeric_typmod_in).
        if !(1..=1000).contains(&p) {
            return Err(err("22023", format!("NUMERIC precision {p} must be between 1 and 1000")));
        }
        if !(-1000..=1000).contains(&s) {
            return Err(err("22023", format!("NUMERIC scale {s} must be between -1000 and 1000")));
        }
        Ok(DataType::Numeric(Some((p as u32, s as i32))))
    };
    Ok(match t {
        T::SmallInt(_) | T::Int2(_) => DataType::SmallInt,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Integer,
        T::BigInt(_) | T::Int8(_) => DataType::BigInt,
        T::Real | T::Float4 => DataType::Real,
        T::Double(_) | T::DoublePrecision | T::Float8 => DataType::Double,
        T::Float(info) => match info {
            ast::ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Real,
            _ => DataType::Double,
        },
        T::Numeric(i) | T::Decimal(i) => numeric(i)?,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Text => DataType::Text,
        T::Varchar(l) | T::CharacterVarying(l) | T::CharVarying(l) => DataType::Varchar(len(l)?),
        T::Char(l) | T::Character(l) => DataType::Char(len(l)?.unwrap_or(1)),
        T::Bytea => DataType::Bytea,
        T::Uuid => DataType::Uuid,
        T::JSON => DataType::Json,
        T::JSONB => DataType::Jsonb,
        T::Array(
            ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | ast::ArrayElemTypeDef::AngleBracket(inner)
            | ast::ArrayElemTypeDef::Qualified(inner, _),
        ) => {
            // int[][] is int[] in PostgreSQL (dimensions are not part of the type).
            match data_type_of(inner)? {
                DataType::Array(e) => DataType::Array(e),
                e => DataType::Array(Box::new(e)),
            }
        }
        t if let Some(r) = datetime::data_type(t) => r?.0,
        T::Custom(name, mods) if mods.is_empty() => {
            let n = object_name(name)?.pop().unwrap_or_default();
            match n.as_str() {
                "int2" => DataType::SmallInt,
                "int4" => DataType::Integer,
                "int8" => DataType::BigInt,
                "float4" => DataType::Real,
                "float8" => DataType::Double,
                "bool" => DataType::Boolean,
                "bpchar" => DataType::Char(1),
                // System catalog types: oids are integers, names text
                // (see `system`).
                "text" | "name" | "char" => DataType::Text,
                "oid" | "xid" | "cid" | "regproc" => DataType::Integer,
                "varchar" => DataType::Varchar(None),
                "numeric" => DataType::Numeric(None),
                "int2vector" | "oidvector" | "pg_node_tree" => DataType::Text,
                "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2" => {
                    return Err(err(
                        "42601",
                        format!("type {n} is only allowed in a column definition"),
                    ));
                }
                _ => return Err(err("42704", format!("type \"{n}\" does not exist"))),
            }
        }
        other => return Err(unsupported(format!("type {other}"))),
    })
}

/// SQL's SIMILAR TO pattern as an anchored regular expression: `%` is
/// `.*`, `_` is `.`, `\` escapes; `| * + ? { } ( ) [ ]` keep their
/// meaning; other regular-expression characters are literal.
fn similar_to_regex(p: &str) -> String {
    let mut out = String::from("^(?s:");
    let mut chars = p.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => out.push_str(&regex::escape(&n.to_string())),
                None => out.push_str("\\\\"),
            },
            '[' => {
                in_class = true;
                out.push('[');
            }
            ']' => {
                in_class = false;
                out.push(']');
            }
            _ if in_class => out.push(c),
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '|' | '*' | '+' | '?' | '{' | '}' | '(' | ')' => out.push(c),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str(")$");
    out
}
