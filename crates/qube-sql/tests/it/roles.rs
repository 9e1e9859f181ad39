//! Roles: CREATE/ALTER/DROP ROLE and USER, stored as SCRAM verifiers,
//! transactional and persistent, with PostgreSQL's errors, and sessions
//! that run as a role.

use qube_sql::{Database, Value};

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Null => "NULL".into(),
        other => format!("{other:?}"),
    }
}

/// A boolean column as 'yes'/'no', readable among the other attributes.
fn yn(col: &str) -> String {
    format!("CASE WHEN {col} THEN 'yes' ELSE 'no' END")
}

fn one(s: &mut qube_sql::Session, sql: &str) -> String {
    let r = s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    text(&r.last().unwrap().rows[0][0])
}

fn code(s: &mut qube_sql::Session, sql: &str) -> String {
    s.execute(sql).map(|_| panic!("{sql} should fail")).unwrap_err().sqlstate().to_string()
}

#[test]
fn roles_are_created_altered_and_dropped_like_postgres() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        assert_eq!(one(&mut s, "SELECT current_user"), "qubedb");
        s.execute("CREATE ROLE alice WITH LOGIN PASSWORD 'secret' CREATEDB VALID UNTIL 'infinity'")
            .unwrap();
        // CREATE USER is CREATE ROLE with LOGIN.
        s.execute("CREATE USER bob PASSWORD 'pw'").unwrap();
        s.execute("CREATE ROLE nologin_role").unwrap();
        assert_eq!(
            one(
                &mut s,
                &format!("SELECT {} FROM pg_roles WHERE rolname = 'bob'", yn("rolcanlogin"))
            ),
            "yes"
        );
        assert_eq!(
            one(
                &mut s,
                &format!(
                    "SELECT {} FROM pg_roles WHERE rolname = 'nologin_role'",
                    yn("rolcanlogin")
                )
            ),
            "no"
        );
        let pw = one(&mut s, "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'");
        assert!(pw.starts_with("SCRAM-SHA-256$4096:"), "{pw}");
        assert!(!pw.contains("secret"));
        assert_eq!(
            one(&mut s, "SELECT rolpassword FROM pg_roles WHERE rolname = 'alice'"),
            "********"
        );
        assert_eq!(
            one(&mut s, "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = 'alice'"),
            "infinity"
        );
        // A verifier given as the password is stored as it is.
        s.execute(&format!("CREATE ROLE carol LOGIN PASSWORD '{pw}'")).unwrap();
        assert_eq!(one(&mut s, "SELECT rolpassword FROM pg_authid WHERE rolname = 'carol'"), pw);
        // Errors as PostgreSQL's.
        assert_eq!(code(&mut s, "CREATE ROLE alice"), "42710");
        // PostgreSQL has no CREATE ROLE IF NOT EXISTS either.
        assert_eq!(code(&mut s, "CREATE ROLE IF NOT EXISTS alice"), "42601");
        assert_eq!(code(&mut s, "CREATE ROLE pg_mine"), "42939");
        assert_eq!(code(&mut s, "CREATE ROLE x LOGIN NOLOGIN"), "42601");
        assert_eq!(code(&mut s, "CREATE ROLE x PASSWORD 'SCRAM-SHA-256$bad'"), "22023");
        assert_eq!(code(&mut s, "CREATE ROLE x VALID UNTIL 'never'"), "22007");
        assert_eq!(code(&mut s, "CREATE ROLE x CONNECTION LIMIT -5"), "22023");
        assert_eq!(code(&mut s, "ALTER ROLE nosuch LOGIN"), "42704");
        assert_eq!(code(&mut s, "DROP ROLE nosuch"), "42704");
        s.execute("DROP ROLE IF EXISTS nosuch").unwrap();
        assert_eq!(code(&mut s, "DROP ROLE qubedb"), "55006");
        assert_eq!(code(&mut s, "ALTER ROLE qubedb RENAME TO other"), "0A000");
        assert_eq!(code(&mut s, "ALTER ROLE bob RENAME TO alice"), "42710");
        assert_eq!(code(&mut s, "GRANT SELECT ON pg_class TO bob"), "0A000");
        // ALTER: options, password, rename, PASSWORD NULL.
        s.execute("ALTER ROLE bob WITH NOLOGIN CREATEROLE CONNECTION LIMIT 3").unwrap();
        s.execute("ALTER USER bob RENAME TO robert").unwrap();
        s.execute("ALTER ROLE robert PASSWORD NULL").unwrap();
        assert_eq!(
            one(
                &mut s,
                &format!(
                    "SELECT {} || {} || rolconnlimit::text || coalesce(rolpassword, 'none') FROM pg_authid WHERE rolname = 'robert'",
                    yn("rolcanlogin"),
                    yn("rolcreaterole")
                )
            ),
            "noyes3none"
        );
        // DDL on roles is transactional.
        s.execute("BEGIN; CREATE ROLE temp_role; DROP ROLE carol; ROLLBACK").unwrap();
        assert_eq!(
            one(
                &mut s,
                "SELECT count(*)::text FROM pg_roles WHERE rolname IN ('temp_role', 'carol')"
            ),
            "1"
        );
        s.execute("DROP ROLE carol, nologin_role").unwrap();
    }
    // Roles persist.
    let db = Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    assert_eq!(
        one(&mut s, "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"),
        "alice,qubedb,robert"
    );
    assert!(db.role("alice").unwrap().unwrap().password.unwrap().starts_with("SCRAM-SHA-256$"));
    assert!(db.role("carol").unwrap().is_none());
}

#[test]
fn sessions_run_as_their_role_and_role_attributes_are_enforced() {
    let db = Database::memory().unwrap();
    let mut su = db.session().unwrap();
    su.execute(
        "CREATE ROLE plain LOGIN; CREATE ROLE admin LOGIN CREATEROLE; CREATE ROLE boss SUPERUSER",
    )
    .unwrap();
    assert_eq!(db.session_as("qubedb", "nosuch").err().unwrap().sqlstate(), "28000");
    let mut p = db.session_as("qubedb", "plain").unwrap();
    assert_eq!(p.user(), "plain");
    assert_eq!(one(&mut p, "SELECT current_user"), "plain");
    assert_eq!(one(&mut p, "SELECT session_user"), "plain");
    assert_eq!(code(&mut p, "CREATE ROLE x"), "42501");
    assert_eq!(code(&mut p, "DROP ROLE admin"), "42501");
    assert_eq!(code(&mut p, "SELECT rolpassword FROM pg_authid"), "42501");
    // A role may change its own password, not its other attributes.
    p.execute("ALTER ROLE plain PASSWORD 'mine'").unwrap();
    assert_eq!(code(&mut p, "ALTER ROLE plain CREATEDB"), "42501");
    let mut a = db.session_as("qubedb", "admin").unwrap();
    a.execute("CREATE ROLE made_by_admin").unwrap();
    assert_eq!(code(&mut a, "CREATE ROLE x SUPERUSER"), "42501");
    assert_eq!(code(&mut a, "ALTER ROLE boss NOSUPERUSER"), "42501");
    assert_eq!(code(&mut a, "DROP ROLE boss"), "42501");
    a.execute("DROP ROLE made_by_admin").unwrap();
    // A role that owns objects cannot be dropped (2BP01).
    assert_eq!(code(&mut su, "DROP ROLE qubedb"), "55006");
    let mut other = db.session_as("qubedb", "admin").unwrap();
    assert_eq!(code(&mut other, "DROP ROLE qubedb"), "42501");
    let mut b = db.session_as("qubedb", "boss").unwrap();
    assert_eq!(code(&mut b, "DROP ROLE qubedb"), "2BP01");
}

#[test]
fn session_defaults_apply_to_new_sessions() {
    let db = Database::memory().unwrap();
    db.set_session_default("statement_timeout", "5s").unwrap();
    db.set_session_default("work_mem", "8MB").unwrap();
    let mut s = db.session().unwrap();
    assert_eq!(one(&mut s, "SHOW statement_timeout"), "5s");
    assert_eq!(one(&mut s, "SHOW work_mem"), "8MB");
    assert_eq!(db.set_session_default("work_mem", "1kB").unwrap_err().sqlstate(), "22023");
    assert_eq!(db.set_session_default("nosuch", "1").unwrap_err().sqlstate(), "42704");
}
