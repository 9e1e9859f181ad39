//! `bench sql`: QubeDB's embedded SQL engine against SQLite (rusqlite,
//! bundled), in one process and one run, on the same data with the same
//! statements (prepared once, executed many times):
//!
//! 1. point select by primary key;
//! 2. range scan of 100 rows through a secondary index;
//! 3. insert of `--rows` rows in one transaction;
//! 4. GROUP BY aggregate over all rows;
//! 5. a three-table join with a filter;
//! 6. ORDER BY an indexed column, LIMIT 10.
//!
//! Both engines are durable on disk (QubeDB's defaults; SQLite WAL mode,
//! synchronous=FULL) and get the same page cache (`--cache-mb`). Each line reports operations per second for both and
//! the ratio QubeDB/SQLite (more than 1× means QubeDB is faster).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use qube_sql::{Database, Session, Value};
use qube_storage::{BTreeEngine, Options};
use rusqlite::{Connection, params};

#[derive(clap::Args, Clone)]
pub struct SqlArgs {
    /// Rows of the main table (inserted by line 3, read by the others).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Point selects in line 1 (line 2 runs a hundredth as many ranges).
    #[arg(long, default_value_t = 100_000)]
    lookups: u64,
    /// Repetitions of lines 4 and 5 (line 6 runs as often as line 2).
    #[arg(long, default_value_t = 5)]
    repeat: u64,
    /// Page cache of each engine, in MiB: QubeDB's buffer pool
    /// (`Options::pool_bytes`) and SQLite's `PRAGMA cache_size`, the same
    /// for both (as in `bench storage`).
    #[arg(long, default_value_t = 1024)]
    cache_mb: u64,
    /// Directory under which a fresh temporary directory is made (default /var/tmp).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Lines to run and report, comma-separated (default all). The table
    /// is always loaded (by line 3's inserts), but line 3 is only reported
    /// when chosen.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=6))]
    lines: Vec<u8>,
}

const GROUPS: u64 = 1000;
const HS: u64 = 100;

struct Line {
    label: &'static str,
    unit: &'static str,
    sqlite: f64,
    qubedb: f64,
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn rate(n: u64, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

pub fn main(args: SqlArgs) -> Result<()> {
    ensure!(args.rows >= 1000, "--rows must be at least 1000");
    let base = args.dir.clone().unwrap_or_else(|| "/var/tmp".into());
    std::fs::create_dir_all(&base)?;
    let root = tempfile::Builder::new().prefix("qube-bench-sql-").tempdir_in(&base)?;
    let cache_bytes = args.cache_mb << 20;
    let lite = sqlite_open(&root.path().join("sqlite.db"), cache_bytes)?;
    let qdir = root.path().join("qubedb");
    let engine = BTreeEngine::open(
        &qdir,
        Options { pool_bytes: cache_bytes as usize, ..Options::default() },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let db = Database::with_engine(Arc::new(engine)).map_err(|e| anyhow!("{e}"))?;
    let mut q = db.session().map_err(|e| anyhow!("{e}"))?;
    let mut lines = Vec::new();
    let want = |n: u8| args.lines.is_empty() || args.lines.contains(&n);

    // Schema (untimed).
    let schema = "CREATE TABLE t (id integer PRIMARY KEY, grp integer NOT NULL, val integer NOT NULL, name text);
                  CREATE INDEX t_val ON t (val);
                  CREATE TABLE g (id integer PRIMARY KEY, hid integer NOT NULL, name text);
                  CREATE TABLE h (id integer PRIMARY KEY, label text)";
    lite.execute_batch(schema)?;
    qx(&mut q, schema)?;
    {
        let tx = lite.unchecked_transaction()?;
        for i in 0..GROUPS {
            tx.execute(
                "INSERT INTO g VALUES (?1, ?2, ?3)",
                params![i as i64, (i % HS) as i64, format!("g{i}")],
            )?;
        }
        for i in 0..HS {
            tx.execute("INSERT INTO h VALUES (?1, ?2)", params![i as i64, format!("h{i}")])?;
        }
        tx.commit()?;
        let gv: Vec<String> = (0..GROUPS).map(|i| format!("({i}, {}, 'g{i}')", i % HS)).collect();
        let hv: Vec<String> = (0..HS).map(|i| format!("({i}, 'h{i}')")).collect();
        qx(
            &mut q,
            &format!(
                "INSERT INTO g VALUES {}; INSERT INTO h VALUES {}",
                gv.join(","),
                hv.join(",")
            ),
        )?;
    }

    // 3. Insert, in one transaction, prepared.
    let row = |i: u64| {
        (i as i64, (i % GROUPS) as i64, ((i * 7919) % args.rows) as i64, format!("name-{i}"))
    };
    let t = Instant::now();
    {
        let tx = lite.unchecked_transaction()?;
        {
            let mut st = tx.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)")?;
            for i in 0..args.rows {
                let (a, b, c, d) = row(i);
                st.execute(params![a, b, c, d])?;
            }
        }
        tx.commit()?;
    }
    let sqlite_ins = rate(args.rows, t);
    let t = Instant::now();
    {
        let st = q.prepare("INSERT INTO t VALUES ($1, $2, $3, $4)").map_err(|e| anyhow!("{e}"))?;
        qx(&mut q, "BEGIN")?;
        for i in 0..args.rows {
            let (a, b, c, d) = row(i);
            q.execute_prepared(
                &st,
                &[Value::Int8(a), Value::Int8(b), Value::Int8(c), Value::Text(d)],
            )
            .map_err(|e| anyhow!("insert {i}: {e}"))?;
        }
        qx(&mut q, "COMMIT")?;
    }
    let qube_ins = rate(args.rows, t);
    eprintln!("[sql] insert: sqlite {sqlite_ins:.0} rows/s, qubedb {qube_ins:.0} rows/s");

    // 1. Point select by primary key.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let ids: Vec<i64> = (0..args.lookups).map(|_| (rng(&mut seed) % args.rows) as i64).collect();
    if want(1) {
        let t = Instant::now();
        {
            let mut st = lite.prepare("SELECT name FROM t WHERE id = ?1")?;
            for id in &ids {
                let name: String = st.query_row(params![id], |r| r.get(0))?;
                ensure!(name.len() > 5, "bad name");
            }
        }
        let s1 = rate(args.lookups, t);
        let st = q.prepare("SELECT name FROM t WHERE id = $1").map_err(|e| anyhow!("{e}"))?;
        let t = Instant::now();
        for id in &ids {
            let r = q.execute_prepared(&st, &[Value::Int8(*id)]).map_err(|e| anyhow!("{e}"))?;
            ensure!(r[0].rows.len() == 1, "point select found {} rows", r[0].rows.len());
        }
        let q1 = rate(args.lookups, t);
        lines.push(Line {
            label: "1. point select by primary key",
            unit: "queries/s",
            sqlite: s1,
            qubedb: q1,
        });
        eprintln!("[sql] line 1 done");
    }

    // 2. Range of 100 rows through the index on val.
    let ranges = (args.lookups / 100).max(10);
    let starts: Vec<i64> =
        (0..ranges).map(|_| (rng(&mut seed) % (args.rows - 100)) as i64).collect();
    if want(2) {
        let t = Instant::now();
        {
            let mut st = lite.prepare("SELECT id, name FROM t WHERE val BETWEEN ?1 AND ?2")?;
            for s in &starts {
                // Each row's values are read, as QubeDB's results hold them.
                let mut n = 0;
                let mut rows = st.query(params![s, s + 99])?;
                while let Some(r) = rows.next()? {
                    let (_id, name): (i64, String) = (r.get(0)?, r.get(1)?);
                    ensure!(name.len() > 5, "bad name");
                    n += 1;
                }
                ensure!(n == 100, "sqlite range found {n} rows");
            }
        }
        let s2 = rate(ranges, t);
        let st = q
            .prepare("SELECT id, name FROM t WHERE val BETWEEN $1 AND $2")
            .map_err(|e| anyhow!("{e}"))?;
        let t = Instant::now();
        for s in &starts {
            let r = q
                .execute_prepared(&st, &[Value::Int8(*s), Value::Int8(s + 99)])
                .map_err(|e| anyhow!("{e}"))?;
            ensure!(r[0].rows.len() == 100, "qubedb range found {} rows", r[0].rows.len());
        }
        let q2 = rate(ranges, t);
        lines.push(Line {
            label: "2. range of 100 rows through an index",
            unit: "queries/s",
            sqlite: s2,
            qubedb: q2,
        });
        eprintln!("[sql] line 2 done");
    }
    if want(3) {
        lines.push(Line {
            label: "3. insert in one transaction",
            unit: "rows/s",
            sqlite: sqlite_ins,
            qubedb: qube_ins,
        });
    }

    // 4–6: repeated queries. Lines 4 and 5 read every row and run
    // `--repeat` times; line 6 reads ten rows in well under a millisecond,
    // so it runs as often as line 2 (a couple of runs would time little but
    // the first execution's planning and the clock).
    let queries = [
        (
            4,
            "4. GROUP BY over all rows",
            "SELECT grp, count(*), sum(val) FROM t GROUP BY grp",
            GROUPS as usize,
            args.repeat,
        ),
        (
            5,
            "5. three-table join with a filter",
            "SELECT count(*) FROM t JOIN g ON t.grp = g.id JOIN h ON g.hid = h.id WHERE h.label = 'h7'",
            1,
            args.repeat,
        ),
        (
            6,
            "6. ORDER BY indexed column LIMIT 10",
            "SELECT id, val FROM t ORDER BY val DESC LIMIT 10",
            10,
            ranges.max(args.repeat),
        ),
    ];
    for (n, label, sql, expect, runs) in queries {
        if !want(n) {
            continue;
        }
        let t = Instant::now();
        for _ in 0..runs {
            let mut st = lite.prepare_cached(sql)?;
            // Every value of every row is read (all integers here).
            let ncols = st.column_count();
            let mut n = 0;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                for c in 0..ncols {
                    let _: i64 = r.get(c)?;
                }
                n += 1;
            }
            ensure!(n == expect, "sqlite {label}: {n} rows");
        }
        let s = rate(runs, t);
        let st = q.prepare(sql).map_err(|e| anyhow!("{e}"))?;
        let t = Instant::now();
        for _ in 0..runs {
            let r = q.execute_prepared(&st, &[]).map_err(|e| anyhow!("{label}: {e}"))?;
            ensure!(r[0].rows.len() == expect, "qubedb {label}: {} rows", r[0].rows.len());
        }
        let qn = rate(runs, t);
        lines.push(Line { label, unit: "queries/s", sqlite: s, qubedb: qn });
        eprintln!("[sql] {label} done");
    }

    println!("## SQL, embedded: QubeDB vs SQLite, {} rows, durable on disk\n", args.rows);
    println!("| line | unit | SQLite | QubeDB | QubeDB/SQLite | target |");
    println!("|---|---|---:|---:|---:|---|");
    lines.sort_by_key(|l| l.label);
    for l in &lines {
        let ratio = l.qubedb / l.sqlite;
        let met = if ratio >= 1.0 { "≥ 1.0× met" } else { "≥ 1.0× **missed**" };
        println!(
            "| {} | {} | {:.1} | {:.1} | {ratio:.2}× | {met} |",
            l.label, l.unit, l.sqlite, l.qubedb
        );
    }
    println!(
        "\nSame schema, data and statements in both engines, each statement prepared once. QubeDB: `qube_sql::Database` over `BTreeEngine` (durability Always), one session; SQLite: rusqlite (bundled), WAL mode, synchronous=FULL, one connection; page cache {} MiB each.",
        args.cache_mb
    );
    Ok(())
}

fn qx(s: &mut Session, sql: &str) -> Result<()> {
    s.execute(sql).map_err(|e| anyhow!("{sql}: {e}"))?;
    Ok(())
}

fn sqlite_open(path: &Path, cache_bytes: u64) -> Result<Connection> {
    let c = Connection::open(path).context("open sqlite")?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
    c.pragma_update(None, "cache_size", -((cache_bytes / 1024).max(1) as i64))?;
    Ok(c)
}
