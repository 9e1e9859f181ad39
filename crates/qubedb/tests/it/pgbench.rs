//! pgbench against `qubedb serve`: initialisation (client-side COPY with
//! FREEZE, server-side generate_series, primary and foreign keys, VACUUM
//! ANALYZE), then the built-in TPC-B-like and select-only scripts with 4
//! clients in simple and prepared mode. No transaction may fail, and the
//! balances must agree with the history table afterwards. Skipped with a
//! message when pgbench is missing (CI installs it: Debian's
//! `postgresql` package ships pgbench and psql).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL client program: Debian's newest version, else PATH.
fn find(tool: &str) -> Option<PathBuf> {
    let works =
        |p: &PathBuf| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    let mut candidates = Vec::new();
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> =
            dirs.flatten().map(|d| d.path().join("bin").join(tool)).collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.push(PathBuf::from(tool));
    candidates.into_iter().find(works)
}

/// The server, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// Runs a PostgreSQL client program against the server; its stdout, or
/// a failed test with its stderr.
fn run(bin: &PathBuf, port: u16, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "qubedb"])
        .args(args)
        .env_remove("PGPASSWORD")
        .env_remove("PGDATABASE")
        .output()
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{} {args:?} failed:\n{stdout}\n{stderr}", bin.display());
    format!("{stdout}\n{stderr}")
}

/// The number after `label` on its line of pgbench's report.
fn figure(report: &str, label: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.trim_start().starts_with(label))?;
    line[line.find(label)? + label.len()..].split_whitespace().next()?.parse().ok()
}

#[test]
fn pgbench_init_and_builtin_scripts_without_failures() {
    let (Some(pgbench), Some(psql)) = (find("pgbench"), find("psql")) else {
        assert!(std::env::var_os("CI").is_none(), "pgbench or psql missing in CI");
        eprintln!("skipped: pgbench missing (pgbench_init_and_builtin_scripts_without_failures)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_qubedb"))
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .args(["--pg-addr", &format!("127.0.0.1:{port}"), "--http-addr", "127.0.0.1:0"])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("qubedb serve");
    let _server = Server(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sql = |q: &str| {
        run(&psql, port, &["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "qubedb", "-c", q])
    };

    // Server-side generation with foreign keys, then the default steps
    // (client-side COPY … WITH (FREEZE ON)), each from scratch.
    let init = run(&pgbench, port, &["-i", "-s", "1", "-I", "dtGvpf", "qubedb"]);
    assert!(init.contains("done in"), "{init}");
    assert_eq!(sql("SELECT count(*) FROM pgbench_accounts").trim(), "100000");
    let init = run(&pgbench, port, &["-i", "-s", "1", "qubedb"]);
    assert!(init.contains("done in"), "{init}");
    assert_eq!(sql("SELECT count(*) FROM pgbench_accounts").trim(), "100000");
    assert_eq!(sql("SELECT count(*) FROM pgbench_tellers").trim(), "10");

    // One client: the balances must agree with the history afterwards.
    run(&pgbench, port, &["-n", "-b", "tpcb-like", "-c", "1", "-T", "3", "qubedb"]);
    assert_balances(&sql(BALANCES));

    for script in ["tpcb-like", "select-only"] {
        for mode in ["simple", "prepared"] {
            let report = run(
                &pgbench,
                port,
                // -n: no VACUUM and TRUNCATE of the history before each
                // run, so that the history holds every run's deltas.
                &["-n", "-b", script, "-M", mode, "-c", "4", "-j", "2", "-T", "10", "qubedb"],
            );
            let done = figure(&report, "number of transactions actually processed:");
            assert!(done.is_some_and(|n| n > 0), "{script} {mode}:\n{report}");
            let failed = figure(&report, "number of failed transactions:").unwrap_or(0);
            assert_eq!(failed, 0, "{script} {mode}:\n{report}");
        }
    }
    // Concurrent UPDATEs of the same rows at READ COMMITTED apply to the
    // newest version: no update is lost, so the balances still agree.
    assert_balances(&sql(BALANCES));
}

const BALANCES: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts), \
    (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), \
    (SELECT sum(delta) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)";

/// The sums of the balances and of the history's deltas are equal.
fn assert_balances(sums: &str) {
    let v: Vec<&str> = sums.trim().split('|').collect();
    assert_eq!(v.len(), 5, "{sums}");
    assert!(v[4].parse::<u64>().is_ok_and(|n| n > 0), "history is empty: {sums}");
    assert!(v[..4].iter().all(|x| *x == v[0]), "balances disagree: {sums}");
}
