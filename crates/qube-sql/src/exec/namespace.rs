//! DDL of the name spaces and of objects without rows: CREATE/DROP SCHEMA,
//! CREATE/DROP DATABASE, CREATE SEQUENCE, COMMENT ON, and the removal of
//! the stored rows of everything a DROP takes with it.

use qube_catalog::{DatabaseDef, Def, Namespace, Object, SchemaDef};
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use super::ddl::{done, owner};
use crate::names::SearchPath;
use crate::plan::bind::{ident, object_name, unsupported};
use crate::session::{QueryResult, Shared};
use crate::storage;

/// CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION role].
pub fn create_schema(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    name: &ast::SchemaName,
    if_not_exists: bool,
) -> Result<QueryResult> {
    let (name, role) = match name {
        ast::SchemaName::Simple(n) => (one_part(n)?, None),
        ast::SchemaName::UnnamedAuthorization(r) => (ident(r), Some(ident(r))),
        ast::SchemaName::NamedAuthorization(n, r) => (one_part(n)?, Some(ident(r))),
    };
    if name.starts_with("pg_") {
        return Err(Error::user(
            "42939",
            format!(
                "unacceptable schema name \"{name}\": the prefix \"pg_\" is reserved for system schemas"
            ),
        ));
    }
    if shared.catalog.lookup(txn, Namespace::Schema, path.db, &name)?.is_some() {
        if if_not_exists {
            crate::notice::skipping_existing("42P06", "schema", &name);
            return Ok(done("CREATE SCHEMA"));
        }
        return Err(Error::user("42P06", format!("schema \"{name}\" already exists")));
    }
    let own = match role {
        Some(r) => {
            shared
                .catalog
                .lookup(txn, Namespace::Role, 0, &r)?
                .ok_or_else(|| Error::user("42704", format!("role \"{r}\" does not exist")))?
                .id
        }
        None => owner(shared, txn)?,
    };
    shared.catalog.create(txn, path.db, &name, own, Def::Schema(SchemaDef::default()))?;
    Ok(done("CREATE SCHEMA"))
}

fn one_part(n: &ast::ObjectName) -> Result<String> {
    match object_name(n)?.as_slice() {
        [s] => Ok(s.clone()),
        _ => Err(Error::user("42601", format!("improper qualified name: {n}"))),
    }
}

/// DROP SCHEMA [IF EXISTS] name, … [CASCADE | RESTRICT].
pub fn drop_schemas(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    names: &[ast::ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<QueryResult> {
    for n in names {
        let name = one_part(n)?;
        let Some(obj) = shared.catalog.lookup(txn, Namespace::Schema, path.db, &name)? else {
            if if_exists {
                crate::notice::skipping_missing("schema", &name);
                continue;
            }
            return Err(Error::user("3F000", format!("schema \"{name}\" does not exist")));
        };
        if !cascade {
            // PostgreSQL names the first object in the way.
            if let Some(dep) = shared.catalog.dependents(txn, obj.id)?.first() {
                return Err(Error::user(
                    "2BP01",
                    format!(
                        "cannot drop schema {name} because other objects depend on it \
                         ({} {} depends on schema {name})",
                        dep.def.kind_name(),
                        dep.name
                    ),
                ));
            }
        }
        clear_rows(shared, txn, &obj)?;
        shared.catalog.drop(txn, obj.id, cascade)?;
    }
    Ok(done("DROP SCHEMA"))
}

/// CREATE DATABASE name: a new database with its `public` schema. Its
/// tables are separate from other databases' (a session is in one).
pub fn create_database(
    shared: &Shared,
    txn: &mut Transaction,
    name: &ast::ObjectName,
    if_not_exists: bool,
) -> Result<QueryResult> {
    let name = one_part(name)?;
    if shared.catalog.lookup(txn, Namespace::Database, 0, &name)?.is_some() {
        if if_not_exists {
            crate::notice::skipping_existing("42P04", "database", &name);
            return Ok(done("CREATE DATABASE"));
        }
        return Err(Error::user("42P04", format!("database \"{name}\" already exists")));
    }
    let own = owner(shared, txn)?;
    let db = shared.catalog.create(
        txn,
        0,
        &name,
        own,
        Def::Database(DatabaseDef { encoding: "UTF8".into() }),
    )?;
    shared.catalog.create(txn, db, "public", own, Def::Schema(SchemaDef::default()))?;
    Ok(done("CREATE DATABASE"))
}

/// DROP DATABASE [IF EXISTS] name: everything in it goes.
pub fn drop_database(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    names: &[ast::ObjectName],
    if_exists: bool,
) -> Result<QueryResult> {
    for n in names {
        let name = one_part(n)?;
        let Some(obj) = shared.catalog.lookup(txn, Namespace::Database, 0, &name)? else {
            if if_exists {
                crate::notice::skipping_missing("database", &name);
                continue;
            }
            return Err(Error::user("3D000", format!("database \"{name}\" does not exist")));
        };
        if obj.id == path.db {
            return Err(Error::user("55006", "cannot drop the currently open database"));
        }
        clear_rows(shared, txn, &obj)?;
        shared.catalog.drop(txn, obj.id, true)?;
    }
    Ok(done("DROP DATABASE"))
}

/// Deletes the stored rows and index entries of `obj` and of everything
/// inside it (a schema's or database's tables), before the catalog drops
/// the definitions. In the same transaction: a rollback keeps them.
pub fn clear_rows(shared: &Shared, txn: &mut Transaction, obj: &Object) -> Result<()> {
    match &obj.def {
        Def::Table(_) => {
            for ix in shared.catalog.indexes_of(txn, obj.id)? {
                storage::clear_prefix(txn, &storage::index_prefix(ix.id))?;
            }
            storage::clear_prefix(txn, &storage::table_prefix(obj.id))?;
            shared.rowids.forget(obj.id);
        }
        Def::Index(_) => {
            storage::clear_prefix(txn, &storage::index_prefix(obj.id))?;
        }
        Def::Schema(_) => {
            for child in shared.catalog.list(txn, Namespace::Relation, obj.id)? {
                if matches!(child.def, Def::Table(_)) {
                    clear_rows(shared, txn, &child)?;
                }
            }
        }
        Def::Database(_) => {
            for child in shared.catalog.list(txn, Namespace::Schema, obj.id)? {
                clear_rows(shared, txn, &child)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// CREATE SEQUENCE [IF NOT EXISTS] name [options].
pub fn create_sequence(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    name: &ast::ObjectName,
    if_not_exists: bool,
    options: &[ast::SequenceOptions],
) -> Result<QueryResult> {
    let (sid, name) = path.target(&shared.catalog, txn, name)?;
    if shared.catalog.lookup(txn, Namespace::Relation, sid, &name)?.is_some() {
        if if_not_exists {
            crate::notice::skipping_existing("42P07", "relation", &name);
            return Ok(done("CREATE SEQUENCE"));
        }
        return Err(Error::user("42P07", format!("relation \"{name}\" already exists")));
    }
    let (mut def, owned) = super::sequence::apply_options(None, options)?;
    if let Some(Some(col)) = owned {
        def.owned_by = Some(owned_by(shared, txn, path, sid, &col)?);
    }
    let own = owner(shared, txn)?;
    shared.catalog.create(txn, sid, &name, own, Def::Sequence(def))?;
    Ok(done("CREATE SEQUENCE"))
}

/// The table and column of `OWNED BY table.column`, for a sequence in
/// schema `schema` (the table must be in it too, as in PostgreSQL).
fn owned_by(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    schema: qube_catalog::ObjectId,
    col: &ast::ObjectName,
) -> Result<(qube_catalog::ObjectId, String)> {
    {
        let parts = object_name(col)?;
        let (cname, table) = parts.split_last().ok_or_else(|| unsupported("OWNED BY"))?;
        if table.is_empty() {
            return Err(Error::user(
                "42601",
                "invalid OWNED BY option: specify OWNED BY table.column or OWNED BY NONE",
            ));
        }
        let t = path.relation(&shared.catalog, txn, table)?.ok_or_else(|| {
            Error::user("42P01", format!("relation \"{}\" does not exist", table.join(".")))
        })?;
        let Def::Table(td) = &t.def else {
            return Err(Error::user("42809", format!("\"{}\" is not a table", t.name)));
        };
        if td.column(cname).is_none() {
            return Err(Error::user(
                "42703",
                format!("column \"{cname}\" of relation \"{}\" does not exist", t.name),
            ));
        }
        if t.parent != schema {
            return Err(Error::user(
                "55000",
                "sequence must be in same schema as table it is linked to",
            ));
        }
        Ok((t.id, cname.clone()))
    }
}

/// ALTER SEQUENCE (see `utility::AlterSequence`).
pub fn alter_sequence(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    a: &crate::utility::AlterSequence,
) -> Result<QueryResult> {
    use crate::utility::SequenceAction as A;
    let Some(obj) = path.relation(&shared.catalog, txn, &a.name)? else {
        if a.if_exists {
            return Ok(done("ALTER SEQUENCE"));
        }
        return Err(Error::user(
            "42P01",
            format!("relation \"{}\" does not exist", a.name.join(".")),
        ));
    };
    let Def::Sequence(old) = &obj.def else {
        return Err(Error::user("42809", format!("\"{}\" is not a sequence", obj.name)));
    };
    let mut new = (*obj).clone();
    match &a.action {
        A::Options { options, restart } => {
            let (mut def, owned) = super::sequence::apply_options(Some(old), options)?;
            match owned {
                Some(Some(col)) => {
                    def.owned_by = Some(owned_by(shared, txn, path, obj.parent, &col)?)
                }
                Some(None) => def.owned_by = None,
                None => {}
            }
            let (start, min, max) = (def.start, def.min, def.max);
            new.def = Def::Sequence(def);
            shared.catalog.update(txn, new)?;
            if let Some(r) = restart {
                let v = r.unwrap_or(start);
                if v < min || v > max {
                    let (what, bound, limit) = if v < min {
                        ("less", "MINVALUE", min)
                    } else {
                        ("greater", "MAXVALUE", max)
                    };
                    return Err(Error::user(
                        "22023",
                        format!("RESTART value ({v}) cannot be {what} than {bound} ({limit})"),
                    ));
                }
                shared.catalog.setval(txn, obj.id, v, false)?;
            }
        }
        A::RenameTo(n) => {
            new.name = n.clone();
            shared.catalog.update(txn, new)?;
        }
        A::SetSchema(s) => {
            let schema = path.schema(&shared.catalog, txn, s)?;
            new.parent = schema.id;
            shared.catalog.update(txn, new)?;
        }
        A::OwnerTo(r) => {
            let role = shared
                .catalog
                .lookup(txn, Namespace::Role, 0, r)?
                .ok_or_else(|| Error::user("42704", format!("role \"{r}\" does not exist")))?;
            new.owner = role.id;
            shared.catalog.update(txn, new)?;
        }
        A::Logged => {}
    }
    Ok(done("ALTER SEQUENCE"))
}

/// COMMENT ON { TABLE | VIEW | INDEX | SEQUENCE | COLUMN | SCHEMA |
/// DATABASE } name IS 'text' | NULL.
pub fn comment(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    kind: &ast::CommentObject,
    name: &ast::ObjectName,
    text: Option<&str>,
) -> Result<QueryResult> {
    use ast::CommentObject as K;
    let text = text.filter(|t| !t.is_empty()).map(str::to_string);
    let parts = object_name(name)?;
    let mut obj = match kind {
        K::Schema => (*path.schema(&shared.catalog, txn, &one_part(name)?)?).clone(),
        K::Database => {
            let n = one_part(name)?;
            (*shared
                .catalog
                .lookup(txn, Namespace::Database, 0, &n)?
                .ok_or_else(|| Error::user("3D000", format!("database \"{n}\" does not exist")))?)
            .clone()
        }
        K::Column => {
            let (cname, table) = parts
                .split_last()
                .filter(|(_, t)| !t.is_empty())
                .ok_or_else(|| Error::user("42601", "column name must be qualified"))?;
            let t = path.relation(&shared.catalog, txn, table)?.ok_or_else(|| {
                Error::user("42P01", format!("relation \"{}\" does not exist", table.join(".")))
            })?;
            let mut t = (*t).clone();
            let Def::Table(td) = &mut t.def else {
                return Err(unsupported("COMMENT ON COLUMN of a view"));
            };
            let col = td.columns.iter_mut().find(|c| c.name == *cname).ok_or_else(|| {
                Error::user(
                    "42703",
                    format!("column \"{cname}\" of relation \"{}\" does not exist", t.name),
                )
            })?;
            col.comment = text;
            shared.catalog.update(txn, t)?;
            return Ok(done("COMMENT"));
        }
        K::Table | K::View | K::Index | K::Sequence => {
            let o = path.relation(&shared.catalog, txn, &parts)?.ok_or_else(|| {
                Error::user("42P01", format!("relation \"{}\" does not exist", parts.join(".")))
            })?;
            let want = match kind {
                K::Table => "table",
                K::View => "view",
                K::Index => "index",
                _ => "sequence",
            };
            if o.def.kind_name() != want {
                return Err(Error::user("42809", format!("\"{}\" is not a {want}", o.name)));
            }
            (*o).clone()
        }
        other => return Err(unsupported(format!("COMMENT ON {other}"))),
    };
    obj.comment = text;
    shared.catalog.update(txn, obj)?;
    Ok(done("COMMENT"))
}
