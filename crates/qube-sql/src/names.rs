//! Name resolution: which database a session is in and which schemas an
//! unqualified name is looked up in.
//!
//! As in PostgreSQL, a session has a current database and a `search_path`
//! (a list of schema names, `"$user", public` by default). An unqualified
//! relation name is looked up in each existing schema of the path in turn;
//! a new object without a schema goes into the first existing schema of
//! the path (3F000 "no schema has been selected to create in" if there is
//! none). A qualified name `s.t` looks only in `s` (3F000 if `s` does not
//! exist); `db.s.t` must name the current database (0A000 otherwise:
//! PostgreSQL does not implement cross-database references either).
//!
//! The path is resolved to schema ids (`SearchPath::resolve`) for a
//! statement; the session keeps the result while no DDL has committed
//! since and its transaction has none of its own, so a schema created
//! later (by this session or another) is seen by the next statement.

use std::sync::Arc;

use parking_lot::Mutex;
use qube_catalog::{Catalog, Def, Namespace, Object, ObjectId};
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use crate::exec::sequence::SeqValues;
use crate::plan::bind::object_name;

/// The search path of one statement, resolved against the catalog, with
/// the session state statements share (`currval`).
#[derive(Debug, Clone)]
pub struct SearchPath {
    /// The current database.
    pub db: ObjectId,
    pub db_name: String,
    /// The existing schemas of the path, in order.
    pub schemas: Vec<ObjectId>,
    /// The session's sequence values (`currval`, `lastval`).
    pub seqs: Arc<Mutex<SeqValues>>,
    /// The session's schema of temporary tables (`pg_temp_N`, made by its
    /// first CREATE TEMP TABLE), searched before the path for relations,
    /// as PostgreSQL does; `pg_temp` names it in qualified names.
    pub temp_name: String,
    pub temp: Option<ObjectId>,
    /// The session's role.
    pub user: String,
}

/// `"$user", public` → `["$user", "public"]`; names are case-folded unless
/// quoted, as PostgreSQL does.
pub fn parse_search_path(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
                s[1..s.len() - 1].replace("\"\"", "\"")
            } else {
                s.to_lowercase()
            }
        })
        .collect()
}

/// The prefix of the schemas holding sessions' temporary tables.
pub const TEMP_SCHEMA_PREFIX: &str = "pg_temp_";

/// A qualified name written as text (`'s.t'`, `'"My Seq"'`), as a
/// `regclass` argument is: parts split at dots outside quotes, folded to
/// lower case unless quoted.
pub fn parse_qualified(text: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.trim().chars().peekable();
    let bad = || Error::user("42602", format!("invalid name syntax: \"{text}\""));
    loop {
        match chars.next() {
            Some('"') => loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => return Err(bad()),
                }
            },
            Some('.') => {
                if cur.is_empty() {
                    return Err(bad());
                }
                parts.push(std::mem::take(&mut cur));
            }
            Some(c) if c.is_whitespace() => return Err(bad()),
            Some(c) => cur.extend(c.to_lowercase()),
            None => break,
        }
    }
    if cur.is_empty() {
        return Err(bad());
    }
    parts.push(cur);
    Ok(parts)
}

impl SearchPath {
    /// Resolves `names` (a parsed search_path) in database `db`; `user`
    /// replaces `$user`; names of schemas that do not exist are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        catalog: &Catalog,
        txn: &mut Transaction,
        db: ObjectId,
        db_name: &str,
        names: &[String],
        user: &str,
        seqs: &Arc<Mutex<SeqValues>>,
        temp_name: &str,
    ) -> Result<SearchPath> {
        let mut schemas = Vec::with_capacity(names.len());
        for n in names {
            let n = if n == "$user" { user } else { n.as_str() };
            if let Some(s) = catalog.lookup(txn, Namespace::Schema, db, n)?
                && !schemas.contains(&s.id)
            {
                schemas.push(s.id);
            }
        }
        let temp = catalog.lookup(txn, Namespace::Schema, db, temp_name)?.map(|o| o.id);
        Ok(SearchPath {
            db,
            db_name: db_name.to_string(),
            schemas,
            seqs: seqs.clone(),
            temp_name: temp_name.to_string(),
            temp,
            user: user.to_string(),
        })
    }

    /// The schema named `name` in the current database (3F000 if none).
    pub fn schema(
        &self,
        catalog: &Catalog,
        txn: &mut Transaction,
        name: &str,
    ) -> Result<Arc<Object>> {
        let name = if name == "pg_temp" { self.temp_name.as_str() } else { name };
        catalog
            .lookup(txn, Namespace::Schema, self.db, name)?
            .ok_or_else(|| Error::user("3F000", format!("schema \"{name}\" does not exist")))
    }

    /// Splits a (qualified) name into the schema it names, if any, and
    /// the bare name.
    fn split(
        &self,
        catalog: &Catalog,
        txn: &mut Transaction,
        parts: &[String],
    ) -> Result<(Option<ObjectId>, String)> {
        match parts {
            [t] => Ok((None, t.clone())),
            [s, t] => Ok((Some(self.schema(catalog, txn, s)?.id), t.clone())),
            [d, s, t] => {
                if *d != self.db_name {
                    return Err(Error::user(
                        "0A000",
                        format!("cross-database references are not implemented: \"{d}.{s}.{t}\""),
                    ));
                }
                Ok((Some(self.schema(catalog, txn, s)?.id), t.clone()))
            }
            _ => Err(Error::user(
                "42601",
                format!("improper qualified name (too many dotted names): {}", parts.join(".")),
            )),
        }
    }

    /// The relation (table, view, index or sequence) a name refers to.
    pub fn relation(
        &self,
        catalog: &Catalog,
        txn: &mut Transaction,
        parts: &[String],
    ) -> Result<Option<Arc<Object>>> {
        let schema_name = match parts.first() {
            Some(s) if s == "pg_temp" => self.temp_name.as_str(),
            Some(s) => s.as_str(),
            None => "",
        };
        if parts.len() == 2
            && catalog.lookup(txn, Namespace::Schema, self.db, schema_name)?.is_none()
        {
            // PostgreSQL reports a missing schema in a reference as a
            // missing relation (42P01); only creating in it is 3F000.
            return Ok(None);
        }
        match self.split(catalog, txn, parts)? {
            (Some(s), name) => catalog.lookup(txn, Namespace::Relation, s, &name),
            (None, name) => {
                for &s in self.temp.iter().chain(&self.schemas) {
                    if let Some(o) = catalog.lookup(txn, Namespace::Relation, s, &name)? {
                        return Ok(Some(o));
                    }
                }
                Ok(None)
            }
        }
    }

    /// As `relation`, for a parsed name.
    pub fn relation_named(
        &self,
        catalog: &Catalog,
        txn: &mut Transaction,
        name: &ast::ObjectName,
    ) -> Result<Option<Arc<Object>>> {
        self.relation(catalog, txn, &object_name(name)?)
    }

    /// The schema a new relation named `name` goes into, and its bare name.
    pub fn target(
        &self,
        catalog: &Catalog,
        txn: &mut Transaction,
        name: &ast::ObjectName,
    ) -> Result<(ObjectId, String)> {
        match self.split(catalog, txn, &object_name(name)?)? {
            (Some(s), n) => Ok((s, n)),
            (None, n) => Ok((self.creation_schema()?, n)),
        }
    }

    /// The first existing schema of the path.
    pub fn creation_schema(&self) -> Result<ObjectId> {
        self.schemas
            .first()
            .copied()
            .ok_or_else(|| Error::user("3F000", "no schema has been selected to create in"))
    }
}

/// The kind of relation an object is, for messages.
pub fn relation_kind(o: &Object) -> &'static str {
    match o.def {
        Def::Table(_) => "table",
        Def::View(_) => "view",
        Def::Index(_) => "index",
        Def::Sequence(_) => "sequence",
        _ => "object",
    }
}
