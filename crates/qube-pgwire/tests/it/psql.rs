//! psql's describe commands (`\l`, `\dn`, `\dt`, `\d`, `\d+ table`, `\di`,
//! `\dv`, `\du`) through the server: they read pg_catalog with the
//! queries psql 15 sends. Skipped, with a message, when psql is not
//! installed (CI installs postgresql-client).

use std::path::PathBuf;
use std::process::Command;

use crate::{TestServer, simple_rows};

/// psql from PATH or from Debian's PostgreSQL packages.
pub fn find_psql() -> Option<PathBuf> {
    let works =
        |p: &PathBuf| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    let mut candidates = vec![PathBuf::from("psql")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = dirs.flatten().map(|d| d.path().join("bin/psql")).collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.into_iter().find(works)
}

/// Runs one psql command; returns its standard output, failing the test
/// on any error psql reports.
fn psql(psql: &PathBuf, port: u16, command: &str) -> String {
    let out = Command::new(psql)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", command])
        .arg(format!("host=127.0.0.1 port={port} user=qubedb dbname=qubedb"))
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && stderr.is_empty(), "psql {command}: {stderr}\n{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_commands_read_the_catalog() {
    let Some(bin) = find_psql() else {
        eprintln!("psql is not installed: skipping psql_describe_commands_read_the_catalog");
        return;
    };
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute(
        "CREATE TABLE items (id integer PRIMARY KEY, name varchar(20) NOT NULL DEFAULT 'x', price numeric(10,2));
         CREATE INDEX items_name ON items (name);
         CREATE TABLE lines (item integer REFERENCES items (id) ON DELETE CASCADE, qty integer CHECK (qty > 0));
         CREATE VIEW cheap AS SELECT id FROM items WHERE price < 10;
         CREATE SCHEMA extra;
         COMMENT ON COLUMN items.price IS 'in euros';",
    )
    .await
    .expect("schema");
    let port = srv.addr.port();
    let cases: &[(&str, &[&str])] = &[
        ("\\l", &["qubedb", "UTF8"]),
        ("\\dn", &["public", "extra"]),
        ("\\dt", &["items", "lines", "table"]),
        ("\\d", &["items", "lines", "cheap", "view"]),
        (
            "\\d items",
            &[
                "Table \"public.items\"",
                "character varying(20)",
                "numeric(10,2)",
                "not null",
                "\"items_pkey\" PRIMARY KEY, btree (id)",
                "\"items_name\" btree (name)",
                "Referenced by:",
                "FOREIGN KEY (item) REFERENCES items(id) ON DELETE CASCADE",
            ],
        ),
        ("\\d+ items", &["in euros", "Access method: heap"]),
        ("\\d lines", &["Check constraints:", "Foreign-key constraints:"]),
        ("\\di", &["items_pkey", "items_name", "index"]),
        ("\\dv", &["cheap", "view"]),
        ("\\du", &["qubedb", "Superuser"]),
    ];
    for (cmd, expected) in cases {
        let bin = bin.clone();
        let out =
            tokio::task::spawn_blocking(move || psql(&bin, port, cmd)).await.expect("psql task");
        for e in *expected {
            assert!(out.contains(e), "psql {cmd}: no {e:?} in\n{out}");
        }
    }
    // The catalog through the extended protocol, as drivers read it.
    let rows = c
        .query(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 ORDER BY a.attnum",
            &[&"items"],
        )
        .await
        .expect("pg_attribute");
    let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(cols[1], ("name".to_string(), "character varying(20)".to_string()));
    let r = simple_rows(
        &c,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await;
    assert_eq!(r[0][0].as_deref(), Some("3"));
    srv.stop().await;
}
