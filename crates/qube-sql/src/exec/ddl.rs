//! DDL: tables (columns, NOT NULL, DEFAULT, PRIMARY KEY, UNIQUE, CHECK,
//! SERIAL and identity columns), indexes, views, DROP and TRUNCATE, all
//! through the transactional catalog.

use qube_catalog::{
    Column, Constraint, ConstraintKind, Def, Identity, IndexColumn, IndexDef, Namespace, ObjectId,
    RefAction, SequenceDef, TableDef, ViewDef,
};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use super::dml::table_indexes;
use super::namespace;
use crate::names::SearchPath;
use crate::plan::bind::{Binder, data_type_of, ident, object_name, unsupported};
use crate::session::{QueryResult, Shared};
use crate::storage;
use crate::types::Value;

pub(crate) fn owner(shared: &Shared, txn: &mut Transaction) -> Result<ObjectId> {
    Ok(shared
        .catalog
        .lookup(txn, Namespace::Role, 0, qube_catalog::BOOTSTRAP_NAME)?
        .map_or(0, |r| r.id))
}

/// A new name that cannot carry a schema (RENAME TO): 42601 if qualified.
fn bare_name(n: &ast::ObjectName) -> Result<String> {
    match object_name(n)?.as_slice() {
        [t] => Ok(t.clone()),
        _ => Err(Error::user("42601", format!("the new name \"{n}\" cannot be qualified"))),
    }
}

pub fn ddl(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
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
            let (sid, name) = schema.target(&shared.catalog, txn, &cv.name)?;
            let mut b = Binder::new(&shared.catalog, txn, schema);
            let q = b.query(&cv.query)?;
            drop(b);
            let mut columns: Vec<String> = q.columns.iter().map(|c| c.0.clone()).collect();
            for (i, c) in cv.columns.iter().enumerate() {
                if let Some(col) = columns.get_mut(i) {
                    *col = ident(&c.name);
                }
            }
            // A record is a value of a query, never of a relation's column.
            if let Some(i) = q.columns.iter().position(|c| matches!(c.1, DataType::Record(_))) {
                return Err(Error::user(
                    "42P16",
                    format!("column \"{}\" has pseudo-type record", columns[i]),
                ));
            }
            if let Some(existing) = shared.catalog.lookup(txn, Namespace::Relation, sid, &name)? {
                if cv.or_replace && matches!(existing.def, Def::View(_)) {
                    shared.catalog.drop(txn, existing.id, false)?;
                } else if cv.if_not_exists {
                    crate::notice::skipping_existing("42P07", "relation", &name);
                    return Ok(QueryResult {
                        columns: crate::session::no_columns(),
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
                sid,
                &name,
                o,
                Def::View(ViewDef { query: cv.query.to_string(), columns }),
            )?;
            Ok(done("CREATE VIEW"))
        }
        S::CreateSchema { schema_name, if_not_exists, .. } => {
            namespace::create_schema(shared, txn, schema, schema_name, *if_not_exists)
        }
        S::CreateDatabase { db_name, if_not_exists, .. } => {
            namespace::create_database(shared, txn, db_name, *if_not_exists)
        }
        S::CreateSequence { temporary: false, if_not_exists, name, sequence_options } => {
            namespace::create_sequence(shared, txn, schema, name, *if_not_exists, sequence_options)
        }
        S::Comment { object_type, object_name, comment, .. } => {
            namespace::comment(shared, txn, schema, object_type, object_name, comment.as_deref())
        }
        S::Drop { object_type: ast::ObjectType::Schema, if_exists, names, cascade, .. } => {
            namespace::drop_schemas(shared, txn, schema, names, *if_exists, *cascade)
        }
        S::CreateRole(c) => super::role::create_role(shared, txn, schema, c),
        S::AlterRole { name, operation } => {
            super::role::alter_role(shared, txn, schema, name, operation)
        }
        S::Drop {
            object_type: ast::ObjectType::Role | ast::ObjectType::User,
            if_exists,
            names,
            ..
        } => super::role::drop_roles(shared, txn, schema, names, *if_exists),
        S::Drop { object_type: ast::ObjectType::Database, if_exists, names, .. } => {
            namespace::drop_database(shared, txn, schema, names, *if_exists)
        }
        S::Drop { object_type, if_exists, names, cascade, .. } => {
            let (kind, tag) = match object_type {
                ast::ObjectType::Table => ("table", "DROP TABLE"),
                ast::ObjectType::View => ("view", "DROP VIEW"),
                ast::ObjectType::Index => ("index", "DROP INDEX"),
                ast::ObjectType::Sequence => ("sequence", "DROP SEQUENCE"),
                other => return Err(unsupported(format!("DROP {other}"))),
            };
            let mut objs = Vec::with_capacity(names.len());
            for n in names {
                let name = object_name(n)?.join(".");
                let Some(obj) = schema.relation_named(&shared.catalog, txn, n)? else {
                    if *if_exists {
                        crate::notice::skipping_missing(kind, &name);
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
                if let Def::Index(ix) = &obj.def {
                    constraint_index_kept(shared, txn, obj.id, &obj.name, ix.table)?;
                }
                if !objs.iter().any(|o: &std::sync::Arc<qube_catalog::Object>| o.id == obj.id) {
                    objs.push(obj);
                }
            }
            // Tables that reference each other by foreign keys may go
            // together, as in PostgreSQL (pgbench drops its four at once):
            // a table goes once no other table still to go references it.
            let references = |from: &qube_catalog::Object, to: qube_catalog::ObjectId| matches!(&from.def, Def::Table(t) if t.constraints.iter().any(|c| matches!(&c.kind, qube_catalog::ConstraintKind::ForeignKey { ref_table, .. } if *ref_table == to)));
            while !objs.is_empty() {
                let next = (0..objs.len())
                    .find(|&i| {
                        !objs.iter().enumerate().any(|(j, o)| j != i && references(o, objs[i].id))
                    })
                    .unwrap_or(0);
                let obj = objs.remove(next);
                super::namespace::clear_rows(shared, txn, &obj)?;
                shared.catalog.drop(txn, obj.id, *cascade)?;
            }
            Ok(done(tag))
        }
        S::AlterTable(at) => alter_table(shared, txn, schema, at),
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

/// DROP INDEX of the index of a PRIMARY KEY or UNIQUE constraint is
/// refused, as in PostgreSQL (2BP01): the constraint would lose its check
/// (and a table with key rowids its key).
fn constraint_index_kept(
    shared: &Shared,
    txn: &mut Transaction,
    index: ObjectId,
    name: &str,
    table: ObjectId,
) -> Result<()> {
    let Some(t) = shared.catalog.get(txn, table)? else { return Ok(()) };
    let Def::Table(def) = &t.def else { return Ok(()) };
    for c in &def.constraints {
        if let ConstraintKind::PrimaryKey { index: i, .. } | ConstraintKind::Unique { index: i, .. } =
            &c.kind
            && *i == index
        {
            return Err(Error::user(
                "2BP01",
                format!(
                    "cannot drop index {name} because constraint {} on table {} requires it",
                    c.name, t.name
                ),
            )
            .with_hint(format!(
                "You can drop constraint {} on table {} instead.",
                c.name, t.name
            )));
        }
    }
    Ok(())
}

/// A CHECK constraint's name: the one given, else PostgreSQL's choice
/// (`ChooseConstraintName` as `AddRelationNewConstraints` calls it):
/// `<table>_<column>_check` when the expression reads exactly one column,
/// else `<table>_check`, with the first free number appended (`1`, `2`, …)
/// while `taken` says the name is in use. Binds the expression over the
/// table's columns, so an unknown column is 42703 here, as in PostgreSQL.
fn check_name(
    b: &mut Binder,
    table: &str,
    cols: &[(String, DataType)],
    expr: &ast::Expr,
    given: Option<String>,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String> {
    let (bound, _) = b.with_columns(table, cols, |b| b.expr_typed(expr))?;
    if let Some(n) = given {
        return Ok(n);
    }
    let mut used = Vec::new();
    bound.columns_used(&mut used);
    used.sort_unstable();
    used.dedup();
    let base = match used.as_slice() {
        [c] if *c < cols.len() => format!("{table}_{}_check", cols[*c].0),
        _ => format!("{table}_check"),
    };
    let mut name = base.clone();
    let mut k = 0u32;
    while taken(&name) {
        k += 1;
        name = format!("{base}{k}");
    }
    Ok(name)
}

fn first_words(s: &ast::Statement) -> String {
    s.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

pub(crate) fn done(tag: &str) -> QueryResult {
    QueryResult { columns: crate::session::no_columns(), rows: vec![], tag: tag.into() }
}

fn create_table(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    ct: &ast::CreateTable,
) -> Result<QueryResult> {
    if ct.like.is_some() || ct.clone.is_some() {
        return Err(unsupported("CREATE TABLE … LIKE"));
    }
    if matches!(ct.on_commit, Some(ast::OnCommit::Drop | ast::OnCommit::DeleteRows)) {
        return Err(unsupported("ON COMMIT DROP / DELETE ROWS"));
    }
    // Refused rather than ignored: a table made without them would take
    // rows (or lack columns) that PostgreSQL's would not.
    if ct.inherits.is_some() {
        return Err(unsupported("table inheritance (INHERITS)"));
    }
    if ct.partition_of.is_some() || ct.for_values.is_some() || ct.partition_by.is_some() {
        return Err(unsupported("partitioned tables (PARTITION BY / PARTITION OF)"));
    }
    if let Some(q) = &ct.query {
        return create_table_as(shared, txn, schema, ct, q);
    }
    let (sid, name) = table_target(shared, txn, schema, &ct.name, ct.temporary)?;
    if shared.catalog.lookup(txn, Namespace::Relation, sid, &name)?.is_some() {
        if ct.if_not_exists {
            crate::notice::skipping_existing("42P07", "relation", &name);
            return Ok(done("CREATE TABLE"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let mut fkeys: Vec<Fk> = Vec::new();
    let own = owner(shared, txn)?;
    let mut columns: Vec<Column> = Vec::new();
    let mut constraints: Vec<Constraint> = Vec::new();
    // (constraint name, columns, primary) for indexes to create.
    let mut keys: Vec<(Option<String>, Vec<String>, bool)> = Vec::new();
    let mut serials: Vec<(usize, DataType)> = Vec::new();
    // CHECK constraints: (name given, expression), named once all columns are known.
    let mut checks: Vec<(Option<String>, &ast::Expr)> = Vec::new();
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
                ast::ColumnOption::ForeignKey(fk) => fkeys.push(Fk {
                    name: cons_name.or_else(|| fk.name.as_ref().map(ident)),
                    columns: vec![cname.clone()],
                    table: object_name(&fk.foreign_table)?,
                    ref_columns: fk.referred_columns.iter().map(ident).collect(),
                    on_delete: ref_action(fk.on_delete),
                    on_update: ref_action(fk.on_update),
                }),
                ast::ColumnOption::Check(c) => checks.push((cons_name, &c.expr)),
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
            ast::TableConstraint::ForeignKey(fk) => fkeys.push(Fk {
                name: fk.name.as_ref().map(ident),
                columns: fk.columns.iter().map(ident).collect(),
                table: object_name(&fk.foreign_table)?,
                ref_columns: fk.referred_columns.iter().map(ident).collect(),
                on_delete: ref_action(fk.on_delete),
                on_update: ref_action(fk.on_update),
            }),
            ast::TableConstraint::Check(ch) => checks.push((ch.name.as_ref().map(ident), &ch.expr)),
            other => return Err(unsupported(format!("table constraint {other}"))),
        }
    }
    // CHECK constraints, column ones first (sqlparser keeps columns and
    // table constraints apart, so a table constraint written before a
    // column's own is named after it here).
    {
        let cols: Vec<(String, DataType)> =
            columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
        let mut b = Binder::new(&shared.catalog, txn, schema);
        for (given, expr) in checks {
            let taken = |n: &str| constraints.iter().any(|c| c.name == n);
            let cname = check_name(&mut b, &name, &cols, expr, given, &taken)?;
            constraints.push(Constraint {
                name: cname,
                kind: ConstraintKind::Check { expr: expr.to_string() },
            });
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
        sid,
        &name,
        own,
        Def::Table(TableDef {
            columns: columns.clone(),
            constraints: constraints.clone(),
            rowid_key: false,
        }),
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
            sid,
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
            sid,
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
    // Foreign keys: the referenced columns (default: the primary key) must
    // carry a unique index, with matching types.
    for fk in fkeys {
        let c = resolve_fk(shared, txn, schema, table_id, &name, &columns, &constraints, fk)?;
        constraints.push(c);
    }
    if let Some(obj) = shared.catalog.get(txn, table_id)? {
        let mut obj = (*obj).clone();
        let mut def = TableDef { columns, constraints, rowid_key: false };
        // A primary key on one integer column keys the rows (`storage`).
        def.rowid_key = storage::qualifying_key(&def).is_some();
        obj.def = Def::Table(def);
        shared.catalog.update(txn, obj)?;
    }
    Ok(done("CREATE TABLE"))
}

/// Resolves a FOREIGN KEY of table `table_id` (named `name`, with
/// `columns` and `constraints` as they are now): the referenced table
/// and columns (default: its primary key), which must carry a unique
/// constraint and have compatible types.
#[allow(clippy::too_many_arguments)]
fn resolve_fk(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    table_id: ObjectId,
    name: &str,
    columns: &[Column],
    constraints: &[Constraint],
    fk: Fk,
) -> Result<Constraint> {
    let ref_name = fk.table.join(".");
    let found = schema.relation(&shared.catalog, txn, &fk.table)?;
    let (ref_id, ref_def) = match found {
        Some(o) if o.id == table_id => {
            let def = TableDef {
                columns: columns.to_vec(),
                constraints: constraints.to_vec(),
                rowid_key: false,
            };
            (table_id, def)
        }
        Some(o) => match &o.def {
            Def::Table(d) => (o.id, d.clone()),
            _ => {
                return Err(Error::user(
                    "42809",
                    format!("referenced relation \"{ref_name}\" is not a table"),
                ));
            }
        },
        None => {
            return Err(Error::user("42P01", format!("relation \"{ref_name}\" does not exist")));
        }
    };
    let ref_columns = if fk.ref_columns.is_empty() {
        ref_def
            .constraints
            .iter()
            .find_map(|c| match &c.kind {
                ConstraintKind::PrimaryKey { columns, .. } => Some(columns.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::user(
                    "42830",
                    format!("there is no primary key for referenced table \"{ref_name}\""),
                )
            })?
    } else {
        fk.ref_columns.clone()
    };
    if ref_columns.len() != fk.columns.len() {
        return Err(Error::user(
            "42830",
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    let has_unique = ref_def.constraints.iter().any(|c| match &c.kind {
        ConstraintKind::PrimaryKey { columns, .. } | ConstraintKind::Unique { columns, .. } => {
            let mut a = columns.clone();
            let mut b = ref_columns.clone();
            a.sort();
            b.sort();
            a == b
        }
        _ => false,
    });
    if !has_unique {
        return Err(Error::user(
            "42830",
            format!(
                "there is no unique constraint matching given keys for referenced table \"{ref_name}\""
            ),
        ));
    }
    for (c, r) in fk.columns.iter().zip(&ref_columns) {
        let ct = columns.iter().find(|x| x.name == *c).ok_or_else(|| {
            Error::user(
                "42703",
                format!("column \"{c}\" referenced in foreign key constraint does not exist"),
            )
        })?;
        let rt = ref_def.columns.iter().find(|x| x.name == *r).ok_or_else(|| {
            Error::user(
                "42703",
                format!("column \"{r}\" referenced in foreign key constraint does not exist"),
            )
        })?;
        if crate::plan::bind::common_type(&ct.data_type, &rt.data_type).is_none() {
            return Err(Error::user(
                "42804",
                format!(
                    "foreign key constraint cannot be implemented: key columns \"{c}\" and \"{r}\" are of incompatible types: {} and {}",
                    ct.data_type.sql_name(),
                    rt.data_type.sql_name()
                ),
            ));
        }
    }
    Ok(Constraint {
        name: fk.name.unwrap_or_else(|| format!("{name}_{}_fkey", fk.columns.join("_"))),
        kind: ConstraintKind::ForeignKey {
            columns: fk.columns,
            ref_table: ref_id,
            ref_columns,
            on_delete: fk.on_delete,
            on_update: fk.on_update,
        },
    })
}

/// The schema a new table goes into: for a TEMPORARY one the session's
/// temporary schema (made on first use), else as `SearchPath::target`.
fn table_target(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    name: &ast::ObjectName,
    temporary: bool,
) -> Result<(ObjectId, String)> {
    if !temporary {
        return schema.target(&shared.catalog, txn, name);
    }
    let parts = object_name(name)?;
    let bare = match parts.as_slice() {
        [t] => t.clone(),
        [s, t] if s == "pg_temp" || *s == schema.temp_name => t.clone(),
        _ => {
            return Err(Error::user(
                "42P16",
                "cannot create temporary relation in non-temporary schema",
            ));
        }
    };
    let sid = match shared.catalog.lookup(txn, Namespace::Schema, schema.db, &schema.temp_name)? {
        Some(s) => s.id,
        None => {
            let own = owner(shared, txn)?;
            shared.catalog.create(
                txn,
                schema.db,
                &schema.temp_name,
                own,
                Def::Schema(qube_catalog::SchemaDef::default()),
            )?
        }
    };
    Ok((sid, bare))
}

/// A FOREIGN KEY as written, resolved once the table exists.
struct Fk {
    name: Option<String>,
    columns: Vec<String>,
    table: Vec<String>,
    ref_columns: Vec<String>,
    on_delete: RefAction,
    on_update: RefAction,
}

fn ref_action(a: Option<ast::ReferentialAction>) -> RefAction {
    match a {
        None | Some(ast::ReferentialAction::NoAction) => RefAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => RefAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => RefAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => RefAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => RefAction::SetDefault,
    }
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
    schema: &SearchPath,
    ci: &ast::CreateIndex,
) -> Result<QueryResult> {
    if !ci.include.is_empty() {
        return Err(unsupported("covering indexes (INCLUDE)"));
    }
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = b.table(&ci.table_name)?;
    // Each key is a column or an expression over the row; a predicate
    // makes a partial index. Both are checked by binding them now.
    let cols: Vec<(String, DataType)> =
        t.def.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
    let mut texts = Vec::new();
    let mut positions = Vec::new();
    let mut name_parts = Vec::new();
    for c in &ci.columns {
        match &c.column.expr {
            ast::Expr::Identifier(i) => {
                let cname = ident(i);
                let pos =
                    t.def.columns.iter().position(|col| col.name == cname).ok_or_else(|| {
                        Error::user("42703", format!("column \"{cname}\" does not exist"))
                    })?;
                positions.push(pos);
                name_parts.push(cname.clone());
                texts.push(cname);
            }
            e => {
                if crate::plan::bind::contains_aggregate(e) {
                    return Err(Error::user(
                        "42803",
                        "aggregate functions are not allowed in index expressions",
                    ));
                }
                b.with_columns(&t.name, &cols, |b| b.expr_typed(e))?;
                name_parts.push(match e {
                    ast::Expr::Function(f) => {
                        object_name(&f.name)?.pop().unwrap_or_else(|| "expr".into())
                    }
                    _ => "expr".into(),
                });
                texts.push(e.to_string());
            }
        }
    }
    let predicate = match &ci.predicate {
        Some(p) => {
            let (_, ty) = b.with_columns(&t.name, &cols, |b| b.expr_typed(p))?;
            if ty != DataType::Boolean {
                return Err(Error::user(
                    "42804",
                    format!("argument of WHERE must be type boolean, not type {}", ty.sql_name()),
                ));
            }
            Some(p.to_string())
        }
        None => None,
    };
    drop(b);
    let plain = positions.len() == texts.len() && predicate.is_none();
    let name = match &ci.name {
        Some(n) => match object_name(n)?.as_slice() {
            [n] => n.clone(),
            _ => {
                return Err(Error::user(
                    "42601",
                    "index name cannot be schema-qualified: the index goes into its table's schema",
                ));
            }
        },
        None => format!("{}_{}_idx", t.name, name_parts.join("_")),
    };
    if shared.catalog.lookup(txn, Namespace::Relation, t.schema, &name)?.is_some() {
        if ci.if_not_exists {
            crate::notice::skipping_existing("42P07", "relation", &name);
            return Ok(done("CREATE INDEX"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let own = owner(shared, txn)?;
    let id = shared.catalog.create(
        txn,
        t.schema,
        &name,
        own,
        Def::Index(IndexDef {
            table: t.id,
            columns: ci
                .columns
                .iter()
                .zip(&texts)
                .map(|(c, text)| {
                    let desc = matches!(c.column.options.sort, Some(ast::OrderBySort::Desc));
                    IndexColumn {
                        expr: text.clone(),
                        desc,
                        nulls_first: c.column.options.nulls_first.unwrap_or(desc),
                    }
                })
                .collect(),
            unique: ci.unique,
            predicate,
            method: "btree".into(),
        }),
    )?;
    let ncols = t.def.columns.len();
    if plain {
        build_index(txn, t.id, ncols, &positions, id, ci.unique, &name, &texts)?;
        return Ok(done("CREATE INDEX"));
    }
    // Expression or partial: the rows' entries through the bound index.
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let target = super::dml::target_by_id(&mut b, t.id)?;
    drop(b);
    let ix = target
        .expr_indexes
        .iter()
        .find(|x| x.id == id)
        .ok_or_else(|| Error::Internal("new index not bound".into()))?;
    write_index_entries(txn, t.id, ncols, id, ci.unique, &name, &texts, &mut |txn, row| {
        ix.values(txn, row)
    })?;
    Ok(done("CREATE INDEX"))
}

/// Whether SQL text names `column` (as a whole word: a conservative test
/// of what an expression reads).
fn mentions(text: &str, column: &str) -> bool {
    text.split(|ch: char| !ch.is_alphanumeric() && ch != '_')
        .any(|w| w.eq_ignore_ascii_case(column))
}

/// Whether an index reads `column`: as a key, inside a key expression, or
/// in its predicate.
fn index_mentions(idef: &IndexDef, column: &str) -> bool {
    idef.columns.iter().any(|c| c.expr == column || mentions(&c.expr, column))
        || idef.predicate.as_ref().is_some_and(|p| mentions(p, column))
}

/// Writes the entries of a new index on columns for the existing rows
/// (23505 when a unique one meets a duplicate).
#[allow(clippy::too_many_arguments)]
fn build_index(
    txn: &mut Transaction,
    table: ObjectId,
    ncols: usize,
    positions: &[usize],
    id: ObjectId,
    unique: bool,
    name: &str,
    cols: &[String],
) -> Result<()> {
    write_index_entries(txn, table, ncols, id, unique, name, cols, &mut |_, row| {
        Ok(Some(positions.iter().map(|&p| row[p].clone()).collect()))
    })
}

/// A row's key in an index (None: the row is not in a partial index).
type KeyOf<'a> = dyn FnMut(&mut Transaction, &[Value]) -> Result<Option<Vec<Value>>> + 'a;

/// Writes an index's entries for the existing rows: `values` gives a
/// row's key (None: the row is not in a partial index).
#[allow(clippy::too_many_arguments)]
fn write_index_entries(
    txn: &mut Transaction,
    table: ObjectId,
    ncols: usize,
    id: ObjectId,
    unique: bool,
    name: &str,
    cols: &[String],
    values: &mut KeyOf,
) -> Result<()> {
    for (rowid, row) in storage::scan(txn, table, ncols)? {
        let Some(vals) = values(txn, &row)? else { continue };
        let key = storage::index_key(id, &vals, rowid, unique);
        if unique && !vals.iter().any(Value::is_null) && txn.get(&key)?.is_some() {
            let shown: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
            return Err(Error::user("23505", format!("could not create unique index \"{name}\""))
                .with_detail(format!(
                    "Key ({})=({}) is duplicated.",
                    cols.join(", "),
                    shown.join(", ")
                )));
        }
        txn.set(&key, &rowid.to_be_bytes())?;
    }
    Ok(())
}

/// Clears `def`'s key-rowid flag if its primary key no longer qualifies
/// (dropped, or its column dropped or no longer an integer). The rows stay
/// where they are: a key rowid is a valid counter rowid. The counters are
/// re-read from the table, so they continue after the largest.
fn settle_rowid_key(shared: &Shared, table: ObjectId, def: &mut TableDef) {
    if def.rowid_key && storage::qualifying_key(def).is_none() {
        def.rowid_key = false;
        shared.rowids.forget(table);
    }
}

/// Moves each row of a table with key rowids whose key rowid is not its
/// rowid (after ADD PRIMARY KEY, or ALTER COLUMN TYPE … USING on the
/// key), then rebuilds the table's other indexes, whose entries carry the
/// rowids. 23505 when two rows have the same key.
fn rekey(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    table: ObjectId,
) -> Result<()> {
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let t = super::dml::target_by_id(&mut b, table)?;
    drop(b);
    let Some(key) = t.rowid_key else { return Ok(()) };
    let ncols = t.types.len();
    let mut rows = Vec::new();
    for (from, row) in storage::scan(txn, table, ncols)? {
        let to = t
            .key_rowid(&row)?
            .ok_or_else(|| Error::Internal("table lost its key rowids".into()))?;
        rows.push((to, from, row));
    }
    rows.sort_unstable_by_key(|r| r.0);
    let n = t.indexes.iter().position(|ix| ix.0 == key.index);
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            let name = n.and_then(|n| t.index_names.get(n)).map_or("", |s| s.as_str());
            return Err(Error::user("23505", format!("could not create unique index \"{name}\""))
                .with_detail(format!(
                    "Key ({})=({}) is duplicated.",
                    t.table.def.columns[key.column].name, w[0].2[key.column]
                )));
        }
    }
    if rows.iter().all(|(to, from, _)| to == from) {
        return Ok(());
    }
    // All old keys first: a row may move to another's old key.
    for (to, from, _) in &rows {
        if to != from {
            storage::delete_row(txn, table, *from)?;
        }
    }
    let mut buf = Vec::new();
    for (to, from, row) in &rows {
        if to != from {
            storage::put_row(txn, table, *to, row, &mut buf)?;
        }
    }
    drop(rows);
    for (n, (id, cols, unique)) in t.indexes.iter().enumerate() {
        if *id == key.index {
            continue;
        }
        storage::clear_prefix(txn, &storage::index_prefix(*id))?;
        let names: Vec<String> =
            cols.iter().map(|&c| t.table.def.columns[c].name.clone()).collect();
        let name = t.index_names.get(n).map_or("", |s| s.as_str());
        build_index(txn, table, ncols, cols, *id, *unique, name, &names)?;
    }
    for ix in &t.expr_indexes {
        storage::clear_prefix(txn, &storage::index_prefix(ix.id))?;
        write_index_entries(
            txn,
            table,
            ncols,
            ix.id,
            ix.unique,
            &ix.name,
            &ix.texts,
            &mut |txn, row| ix.values(txn, row),
        )?;
    }
    Ok(())
}

/// ALTER TABLE: ADD/DROP/RENAME COLUMN, RENAME TO, ALTER COLUMN SET/DROP
/// DEFAULT and NOT NULL, DROP CONSTRAINT. Each operation is checked
/// against the rows as they are then; a failure rolls the whole statement
/// back with the transaction.
fn alter_table(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    at: &ast::AlterTable,
) -> Result<QueryResult> {
    let name = object_name(&at.name)?.join(".");
    let Some(obj) = schema.relation_named(&shared.catalog, txn, &at.name)? else {
        if at.if_exists {
            crate::notice::skipping_missing("relation", &name);
            return Ok(done("ALTER TABLE"));
        }
        return Err(Error::user("42P01", format!("relation \"{name}\" does not exist")));
    };
    let Def::Table(_) = &obj.def else {
        return Err(Error::user("42809", format!("\"{name}\" is not a table")));
    };
    for op in &at.operations {
        // Re-read: each operation sees the previous one's result.
        let obj = shared
            .catalog
            .get(txn, obj.id)?
            .ok_or_else(|| Error::Internal("table vanished during ALTER".into()))?;
        let mut obj = (*obj).clone();
        let Def::Table(def) = &mut obj.def else {
            return Err(Error::Internal("not a table".into()));
        };
        let col_pos = |def: &TableDef, c: &str| {
            def.columns.iter().position(|x| x.name == c).ok_or_else(|| {
                Error::user(
                    "42703",
                    format!("column \"{c}\" of relation \"{name}\" does not exist"),
                )
            })
        };
        use ast::AlterTableOperation as O;
        match op {
            O::AddColumn { if_not_exists, column_def, .. } => {
                let cname = ident(&column_def.name);
                if def.columns.iter().any(|c| c.name == cname) {
                    if *if_not_exists {
                        crate::notice::raise(crate::notice::Notice::new(
                            "42701",
                            format!(
                                "column \"{cname}\" of relation \"{name}\" already exists, skipping"
                            ),
                        ));
                        continue;
                    }
                    return Err(Error::user(
                        "42701",
                        format!("column \"{cname}\" of relation \"{name}\" already exists"),
                    ));
                }
                let data_type = data_type_of(&column_def.data_type)?;
                let mut col = Column {
                    name: cname.clone(),
                    data_type: data_type.clone(),
                    nullable: true,
                    default: None,
                    identity: None,
                    comment: None,
                };
                for o in &column_def.options {
                    match &o.option {
                        ast::ColumnOption::Null => col.nullable = true,
                        ast::ColumnOption::NotNull => col.nullable = false,
                        ast::ColumnOption::Default(e) => col.default = Some(e.to_string()),
                        other => return Err(unsupported(format!("ADD COLUMN … {other}"))),
                    }
                }
                // Existing rows get the default (evaluated once per row, as
                // PostgreSQL does for volatile defaults).
                let pos = def.columns.len();
                def.columns.push(col.clone());
                shared.catalog.update(txn, obj.clone())?;
                let default = match &col.default {
                    Some(d) => {
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        let e = b.with_columns("", &[], |b| {
                            b.expr_as(&super::dml::parse_expr(d)?, &data_type)
                        })?;
                        Some(e)
                    }
                    None => None,
                };
                let rows = storage::scan(txn, obj.id, pos)?;
                let mut buf = Vec::new();
                for (rowid, mut row) in rows {
                    let v = match &default {
                        Some(e) => {
                            let mut ctx =
                                super::Ctx::new(txn, &[]).with_env(&shared.catalog, schema);
                            crate::types::cast::assign(
                                super::eval::eval(&mut ctx, e, &[])?,
                                &data_type,
                            )?
                        }
                        None => Value::Null,
                    };
                    if v.is_null() && !col.nullable {
                        return Err(Error::user(
                            "23502",
                            format!(
                                "column \"{cname}\" of relation \"{name}\" contains null values"
                            ),
                        ));
                    }
                    if default.is_some() {
                        row.push(v);
                        storage::put_row(txn, obj.id, rowid, &row, &mut buf)?;
                    }
                }
            }
            O::DropColumn { column_names, if_exists, drop_behavior, .. } => {
                let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
                for cn in column_names {
                    let cname = ident(cn);
                    let obj_now = shared
                        .catalog
                        .get(txn, obj.id)?
                        .ok_or_else(|| Error::Internal("table vanished".into()))?;
                    let mut o2 = (*obj_now).clone();
                    let Def::Table(d2) = &mut o2.def else {
                        return Err(Error::Internal("not a table".into()));
                    };
                    let Some(pos) = d2.columns.iter().position(|c| c.name == cname) else {
                        if *if_exists {
                            crate::notice::raise(crate::notice::Notice::new(
                                "00000",
                                format!(
                                    "column \"{cname}\" of relation \"{name}\" does not exist, skipping"
                                ),
                            ));
                            continue;
                        }
                        return Err(Error::user(
                            "42703",
                            format!("column \"{cname}\" of relation \"{name}\" does not exist"),
                        ));
                    };
                    if d2.columns.len() == 1 {
                        return Err(crate::plan::bind::unsupported(
                            "dropping a table's last column",
                        ));
                    }
                    // Indexes and key constraints on the column go with it
                    // (PostgreSQL drops them too); a CHECK naming it needs CASCADE.
                    for c in &d2.constraints {
                        if let ConstraintKind::Check { expr } = &c.kind
                            && expr
                                .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
                                .any(|w| w.eq_ignore_ascii_case(&cname))
                            && !cascade
                        {
                            return Err(Error::user(
                                "2BP01",
                                format!(
                                    "cannot drop column {cname} of table {name} because constraint {} depends on it",
                                    c.name
                                ),
                            ));
                        }
                    }
                    d2.constraints.retain(|c| match &c.kind {
                        ConstraintKind::PrimaryKey { columns, .. }
                        | ConstraintKind::Unique { columns, .. } => !columns.contains(&cname),
                        ConstraintKind::Check { expr } => !expr
                            .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
                            .any(|w| w.eq_ignore_ascii_case(&cname)),
                        _ => true,
                    });
                    let ncols = d2.columns.len();
                    d2.columns.remove(pos);
                    settle_rowid_key(shared, obj.id, d2);
                    for ix in shared.catalog.indexes_of(txn, obj.id)? {
                        if let Def::Index(idef) = &ix.def
                            && index_mentions(idef, &cname)
                        {
                            storage::clear_prefix(txn, &storage::index_prefix(ix.id))?;
                            shared.catalog.drop(txn, ix.id, false)?;
                        }
                    }
                    shared.catalog.update(txn, o2)?;
                    let rows = storage::scan(txn, obj.id, ncols)?;
                    let mut buf = Vec::new();
                    for (rowid, mut row) in rows {
                        row.remove(pos);
                        storage::put_row(txn, obj.id, rowid, &row, &mut buf)?;
                    }
                }
            }
            O::RenameColumn { old_column_name, new_column_name } => {
                let (old, new) = (ident(old_column_name), ident(new_column_name));
                let pos = col_pos(def, &old)?;
                if def.columns.iter().any(|c| c.name == new) {
                    return Err(Error::user(
                        "42701",
                        format!("column \"{new}\" of relation \"{name}\" already exists"),
                    ));
                }
                if def.constraints.iter().any(
                    |c| matches!(&c.kind, ConstraintKind::Check { expr } if expr.contains(&old)),
                ) {
                    return Err(crate::plan::bind::unsupported(
                        "renaming a column a CHECK constraint uses",
                    ));
                }
                for ix in shared.catalog.indexes_of(txn, obj.id)? {
                    if let Def::Index(idef) = &ix.def
                        && index_mentions(idef, &old)
                        && !idef.columns.iter().all(|c| c.expr == old || !mentions(&c.expr, &old))
                    {
                        return Err(crate::plan::bind::unsupported(
                            "renaming a column an expression or partial index uses",
                        ));
                    }
                    if let Def::Index(idef) = &ix.def
                        && idef.predicate.as_ref().is_some_and(|p| mentions(p, &old))
                    {
                        return Err(crate::plan::bind::unsupported(
                            "renaming a column an expression or partial index uses",
                        ));
                    }
                }
                def.columns[pos].name = new.clone();
                for c in &mut def.constraints {
                    if let ConstraintKind::PrimaryKey { columns, .. }
                    | ConstraintKind::Unique { columns, .. } = &mut c.kind
                    {
                        for col in columns.iter_mut().filter(|x| **x == old) {
                            *col = new.clone();
                        }
                    }
                }
                shared.catalog.update(txn, obj.clone())?;
                for ix in shared.catalog.indexes_of(txn, obj.id)? {
                    let mut ix = (*ix).clone();
                    if let Def::Index(idef) = &mut ix.def
                        && idef.columns.iter().any(|c| c.expr == old)
                    {
                        for c in idef.columns.iter_mut().filter(|c| c.expr == old) {
                            c.expr = new.clone();
                        }
                        shared.catalog.update(txn, ix)?;
                    }
                }
            }
            O::RenameTable { table_name } => {
                let n = match table_name {
                    ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => {
                        bare_name(n)?
                    }
                };
                obj.name = n;
                shared.catalog.update(txn, obj)?;
            }
            O::AlterColumn { column_name, op } => {
                let cname = ident(column_name);
                let pos = col_pos(def, &cname)?;
                let mut rekey_after = false;
                match op {
                    ast::AlterColumnOperation::SetNotNull => {
                        let ncols = def.columns.len();
                        for (_, row) in storage::scan(txn, obj.id, ncols)? {
                            if row[pos].is_null() {
                                return Err(Error::user(
                                    "23502",
                                    format!(
                                        "column \"{cname}\" of relation \"{name}\" contains null values"
                                    ),
                                ));
                            }
                        }
                        def.columns[pos].nullable = false;
                    }
                    ast::AlterColumnOperation::DropNotNull => {
                        let in_pk = def.constraints.iter().any(|c| matches!(&c.kind, ConstraintKind::PrimaryKey { columns, .. } if columns.contains(&cname)));
                        if in_pk {
                            return Err(Error::user(
                                "42P16",
                                format!("column \"{cname}\" is in a primary key"),
                            ));
                        }
                        def.columns[pos].nullable = true;
                    }
                    ast::AlterColumnOperation::SetDefault { value } => {
                        // Bind now so a bad default fails here, not at INSERT.
                        let ty = def.columns[pos].data_type.clone();
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        b.with_columns("", &[], |b| b.expr_as(value, &ty))?;
                        def.columns[pos].default = Some(value.to_string());
                    }
                    ast::AlterColumnOperation::DropDefault => def.columns[pos].default = None,
                    ast::AlterColumnOperation::SetDataType { data_type, using, .. } => {
                        let to = data_type_of(data_type)?;
                        let from = def.columns[pos].data_type.clone();
                        let cols: Vec<(String, DataType)> = def
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.data_type.clone()))
                            .collect();
                        // The new value of each row: USING's expression, or
                        // the column cast to the new type.
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        let conv = match using {
                            Some(u) => {
                                Some(b.with_columns(&obj.name, &cols, |b| b.expr_as(u, &to))?)
                            }
                            None => None,
                        };
                        drop(b);
                        let texty = |t: &DataType| {
                            matches!(t, DataType::Text | DataType::Varchar(_) | DataType::Char(_))
                        };
                        if conv.is_none() && texty(&from) && !texty(&to) {
                            return Err(Error::user(
                                "42804",
                                format!(
                                    "column \"{cname}\" cannot be cast automatically to type {} (specify a USING expression)",
                                    to.sql_name()
                                ),
                            ));
                        }
                        for ix in shared.catalog.indexes_of(txn, obj.id)? {
                            if let Def::Index(idef) = &ix.def
                                && index_mentions(idef, &cname)
                                && (idef.predicate.is_some()
                                    || idef.columns.iter().any(|c| c.expr != cname))
                            {
                                return Err(crate::plan::bind::unsupported(
                                    "changing the type of a column an expression or partial index uses",
                                ));
                            }
                        }
                        let ncols = def.columns.len();
                        let rows = storage::scan(txn, obj.id, ncols)?;
                        let mut ctx = super::Ctx::new(txn, &[]).with_env(&shared.catalog, schema);
                        let mut buf = Vec::new();
                        for (rowid, mut row) in rows {
                            let v = match &conv {
                                Some(e) => super::eval::eval(&mut ctx, e, &row)?,
                                None => std::mem::replace(&mut row[pos], Value::Null),
                            };
                            let v = crate::types::cast::cast(v, &to)?;
                            let v = crate::types::cast::assign(v, &to)?;
                            if v.is_null() && !def.columns[pos].nullable {
                                return Err(Error::user(
                                    "23502",
                                    format!(
                                        "column \"{cname}\" of relation \"{name}\" contains null values"
                                    ),
                                ));
                            }
                            row[pos] = v;
                            storage::put_row(ctx.txn, obj.id, rowid, &row, &mut buf)?;
                        }
                        drop(ctx);
                        def.columns[pos].data_type = to;
                        // Still the key of key rowids (a USING may have
                        // changed its values: the rows move after), or no
                        // longer (its index gets entries below).
                        settle_rowid_key(shared, obj.id, def);
                        let keyed = storage::rowid_key(def);
                        rekey_after = keyed.is_some_and(|k| k.column == pos);
                        // Index entries encode the values: rebuild the
                        // indexes on the column.
                        for ix in shared.catalog.indexes_of(txn, obj.id)? {
                            let Def::Index(idef) = &ix.def else { continue };
                            if !idef.columns.iter().any(|c| c.expr == cname)
                                || keyed.is_some_and(|k| k.index == ix.id)
                            {
                                continue;
                            }
                            let positions = idef
                                .columns
                                .iter()
                                .map(|c| col_pos(def, &c.expr))
                                .collect::<Result<Vec<_>>>()?;
                            let names: Vec<String> =
                                idef.columns.iter().map(|c| c.expr.clone()).collect();
                            storage::clear_prefix(txn, &storage::index_prefix(ix.id))?;
                            build_index(
                                txn,
                                obj.id,
                                ncols,
                                &positions,
                                ix.id,
                                idef.unique,
                                &ix.name,
                                &names,
                            )?;
                        }
                    }
                    other => {
                        return Err(crate::plan::bind::unsupported(format!(
                            "ALTER COLUMN {other}"
                        )));
                    }
                }
                let table_id = obj.id;
                shared.catalog.update(txn, obj)?;
                if rekey_after {
                    rekey(shared, txn, schema, table_id)?;
                }
            }
            O::AddConstraint { constraint, .. } => {
                let tname = obj.name.clone();
                let (table_id, table_schema) = (obj.id, obj.parent);
                let taken = |def: &TableDef, n: &str| def.constraints.iter().any(|c| c.name == n);
                match constraint {
                    ast::TableConstraint::PrimaryKey(_) | ast::TableConstraint::Unique(_) => {
                        let (cname, cols, primary) = match constraint {
                            ast::TableConstraint::PrimaryKey(pk) => {
                                (pk.name.as_ref().map(ident), index_cols(&pk.columns)?, true)
                            }
                            ast::TableConstraint::Unique(u) => {
                                (u.name.as_ref().map(ident), index_cols(&u.columns)?, false)
                            }
                            _ => unreachable!("matched above"),
                        };
                        if primary
                            && def
                                .constraints
                                .iter()
                                .any(|c| matches!(c.kind, ConstraintKind::PrimaryKey { .. }))
                        {
                            return Err(Error::user(
                                "42P16",
                                format!(
                                    "multiple primary keys for table \"{tname}\" are not allowed"
                                ),
                            ));
                        }
                        let mut positions = Vec::new();
                        for c in &cols {
                            positions.push(col_pos(def, c)?);
                        }
                        let ncols = def.columns.len();
                        if primary {
                            for &p in &positions {
                                for (_, row) in storage::scan(txn, table_id, ncols)? {
                                    if row[p].is_null() {
                                        return Err(Error::user(
                                            "23502",
                                            format!(
                                                "column \"{}\" of relation \"{tname}\" contains null values",
                                                def.columns[p].name
                                            ),
                                        ));
                                    }
                                }
                                def.columns[p].nullable = false;
                            }
                        }
                        let iname = cname.unwrap_or_else(|| {
                            if primary {
                                format!("{tname}_pkey")
                            } else {
                                format!("{tname}_{}_key", cols.join("_"))
                            }
                        });
                        if taken(def, &iname) {
                            return Err(Error::user(
                                "42710",
                                format!(
                                    "constraint \"{iname}\" for relation \"{tname}\" already exists"
                                ),
                            ));
                        }
                        let own = owner(shared, txn)?;
                        let index = shared.catalog.create(
                            txn,
                            table_schema,
                            &iname,
                            own,
                            Def::Index(IndexDef {
                                table: table_id,
                                columns: cols
                                    .iter()
                                    .map(|c| IndexColumn {
                                        expr: c.clone(),
                                        desc: false,
                                        nulls_first: false,
                                    })
                                    .collect(),
                                unique: true,
                                predicate: None,
                                method: "btree".into(),
                            }),
                        )?;
                        def.constraints.push(Constraint {
                            name: iname.clone(),
                            kind: if primary {
                                ConstraintKind::PrimaryKey { columns: cols.clone(), index }
                            } else {
                                ConstraintKind::Unique { columns: cols.clone(), index }
                            },
                        });
                        // A primary key on one integer column: the rows
                        // move to their key rowids (`storage`), the key
                        // gets no entries.
                        let keyed = primary && storage::qualifying_key(def).is_some();
                        def.rowid_key |= keyed;
                        shared.catalog.update(txn, obj)?;
                        if keyed {
                            rekey(shared, txn, schema, table_id)?;
                        } else {
                            build_index(
                                txn, table_id, ncols, &positions, index, true, &iname, &cols,
                            )?;
                        }
                    }
                    ast::TableConstraint::Check(ch) => {
                        let cols: Vec<(String, DataType)> = def
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.data_type.clone()))
                            .collect();
                        let ncols = cols.len();
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        let given = ch.name.as_ref().map(ident);
                        let explicit = given.is_some();
                        let cname = check_name(&mut b, &tname, &cols, &ch.expr, given, &|n| {
                            !explicit && taken(def, n)
                        })?;
                        if taken(def, &cname) {
                            return Err(Error::user(
                                "42710",
                                format!(
                                    "constraint \"{cname}\" for relation \"{tname}\" already exists"
                                ),
                            ));
                        }
                        let check = b.with_columns(&tname, &cols, |b| b.expr_typed(&ch.expr))?;
                        drop(b);
                        if check.1 != DataType::Boolean {
                            return Err(Error::user(
                                "42804",
                                format!(
                                    "argument of CHECK must be type boolean, not type {}",
                                    check.1.sql_name()
                                ),
                            ));
                        }
                        let rows = storage::scan(txn, table_id, ncols)?;
                        let mut ctx = super::Ctx::new(txn, &[]).with_env(&shared.catalog, schema);
                        for (_, row) in rows {
                            if super::eval::eval(&mut ctx, &check.0, &row)? == Value::Bool(false) {
                                return Err(Error::user(
                                    "23514",
                                    format!(
                                        "check constraint \"{cname}\" of relation \"{tname}\" is violated by some row"
                                    ),
                                ));
                            }
                        }
                        def.constraints.push(Constraint {
                            name: cname,
                            kind: ConstraintKind::Check { expr: ch.expr.to_string() },
                        });
                        shared.catalog.update(txn, obj)?;
                    }
                    ast::TableConstraint::ForeignKey(fk) => {
                        let fk = Fk {
                            name: fk.name.as_ref().map(ident),
                            columns: fk.columns.iter().map(ident).collect(),
                            table: object_name(&fk.foreign_table)?,
                            ref_columns: fk.referred_columns.iter().map(ident).collect(),
                            on_delete: ref_action(fk.on_delete),
                            on_update: ref_action(fk.on_update),
                        };
                        let c = resolve_fk(
                            shared,
                            txn,
                            schema,
                            table_id,
                            &tname,
                            &def.columns,
                            &def.constraints,
                            fk,
                        )?;
                        if taken(def, &c.name) {
                            return Err(Error::user(
                                "42710",
                                format!(
                                    "constraint \"{}\" for relation \"{tname}\" already exists",
                                    c.name
                                ),
                            ));
                        }
                        let ncols = def.columns.len();
                        def.constraints.push(c);
                        shared.catalog.update(txn, obj)?;
                        // Every existing row must reference a row.
                        let mut b = Binder::new(&shared.catalog, txn, schema);
                        let t = super::dml::target_by_id(&mut b, table_id)?;
                        drop(b);
                        for (_, row) in storage::scan(txn, table_id, ncols)? {
                            t.check_out_fks(txn, &row, None)?;
                        }
                    }
                    other => {
                        return Err(unsupported(format!("ALTER TABLE … ADD {other}")));
                    }
                }
            }
            O::DropConstraint { if_exists, name: cn, .. } => {
                let cname = ident(cn);
                let Some(i) = def.constraints.iter().position(|c| c.name == cname) else {
                    if *if_exists {
                        crate::notice::raise(crate::notice::Notice::new(
                            "00000",
                            format!(
                                "constraint \"{cname}\" of relation \"{name}\" does not exist, skipping"
                            ),
                        ));
                        continue;
                    }
                    return Err(Error::user(
                        "42704",
                        format!("constraint \"{cname}\" of relation \"{name}\" does not exist"),
                    ));
                };
                let c = def.constraints.remove(i);
                settle_rowid_key(shared, obj.id, def);
                shared.catalog.update(txn, obj)?;
                if let ConstraintKind::PrimaryKey { index, .. }
                | ConstraintKind::Unique { index, .. } = c.kind
                {
                    storage::clear_prefix(txn, &storage::index_prefix(index))?;
                    shared.catalog.drop(txn, index, false)?;
                }
            }
            other => return Err(crate::plan::bind::unsupported(format!("ALTER TABLE … {other}"))),
        }
    }
    Ok(done("ALTER TABLE"))
}

/// CREATE TABLE … AS query: the query's columns (renamed by a column list)
/// and rows.
fn create_table_as(
    shared: &Shared,
    txn: &mut Transaction,
    schema: &SearchPath,
    ct: &ast::CreateTable,
    q: &ast::Query,
) -> Result<QueryResult> {
    let (sid, name) = table_target(shared, txn, schema, &ct.name, ct.temporary)?;
    if shared.catalog.lookup(txn, Namespace::Relation, sid, &name)?.is_some() {
        if ct.if_not_exists {
            crate::notice::skipping_existing("42P07", "relation", &name);
            return Ok(done("CREATE TABLE AS"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let mut b = Binder::new(&shared.catalog, txn, schema);
    let bound = b.query(q)?;
    drop(b);
    let mut columns: Vec<Column> = bound
        .columns
        .iter()
        .map(|(n, t)| Column {
            name: n.clone(),
            data_type: t.clone(),
            nullable: true,
            default: None,
            identity: None,
            comment: None,
        })
        .collect();
    if ct.columns.len() > columns.len() {
        return Err(Error::user("42601", "CREATE TABLE AS specifies too many column names"));
    }
    for (c, def) in columns.iter_mut().zip(&ct.columns) {
        c.name = ident(&def.name);
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name == c.name) {
            return Err(Error::user(
                "42701",
                format!("column \"{}\" specified more than once", c.name),
            ));
        }
        // A record is a value of a query, never of a column.
        if matches!(c.data_type, DataType::Record(_)) {
            return Err(Error::user(
                "42P16",
                format!("column \"{}\" has pseudo-type record", c.name),
            ));
        }
    }
    let own = owner(shared, txn)?;
    let types: Vec<DataType> = columns.iter().map(|c| c.data_type.clone()).collect();
    let id = shared.catalog.create(
        txn,
        sid,
        &name,
        own,
        Def::Table(TableDef { columns, constraints: vec![], rowid_key: false }),
    )?;
    let rows = {
        let mut ctx = super::Ctx::new(txn, &[]).with_env(&shared.catalog, schema);
        super::run(&mut ctx, &bound.plan)?
    };
    let n = rows.len() as u64;
    let first = shared.rowids.take(txn, id, n)?;
    let mut buf = Vec::new();
    for (k, row) in rows.into_iter().enumerate() {
        let row: Vec<Value> = row
            .into_iter()
            .zip(&types)
            .map(|(v, t)| crate::types::cast::assign(v, t))
            .collect::<Result<_>>()?;
        storage::put_row(txn, id, first + k as u64, &row, &mut buf)?;
    }
    Ok(done(&format!("SELECT {n}")))
}
