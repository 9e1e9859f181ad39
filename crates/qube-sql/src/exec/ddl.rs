//! DDL: tables (columns, NOT NULL, DEFAULT, PRIMARY KEY, UNIQUE, CHECK,
//! SERIAL and identity columns), indexes, views, DROP and TRUNCATE, all
//! through the transactional catalog.

use qube_catalog::{
    Column, Constraint, ConstraintKind, Def, Identity, IndexColumn, IndexDef, Namespace, ObjectId,
    SequenceDef, TableDef, ViewDef,
};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use super::dml::table_indexes;
use crate::plan::bind::{Binder, data_type_of, ident, object_name, unsupported};
use crate::session::{QueryResult, Shared};
use crate::storage;
use crate::types::Value;

fn owner(shared: &Shared, txn: &mut Transaction) -> Result<ObjectId> {
    Ok(shared
        .catalog
        .lookup(txn, Namespace::Role, 0, qube_catalog::BOOTSTRAP_NAME)?
        .map_or(0, |r| r.id))
}

fn single_name(n: &ast::ObjectName) -> Result<String> {
    let parts = object_name(n)?;
    match parts.as_slice() {
        [t] | [_, t] => Ok(t.clone()),
        _ => Err(unsupported(format!("name {n}"))),
    }
}

pub fn ddl(
    shared: &Shared,
    txn: &mut Transaction,
    schema: ObjectId,
    s: &ast::Statement,
) -> Result<QueryResult> {
    use ast::Statement as S;
    match s {
        S::CreateTable(ct) => create_table(shared, txn, schema, ct),
        S::CreateIndex(ci) => create_index(shared, txn, schema, ci),
        S::CreateView(cv) => {
            if cv.materialized {
                return Err(unsupported("materialized views"));
            }
            let name = single_name(&cv.name)?;
            let mut b = Binder::new(&shared.catalog, txn, schema);
            let q = b.query(&cv.query)?;
            drop(b);
            let mut columns: Vec<String> = q.columns.iter().map(|c| c.0.clone()).collect();
            for (i, c) in cv.columns.iter().enumerate() {
                if let Some(col) = columns.get_mut(i) {
                    *col = ident(&c.name);
                }
            }
            if let Some(existing) =
                shared.catalog.lookup(txn, Namespace::Relation, schema, &name)?
            {
                if cv.or_replace && matches!(existing.def, Def::View(_)) {
                    shared.catalog.drop(txn, existing.id, false)?;
                } else if cv.if_not_exists {
                    return Ok(QueryResult {
                        columns: vec![],
                        rows: vec![],
                        tag: "CREATE VIEW".into(),
                    });
                } else {
                    return Err(Error::user(
                        "42P07",
                        format!("relation \"{name}\" already exists"),
                    ));
                }
            }
            let o = owner(shared, txn)?;
            shared.catalog.create(
                txn,
                schema,
                &name,
                o,
                Def::View(ViewDef { query: cv.query.to_string(), columns }),
            )?;
            Ok(done("CREATE VIEW"))
        }
        S::Drop { object_type, if_exists, names, cascade, .. } => {
            let (kind, tag) = match object_type {
                ast::ObjectType::Table => ("table", "DROP TABLE"),
                ast::ObjectType::View => ("view", "DROP VIEW"),
                ast::ObjectType::Index => ("index", "DROP INDEX"),
                ast::ObjectType::Sequence => ("sequence", "DROP SEQUENCE"),
                other => return Err(unsupported(format!("DROP {other}"))),
            };
            for n in names {
                let name = single_name(n)?;
                let Some(obj) = shared.catalog.lookup(txn, Namespace::Relation, schema, &name)?
                else {
                    if *if_exists {
                        continue;
                    }
                    let code =
                        if kind == "index" || kind == "sequence" { "42704" } else { "42P01" };
                    return Err(Error::user(code, format!("{kind} \"{name}\" does not exist")));
                };
                let matches = matches!(
                    (&obj.def, kind),
                    (Def::Table(_), "table")
                        | (Def::View(_), "view")
                        | (Def::Index(_), "index")
                        | (Def::Sequence(_), "sequence")
                );
                if !matches {
                    return Err(Error::user("42809", format!("\"{name}\" is not a {kind}")));
                }
                match &obj.def {
                    Def::Table(_) => {
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        let t = b.table(n)?;
                        let idx = table_indexes(&mut b, &t)?;
                        drop(b);
                        for (id, _, _) in idx {
                            storage::clear_prefix(txn, &storage::index_prefix(id))?;
                        }
                        storage::clear_prefix(txn, &storage::table_prefix(obj.id))?;
                        shared.rowids.forget(obj.id);
                    }
                    Def::Index(_) => {
                        storage::clear_prefix(txn, &storage::index_prefix(obj.id))?;
                    }
                    _ => {}
                }
                shared.catalog.drop(txn, obj.id, *cascade)?;
            }
            Ok(done(tag))
        }
        S::Truncate(t) => {
            for target in &t.table_names {
                let mut b = Binder::new(&shared.catalog, txn, schema);
                let tab = b.table(&target.name)?;
                let idx = table_indexes(&mut b, &tab)?;
                drop(b);
                for (id, _, _) in idx {
                    storage::clear_prefix(txn, &storage::index_prefix(id))?;
                }
                storage::clear_prefix(txn, &storage::table_prefix(tab.id))?;
            }
            Ok(done("TRUNCATE TABLE"))
        }
        other => Err(unsupported(format!("statement {}", first_words(other)))),
    }
}

fn first_words(s: &ast::Statement) -> String {
    s.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn done(tag: &str) -> QueryResult {
    QueryResult { columns: vec![], rows: vec![], tag: tag.into() }
}

fn create_table(
    shared: &Shared,
    txn: &mut Transaction,
    schema: ObjectId,
    ct: &ast::CreateTable,
) -> Result<QueryResult> {
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(unsupported("CREATE TABLE … AS / LIKE"));
    }
    let name = single_name(&ct.name)?;
    if shared.catalog.lookup(txn, Namespace::Relation, schema, &name)?.is_some() {
        if ct.if_not_exists {
            return Ok(done("CREATE TABLE"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let own = owner(shared, txn)?;
    let mut columns: Vec<Column> = Vec::new();
    let mut constraints: Vec<Constraint> = Vec::new();
    // (constraint name, columns, primary) for indexes to create.
    let mut keys: Vec<(Option<String>, Vec<String>, bool)> = Vec::new();
    let mut serials: Vec<(usize, DataType)> = Vec::new();
    for cd in &ct.columns {
        let cname = ident(&cd.name);
        if columns.iter().any(|c| c.name == cname) {
            return Err(Error::user(
                "42701",
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let (data_type, serial) = match &cd.data_type {
            ast::DataType::Custom(n, m) if m.is_empty() => {
                match object_name(n)?.pop().unwrap_or_default().as_str() {
                    "serial" | "serial4" => (DataType::Integer, true),
                    "bigserial" | "serial8" => (DataType::BigInt, true),
                    "smallserial" | "serial2" => (DataType::SmallInt, true),
                    _ => (data_type_of(&cd.data_type)?, false),
                }
            }
            t => (data_type_of(t)?, false),
        };
        let mut col = Column {
            name: cname.clone(),
            data_type: data_type.clone(),
            nullable: !serial,
            default: None,
            identity: None,
            comment: None,
        };
        if serial {
            serials.push((columns.len(), data_type.clone()));
        }
        for opt in &cd.options {
            let cons_name = opt.name.as_ref().map(ident);
            match &opt.option {
                ast::ColumnOption::Null => col.nullable = true,
                ast::ColumnOption::NotNull => col.nullable = false,
                ast::ColumnOption::Default(e) => col.default = Some(e.to_string()),
                ast::ColumnOption::PrimaryKey(_) => {
                    col.nullable = false;
                    keys.push((cons_name, vec![cname.clone()], true));
                }
                ast::ColumnOption::Unique(_) => keys.push((cons_name, vec![cname.clone()], false)),
                ast::ColumnOption::Check(c) => constraints.push(Constraint {
                    name: cons_name.unwrap_or_else(|| format!("{name}_{cname}_check")),
                    kind: ConstraintKind::Check { expr: c.expr.to_string() },
                }),
                ast::ColumnOption::Generated { .. } => {
                    serials.push((columns.len(), data_type.clone()));
                    col.nullable = false;
                }
                other => return Err(unsupported(format!("column option {other}"))),
            }
        }
        columns.push(col);
    }
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey(pk) => {
                let cols = index_cols(&pk.columns)?;
                for cn in &cols {
                    match columns.iter_mut().find(|c| c.name == *cn) {
                        Some(col) => col.nullable = false,
                        None => {
                            return Err(Error::user(
                                "42703",
                                format!("column \"{cn}\" named in key does not exist"),
                            ));
                        }
                    }
                }
                keys.push((pk.name.as_ref().map(ident), cols, true));
            }
            ast::TableConstraint::Unique(u) => {
                let cols = index_cols(&u.columns)?;
                keys.push((u.name.as_ref().map(ident), cols, false));
            }
            ast::TableConstraint::Check(ch) => constraints.push(Constraint {
                name: ch.name.as_ref().map(ident).unwrap_or_else(|| format!("{name}_check")),
                kind: ConstraintKind::Check { expr: ch.expr.to_string() },
            }),
            other => return Err(unsupported(format!("table constraint {other}"))),
        }
    }
    if keys.iter().filter(|k| k.2).count() > 1 {
        return Err(Error::user(
            "42P16",
            format!("multiple primary keys for table \"{name}\" are not allowed"),
        ));
    }
    for (_, cols, _) in &keys {
        for cn in cols {
            if !columns.iter().any(|c| c.name == *cn) {
                return Err(Error::user(
                    "42703",
                    format!("column \"{cn}\" named in key does not exist"),
                ));
            }
        }
    }
    let table_id = shared.catalog.create(
        txn,
        schema,
        &name,
        own,
        Def::Table(TableDef { columns: columns.clone(), constraints: constraints.clone() }),
    )?;
    // Sequences of SERIAL / identity columns.
    for (pos, ty) in serials {
        let cname = columns[pos].name.clone();
        let max = match ty {
            DataType::SmallInt => i16::MAX as i64,
            DataType::Integer => i32::MAX as i64,
            _ => i64::MAX,
        };
        let seq = shared.catalog.create(
            txn,
            schema,
            &format!("{name}_{cname}_seq"),
            own,
            Def::Sequence(SequenceDef {
                data_type: ty,
                start: 1,
                increment: 1,
                min: 1,
                max,
                cycle: false,
                owned_by: Some((table_id, cname)),
            }),
        )?;
        columns[pos].identity = Some(Identity { always: false, sequence: seq });
    }
    // Indexes of PRIMARY KEY and UNIQUE.
    for (cons, cols, primary) in keys {
        let iname = cons.clone().unwrap_or_else(|| {
            if primary { format!("{name}_pkey") } else { format!("{name}_{}_key", cols.join("_")) }
        });
        let index = shared.catalog.create(
            txn,
            schema,
            &iname,
            own,
            Def::Index(IndexDef {
                table: table_id,
                columns: cols
                    .iter()
                    .map(|c| IndexColumn { expr: c.clone(), desc: false, nulls_first: false })
                    .collect(),
                unique: true,
                predicate: None,
                method: "btree".into(),
            }),
        )?;
        constraints.push(Constraint {
            name: iname,
            kind: if primary {
                ConstraintKind::PrimaryKey { columns: cols, index }
            } else {
                ConstraintKind::Unique { columns: cols, index }
            },
        });
    }
    if let Some(obj) = shared.catalog.get(txn, table_id)? {
        let mut obj = (*obj).clone();
        obj.def = Def::Table(TableDef { columns, constraints });
        shared.catalog.update(txn, obj)?;
    }
    Ok(done("CREATE TABLE"))
}

fn index_cols(cols: &[ast::IndexColumn]) -> Result<Vec<String>> {
    cols.iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) => Ok(ident(i)),
            other => Err(unsupported(format!("key on expression {other}"))),
        })
        .collect()
}

fn create_index(
    shared: &Shared,
    txn: &mut Transaction,
    schema: ObjectId,
    ci: &ast::CreateIndex,
) -> Result<QueryResult> {
    if ci.predicate.is_some() || !ci.include.is_empty() {
        return Err(unsupported("partial or covering indexes"));
    }
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = b.table(&ci.table_name)?;
    drop(b);
    let cols = index_cols(&ci.columns)?;
    let mut positions = Vec::new();
    for c in &cols {
        positions.push(
            t.def
                .columns
                .iter()
                .position(|col| col.name == *c)
                .ok_or_else(|| Error::user("42703", format!("column \"{c}\" does not exist")))?,
        );
    }
    let name = match &ci.name {
        Some(n) => single_name(n)?,
        None => format!("{}_{}_idx", t.name, cols.join("_")),
    };
    if shared.catalog.lookup(txn, Namespace::Relation, schema, &name)?.is_some() {
        if ci.if_not_exists {
            return Ok(done("CREATE INDEX"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let own = owner(shared, txn)?;
    let id = shared.catalog.create(
        txn,
        schema,
        &name,
        own,
        Def::Index(IndexDef {
            table: t.id,
            columns: ci
                .columns
                .iter()
                .zip(&cols)
                .map(|(c, name)| {
                    let desc = matches!(c.column.options.sort, Some(ast::OrderBySort::Desc));
                    IndexColumn {
                        expr: name.clone(),
                        desc,
                        nulls_first: c.column.options.nulls_first.unwrap_or(desc),
                    }
                })
                .collect(),
            unique: ci.unique,
            predicate: None,
            method: "btree".into(),
        }),
    )?;
    // Build from the existing rows.
    let rows = storage::scan(txn, t.id, t.def.columns.len())?;
    for (rowid, row) in rows {
        let vals: Vec<Value> = positions.iter().map(|&p| row[p].clone()).collect();
        let key = storage::index_key(id, &vals, rowid, ci.unique);
        if ci.unique && !vals.iter().any(Value::is_null) && txn.get(&key)?.is_some() {
            return Err(Error::user(
                "23505",
                format!(
                    "could not create unique index \"{name}\": key ({}) is duplicated",
                    cols.join(", ")
                ),
            ));
        }
        txn.set(&key, &rowid.to_be_bytes())?;
    }
    Ok(done("CREATE INDEX"))
}
