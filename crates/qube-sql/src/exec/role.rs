//! Roles: CREATE ROLE / CREATE USER, ALTER ROLE / ALTER USER, DROP ROLE /
//! DROP USER, stored in the catalog (`Def::Role`, global like databases)
//! and so transactional like every other DDL.
//!
//! Passwords are kept only as SCRAM-SHA-256 verifiers
//! (`qube_catalog::scram`); a password that already is one is stored as
//! given, as PostgreSQL does. The role attributes are enforced the way
//! PostgreSQL 15 enforces them for role DDL: creating, changing or dropping
//! roles needs SUPERUSER or CREATEROLE, and only a superuser touches a
//! superuser or grants SUPERUSER (42501). Privileges on objects (GRANT)
//! are not built: GRANT and REVOKE are 0A000.

use qube_catalog::{Def, Namespace, Object, RoleDef, scram};
use qube_common::{Error, Result};
use qube_txn::Transaction;
use sqlparser::ast;

use super::ddl::done;
use crate::names::SearchPath;
use crate::plan::bind::{ident, object_name, unsupported};
use crate::session::{QueryResult, Shared};

/// The attributes one statement sets; None leaves a value as it is.
#[derive(Default)]
struct Options {
    superuser: Option<bool>,
    login: Option<bool>,
    createdb: Option<bool>,
    createrole: Option<bool>,
    /// Some(None): PASSWORD NULL.
    password: Option<Option<String>>,
    valid_until: Option<i64>,
    connection_limit: Option<i32>,
}

fn role_name(n: &ast::ObjectName) -> Result<String> {
    match object_name(n)?.as_slice() {
        [r] => Ok(r.clone()),
        _ => Err(Error::user("42601", format!("improper role name: {n}"))),
    }
}

fn string_of(e: &ast::Expr, what: &str) -> Result<String> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s)
            | ast::Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                Ok(s.clone())
            }
            ast::Value::EscapedStringLiteral(s) => Ok(s.clone()),
            _ => Err(Error::user("42601", format!("{what} must be a string constant"))),
        },
        _ => Err(Error::user("42601", format!("{what} must be a string constant"))),
    }
}

fn password(p: &ast::Password) -> Result<Option<String>> {
    match p {
        ast::Password::NullPassword => Ok(None),
        ast::Password::Password(e) => {
            let text = string_of(e, "password")?;
            // PostgreSQL: "empty string is not a valid password, clearing password".
            if text.is_empty() { Ok(None) } else { scram::password_to_store(&text).map(Some) }
        }
    }
}

fn valid_until(e: &ast::Expr) -> Result<i64> {
    let text = string_of(e, "VALID UNTIL")?;
    crate::types::datetime::parse_timestamp(&text, true)
}

fn connection_limit(e: &ast::Expr) -> Result<i32> {
    let n = match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<i32>().ok(),
            _ => None,
        },
        ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => match expr.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse::<i32>().ok().map(|n| -n),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    match n {
        Some(n) if n >= -1 => Ok(n),
        Some(n) => Err(Error::user("22023", format!("invalid connection limit: {n}"))),
        None => Err(Error::user("42601", "CONNECTION LIMIT must be an integer")),
    }
}

fn options(list: &[ast::RoleOption]) -> Result<Options> {
    let mut o = Options::default();
    for opt in list {
        let conflict = match opt {
            ast::RoleOption::SuperUser(b) => o.superuser.replace(*b).is_some(),
            ast::RoleOption::Login(b) => o.login.replace(*b).is_some(),
            ast::RoleOption::CreateDB(b) => o.createdb.replace(*b).is_some(),
            ast::RoleOption::CreateRole(b) => o.createrole.replace(*b).is_some(),
            ast::RoleOption::Password(p) => o.password.replace(password(p)?).is_some(),
            ast::RoleOption::ValidUntil(e) => o.valid_until.replace(valid_until(e)?).is_some(),
            ast::RoleOption::ConnectionLimit(e) => {
                o.connection_limit.replace(connection_limit(e)?).is_some()
            }
            // Accepted as PostgreSQL does; there is nothing they change here.
            ast::RoleOption::Inherit(_)
            | ast::RoleOption::BypassRLS(_)
            | ast::RoleOption::Replication(_) => false,
        };
        if conflict {
            return Err(Error::user("42601", "conflicting or redundant options"));
        }
    }
    Ok(o)
}

/// The role running the statement (the session's user).
fn current(shared: &Shared, txn: &mut Transaction, path: &SearchPath) -> Result<RoleDef> {
    match shared.catalog.lookup(txn, Namespace::Role, 0, &path.user)? {
        Some(o) => match &o.def {
            Def::Role(r) => Ok(r.clone()),
            _ => Err(Error::Internal("a role entry holds another object".into())),
        },
        // The session's role was dropped by another session.
        None => Err(Error::user("42704", format!("role \"{}\" does not exist", path.user))),
    }
}

fn denied(msg: impl Into<String>) -> Error {
    Error::user("42501", msg)
}

fn find(
    shared: &Shared,
    txn: &mut Transaction,
    name: &str,
) -> Result<Option<(std::sync::Arc<Object>, RoleDef)>> {
    Ok(shared.catalog.lookup(txn, Namespace::Role, 0, name)?.and_then(|o| match &o.def {
        Def::Role(r) => {
            let r = r.clone();
            Some((o, r))
        }
        _ => None,
    }))
}

/// CREATE ROLE / CREATE USER (`login_default` true for USER).
pub fn create_role(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    c: &ast::CreateRole,
) -> Result<QueryResult> {
    if !c.in_role.is_empty()
        || !c.in_group.is_empty()
        || !c.role.is_empty()
        || !c.user.is_empty()
        || !c.admin.is_empty()
    {
        return Err(unsupported("role membership (IN ROLE, ROLE, ADMIN)"));
    }
    if c.authorization_owner.is_some() {
        return Err(unsupported("CREATE ROLE … AUTHORIZATION"));
    }
    let me = current(shared, txn, path)?;
    let mut list = Vec::new();
    let mut push = |v: Option<bool>, f: fn(bool) -> ast::RoleOption| {
        if let Some(b) = v {
            list.push(f(b));
        }
    };
    push(c.superuser, ast::RoleOption::SuperUser);
    push(c.login, ast::RoleOption::Login);
    push(c.create_db, ast::RoleOption::CreateDB);
    push(c.create_role, ast::RoleOption::CreateRole);
    if let Some(p) = &c.password {
        list.push(ast::RoleOption::Password(p.clone()));
    }
    if let Some(e) = &c.valid_until {
        list.push(ast::RoleOption::ValidUntil(e.clone()));
    }
    if let Some(e) = &c.connection_limit {
        list.push(ast::RoleOption::ConnectionLimit(e.clone()));
    }
    let o = options(&list)?;
    if !me.superuser && !me.createrole {
        return Err(denied("permission denied to create role"));
    }
    if o.superuser == Some(true) && !me.superuser {
        return Err(denied("must be superuser to create superusers"));
    }
    for n in &c.names {
        let name = role_name(n)?;
        if name.starts_with("pg_") {
            return Err(Error::user("42939", format!("role name \"{name}\" is reserved")));
        }
        if matches!(name.as_str(), "public" | "none") {
            return Err(Error::user("42939", format!("role name \"{name}\" is reserved")));
        }
        if find(shared, txn, &name)?.is_some() {
            if c.if_not_exists {
                continue;
            }
            return Err(Error::user("42710", format!("role \"{name}\" already exists")));
        }
        let def = RoleDef {
            superuser: o.superuser.unwrap_or(false),
            login: o.login.unwrap_or(false),
            createdb: o.createdb.unwrap_or(false),
            createrole: o.createrole.unwrap_or(false),
            password: o.password.clone().flatten(),
            member_of: Vec::new(),
            valid_until: o.valid_until,
            connection_limit: o.connection_limit.unwrap_or(-1),
        };
        shared.catalog.create(txn, 0, &name, 0, Def::Role(def))?;
    }
    Ok(done("CREATE ROLE"))
}

/// ALTER ROLE / ALTER USER.
pub fn alter_role(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    name: &ast::Ident,
    op: &ast::AlterRoleOperation,
) -> Result<QueryResult> {
    let name = ident(name);
    let me = current(shared, txn, path)?;
    let Some((obj, mut def)) = find(shared, txn, &name)? else {
        return Err(Error::user("42704", format!("role \"{name}\" does not exist")));
    };
    let mut obj = (*obj).clone();
    let own = name == path.user;
    match op {
        ast::AlterRoleOperation::RenameRole { role_name } => {
            let new = ident(role_name);
            if own {
                return Err(Error::user("0A000", "session user cannot be renamed"));
            }
            if !me.superuser && (!me.createrole || def.superuser) {
                return Err(denied("permission denied to rename role"));
            }
            if new.starts_with("pg_") || matches!(new.as_str(), "public" | "none") {
                return Err(Error::user("42939", format!("role name \"{new}\" is reserved")));
            }
            if find(shared, txn, &new)?.is_some() {
                return Err(Error::user("42710", format!("role \"{new}\" already exists")));
            }
            obj.name = new;
        }
        ast::AlterRoleOperation::WithOptions { options: list } => {
            let o = options(list)?;
            // A role may change its own password without CREATEROLE.
            let only_password = o.password.is_some()
                && o.superuser.is_none()
                && o.login.is_none()
                && o.createdb.is_none()
                && o.createrole.is_none()
                && o.valid_until.is_none()
                && o.connection_limit.is_none();
            if (def.superuser || o.superuser.is_some()) && !me.superuser {
                return Err(denied(
                    "must be superuser to alter superuser roles or change superuser attribute",
                ));
            }
            if !(me.superuser || me.createrole || (own && only_password)) {
                return Err(denied("permission denied to alter role"));
            }
            if let Some(v) = o.superuser {
                def.superuser = v;
            }
            if let Some(v) = o.login {
                def.login = v;
            }
            if let Some(v) = o.createdb {
                def.createdb = v;
            }
            if let Some(v) = o.createrole {
                def.createrole = v;
            }
            if let Some(p) = o.password {
                def.password = p;
            }
            if let Some(v) = o.valid_until {
                def.valid_until = Some(v);
            }
            if let Some(v) = o.connection_limit {
                def.connection_limit = v;
            }
            obj.def = Def::Role(def);
        }
        _ => return Err(unsupported("ALTER ROLE … SET / RESET and membership changes")),
    }
    shared.catalog.update(txn, obj)?;
    Ok(done("ALTER ROLE"))
}

/// DROP ROLE / DROP USER [IF EXISTS].
pub fn drop_roles(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    names: &[ast::ObjectName],
    if_exists: bool,
) -> Result<QueryResult> {
    let me = current(shared, txn, path)?;
    if !me.superuser && !me.createrole {
        return Err(denied("permission denied to drop role"));
    }
    for n in names {
        let name = role_name(n)?;
        let Some((obj, def)) = find(shared, txn, &name)? else {
            if if_exists {
                continue;
            }
            return Err(Error::user("42704", format!("role \"{name}\" does not exist")));
        };
        if name == path.user {
            return Err(Error::user("55006", "current user cannot be dropped"));
        }
        if def.superuser && !me.superuser {
            return Err(denied("must be superuser to drop superusers"));
        }
        let owned: Vec<_> =
            shared.catalog.all(txn)?.into_iter().filter(|o| o.owner == obj.id).collect();
        if let Some(first) = owned.first() {
            return Err(Error::user(
                "2BP01",
                format!(
                    "role \"{name}\" cannot be dropped because some objects depend on it (owner of {} \"{}\"{})",
                    first.def.kind_name(),
                    first.name,
                    if owned.len() > 1 {
                        format!(" and {} other objects", owned.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        shared.catalog.drop(txn, obj.id, false)?;
    }
    Ok(done("DROP ROLE"))
}
