//! `bench bank`: bank transfers through QubeDB's transaction layer
//! (`qube_txn::Mvcc` over `BTreeEngine`) against SQLite.
//!
//! The parent runs one child process per engine (`bench bank --engine X
//! ...`). The child runs the four lines one after the other, each on a fresh
//! store in its own subdirectory: load the accounts, run transfers from 1 or
//! 2 threads for `--secs`, check the total of all balances, close, reopen,
//! check the total again, delete the subdirectory. It prints one JSON line per
//! line of the report; the parent prints the Markdown report. See README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::store::EngineKind;
use crate::{mix, thousands};

/// Every account starts with this balance.
pub const INITIAL_BALANCE: i64 = 1000;
/// A transfer moves 1..=MAX_AMOUNT.
const MAX_AMOUNT: u64 = 100;
/// Accounts per transaction while loading.
pub const LOAD_BATCH: u64 = 1000;
/// How long a line may run past `--secs` before the child gives up on it
/// (a transaction that never finishes) and exits.
const HANG_GRACE: Duration = Duration::from_secs(60);

const SEED: u64 = 0x5142_4442_6261_6e6b; // "QBDBbank"

#[derive(Args, Clone)]
pub struct BankArgs {
    /// Engines to run, comma-separated (sqlite, qubedb).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,qubedb")]
    engines: Vec<EngineKind>,
    /// Seconds of transfers per line (after the load).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Accounts in the uncontended lines.
    #[arg(long, default_value_t = 100_000)]
    uncontended: u64,
    /// Accounts in the contended lines.
    #[arg(long, default_value_t = 10)]
    contended: u64,
    /// QubeDB's isolation level for transfers: read-committed (PostgreSQL's
    /// default; both rows are locked with get_for_update before they are
    /// read, so no update is lost), repeatable-read or serializable (a
    /// transfer that meets a concurrent commit fails with 40001 and is
    /// retried). SQLite serializes writers whatever this says.
    #[arg(long, value_enum, default_value = "read-committed")]
    isolation: crate::bank_qubedb::IsolationArg,
    /// Engine cache in MiB (QubeDB's buffer pool, SQLite's cache_size per connection).
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// Directory under which a fresh temporary directory is made (default /var/tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only these lines (1-4, comma-separated); the others show `—`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run every line for this engine in this process, in the
    /// directory --dir, and print one JSON line per line.
    #[arg(long, hide = true)]
    engine: Option<EngineKind>,
}

/// One line of the report.
#[derive(Debug, Clone, Copy, Serialize)]
struct LineSpec {
    label: &'static str,
    accounts: u64,
    threads: usize,
    /// The QubeDB/SQLite ratio this line should reach.
    target: f64,
}

fn lines(args: &BankArgs) -> [LineSpec; 4] {
    let line = |label, accounts, threads| LineSpec {
        label,
        accounts,
        threads,
        target: if threads == 1 { 1.0 } else { 1.5 },
    };
    [
        line("1. uncontended, 1 thread", args.uncontended, 1),
        line("2. uncontended, 2 threads", args.uncontended, 2),
        line("3. contended, 1 thread", args.contended, 1),
        line("4. contended, 2 threads", args.contended, 2),
    ]
}

pub fn main(args: BankArgs) -> Result<()> {
    ensure!(args.secs > 0.0, "--secs must be positive");
    ensure!(args.uncontended >= 2 && args.contended >= 2, "a transfer needs two accounts");
    ensure!(
        !args.engines.contains(&EngineKind::Redb) && args.engine != Some(EngineKind::Redb),
        "redb has no transactions benchmark; use --engines sqlite,qubedb"
    );
    match args.engine {
        Some(kind) => run_child(kind, &args),
        None => run_parent(&args),
    }
}

// ---------------------------------------------------------------- what an engine provides

/// Why a transfer attempt must be retried.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    /// QubeDB `Error::Serialization` (SQLSTATE 40001).
    Serialization,
    /// QubeDB `Error::Deadlock` (SQLSTATE 40P01).
    Deadlock,
    /// SQLite `SQLITE_BUSY` after the busy timeout.
    Busy,
}

/// The store of one line, shared by its worker threads.
pub trait Bank: Sync + Sized {
    /// Creates the store in the empty `dir` and loads `n` accounts with
    /// `INITIAL_BALANCE` each, `LOAD_BATCH` accounts per transaction; then
    /// checkpoints, so the run starts with the data in the data files.
    fn create(dir: &Path, n: u64, cache_bytes: u64) -> Result<Self>;
    /// Reopens the store that `create` made.
    fn open(dir: &Path, cache_bytes: u64) -> Result<Self>;
    /// A worker for one thread (SQLite: its own connection).
    fn worker(&self) -> Result<Box<dyn Worker + '_>>;
    /// Reads every account in one transaction; returns the accounts in order.
    fn audit(&self) -> Result<Audit>;
    /// Logs engine-specific counters to stderr (after a run).
    fn log_status(&self, _prefix: &str) {}
    /// Checkpoints and closes.
    fn close(self) -> Result<()>;
}

pub trait Worker {
    /// One attempt of one transfer transaction: reads the balances of
    /// `from` and `to`, writes both, commits. `Ok(None)` if it committed,
    /// `Ok(Some(why))` if it rolled back and should be retried, `Err` for
    /// any other failure.
    fn transfer(&mut self, from: u64, to: u64, amount: i64) -> Result<Option<Retry>>;
}

/// What one read of all accounts found.
#[derive(Debug, Default)]
pub struct Audit {
    /// Number of accounts.
    pub count: u64,
    /// Sum of all balances.
    pub total: i64,
    /// Whether the ids were exactly 0..count in order.
    pub ids_in_order: bool,
}

impl Audit {
    /// Adds the next account in id order.
    pub fn push(&mut self, id: u64, balance: i64) {
        if self.count == 0 {
            self.ids_in_order = true;
        }
        self.ids_in_order &= id == self.count;
        self.count += 1;
        self.total += balance;
    }

    fn check(&self, n: u64, when: &str) -> Result<()> {
        let expected = n as i64 * INITIAL_BALANCE;
        ensure!(
            self.count == n && self.ids_in_order,
            "WRONG ACCOUNTS {when}: found {} accounts (ids 0..n in order: {}), expected {n}",
            self.count,
            self.ids_in_order
        );
        ensure!(
            self.total == expected,
            "WRONG TOTAL {when}: the balances add up to {}, expected {expected} (off by {})",
            self.total,
            self.total - expected
        );
        Ok(())
    }
}

// ---------------------------------------------------------------- child: one engine

/// Retries by cause.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Retries {
    serialization: u64,
    deadlock: u64,
    busy: u64,
}

impl Retries {
    fn add(&mut self, why: Retry) {
        match why {
            Retry::Serialization => self.serialization += 1,
            Retry::Deadlock => self.deadlock += 1,
            Retry::Busy => self.busy += 1,
        }
    }

    fn merge(&mut self, o: Retries) {
        self.serialization += o.serialization;
        self.deadlock += o.deadlock;
        self.busy += o.busy;
    }
}

/// One engine's run of one line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineRun {
    /// Committed transfers during the run.
    commits: u64,
    /// From the start of the run until the last worker stopped.
    secs: f64,
    retries: Retries,
    /// Transfers still being retried when the time was up (rolled back, not counted).
    abandoned: u64,
    /// Seconds the untimed load (and its checkpoint) took.
    load_secs: f64,
}

impl LineRun {
    fn tps(&self) -> f64 {
        self.commits as f64 / self.secs
    }
}

/// What the child prints for each line: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct ChildLine {
    line: usize,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Outcome {
    Ok(LineRun),
    Failed { error: String },
}

fn run_child(kind: EngineKind, args: &BankArgs) -> Result<()> {
    crate::bank_qubedb::set_isolation(args.isolation);
    let root = args.dir.clone().context("--engine needs --dir")?;
    let mut failed = false;
    for (i, spec) in lines(args).iter().enumerate() {
        if !args.only.is_empty() && !args.only.contains(&(i + 1)) {
            continue;
        }
        let dir = root.join(format!("line{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let res = match kind {
            EngineKind::Qubedb => run_line::<crate::bank_qubedb::QubeBank>(kind, spec, &dir, args),
            EngineKind::Sqlite => {
                run_line::<crate::bank_sqlite::SqliteBank>(kind, spec, &dir, args)
            }
            EngineKind::Redb => Err(anyhow!("redb has no transactions benchmark")),
        };
        let _ = std::fs::remove_dir_all(&dir);
        let outcome = match res {
            Ok(r) => Outcome::Ok(r),
            Err(e) => {
                eprintln!("[{}] {}: FAILED: {e:#}", kind.name(), spec.label);
                failed = true;
                Outcome::Failed { error: format!("{e:#}") }
            }
        };
        println!("{}", serde_json::to_string(&ChildLine { line: i, outcome })?);
    }
    ensure!(!failed, "{} failed", kind.label());
    Ok(())
}

/// Load, run, check the total, close, reopen, check the total again.
fn run_line<B: Bank>(
    kind: EngineKind,
    spec: &LineSpec,
    dir: &Path,
    args: &BankArgs,
) -> Result<LineRun> {
    let prefix = format!("[{}] {}", kind.name(), spec.label);
    let cache_bytes = args.cache_mb << 20;
    let t = Instant::now();
    let bank = B::create(dir, spec.accounts, cache_bytes).context("load")?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("{prefix}: loaded {} accounts in {load_secs:.2} s", thousands(spec.accounts as f64));
    bank.audit()
        .context("reading every account after the load")?
        .check(spec.accounts, "after the load")?;

    let seed = mix(SEED ^ spec.accounts ^ ((spec.threads as u64) << 32));
    let mut run = transfers(&bank, spec, Duration::from_secs_f64(args.secs), seed, &prefix)?;
    run.load_secs = load_secs;
    eprintln!(
        "{prefix}: {} transfers in {:.2} s = {} tx/s; retries: {} serialization, {} deadlock, {} busy; {} abandoned at the end",
        run.commits,
        run.secs,
        thousands(run.tps()),
        run.retries.serialization,
        run.retries.deadlock,
        run.retries.busy,
        run.abandoned,
    );
    bank.log_status(&prefix);

    bank.audit()
        .context("reading every account after the run")?
        .check(spec.accounts, "after the run")?;
    bank.close().context("closing after the run")?;
    let bank = B::open(dir, cache_bytes).context("reopening after the run")?;
    bank.audit()
        .context("reading every account after reopening")?
        .check(spec.accounts, "after closing and reopening")?;
    bank.close().context("closing after the reopen")?;
    eprintln!("{prefix}: total checked after the run and after reopening: ok");
    Ok(run)
}

/// A small PRNG: splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Runs `spec.threads` workers for `secs`; each picks two distinct random
/// accounts and a random amount, and retries the transfer until it commits.
fn transfers<B: Bank>(
    bank: &B,
    spec: &LineSpec,
    secs: Duration,
    seed: u64,
    prefix: &str,
) -> Result<LineRun> {
    let n = spec.accounts;
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let barrier = Barrier::new(spec.threads + 1);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);

    let (results, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let (stop, progress, barrier, first_error) =
                    (&stop, &progress, &barrier, &first_error);
                s.spawn(move || {
                    let worker = bank.worker();
                    barrier.wait();
                    let deadline = Instant::now() + secs;
                    let res = worker.and_then(|mut w| {
                        work(w.as_mut(), n, Rng(mix(seed ^ t as u64)), deadline, stop, progress)
                    });
                    if let Err(e) = &res {
                        stop.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| anyhow!("thread {t}: {e:#}"));
                    }
                    res
                })
            })
            .collect();
        // Watchdog: a transfer that never returns (a lost wake-up, an
        // undetected deadlock) would hang the benchmark; say so and exit.
        s.spawn(|| {
            let limit = Instant::now() + secs + HANG_GRACE;
            while !done.load(Ordering::Relaxed) {
                if Instant::now() > limit {
                    eprintln!(
                        "{prefix}: HANG: the workers are still running {} s after the end of the run ({} transfers committed so far); a transaction never returned. Aborting.",
                        HANG_GRACE.as_secs(),
                        progress.load(Ordering::Relaxed)
                    );
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let elapsed = start.elapsed();
        done.store(true, Ordering::Relaxed);
        (results, elapsed)
    });

    let mut run = LineRun {
        commits: 0,
        secs: elapsed.as_secs_f64(),
        retries: Retries::default(),
        abandoned: 0,
        load_secs: 0.0,
    };
    for (t, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(c)) => {
                run.commits += c.commits;
                run.retries.merge(c.retries);
                run.abandoned += c.abandoned;
            }
            Ok(Err(_)) => {} // reported below through first_error
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                bail!("thread {t} panicked: {msg}");
            }
        }
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(run)
}

#[derive(Default)]
struct WorkerCounts {
    commits: u64,
    retries: Retries,
    abandoned: u64,
}

/// One worker thread's loop.
fn work(
    w: &mut dyn Worker,
    n: u64,
    mut rng: Rng,
    deadline: Instant,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<WorkerCounts> {
    let mut c = WorkerCounts::default();
    'transfers: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let from = rng.below(n);
        let mut to = rng.below(n - 1);
        if to >= from {
            to += 1;
        }
        let amount = 1 + rng.below(MAX_AMOUNT) as i64;
        loop {
            match w.transfer(from, to, amount)? {
                None => break,
                Some(why) => {
                    c.retries.add(why);
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        c.abandoned += 1;
                        break 'transfers;
                    }
                }
            }
        }
        c.commits += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(c)
}

// ---------------------------------------------------------------- parent: report

#[derive(Serialize)]
struct Report {
    secs: f64,
    cache_bytes: u64,
    cpus: usize,
    /// Per engine, one outcome per line (null if its child printed none).
    engines: BTreeMap<&'static str, Vec<Option<Outcome>>>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    spec: LineSpec,
    tx_per_sec: BTreeMap<&'static str, f64>,
    qubedb_over_sqlite: Option<f64>,
    target_met: Option<bool>,
}

fn run_parent(args: &BankArgs) -> Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("/var/tmp"));
    std::fs::create_dir_all(&base)?;
    let root = tempfile::Builder::new().prefix("qube-bench-bank-").tempdir_in(&base)?;
    let exe = std::env::current_exe()?;
    let specs = lines(args);

    let mut engines: BTreeMap<&'static str, Vec<Option<Outcome>>> = BTreeMap::new();
    for kind in EngineKind::ALL.into_iter().filter(|k| args.engines.contains(k)) {
        let dir = root.path().join(kind.name());
        eprintln!("[{}] running in {}", kind.name(), dir.display());
        let outcomes = match spawn_child(&exe, kind, &dir, args, specs.len()) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("[{}] FAILED: {e:#}", kind.name());
                vec![Some(Outcome::Failed { error: format!("{e:#}") }); specs.len()]
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        engines.insert(kind.name(), outcomes);
    }

    let run = |kind: EngineKind, i: usize| match engines.get(kind.name()) {
        Some(v) => match v.get(i) {
            Some(Some(Outcome::Ok(r))) => Some(r),
            _ => None,
        },
        None => None,
    };
    let rows: Vec<Row> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let tps = |k| run(k, i).map(LineRun::tps);
            let ratio = (|| Some(tps(EngineKind::Qubedb)? / tps(EngineKind::Sqlite)?))();
            Row {
                spec: *spec,
                tx_per_sec: [EngineKind::Sqlite, EngineKind::Qubedb]
                    .iter()
                    .filter_map(|&k| Some((k.name(), tps(k)?)))
                    .collect(),
                qubedb_over_sqlite: ratio,
                target_met: ratio.map(|r| r >= spec.target),
            }
        })
        .collect();

    // Markdown.
    let cpus = std::thread::available_parallelism().map_or(0, |p| p.get());
    println!(
        "## Bank transfers: {} s per line, durable commits, cache {} MiB, QubeDB at {}, {} CPUs\n",
        args.secs,
        args.cache_mb,
        args.isolation.name(),
        cpus
    );
    println!(
        "| workload | accounts | SQLite tx/s | QubeDB tx/s | QubeDB/SQLite | target | SQLite busy retries | QubeDB retries 40001 / 40P01 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let cell = |x: Option<f64>| x.map_or("—".to_string(), thousands);
    for (i, row) in rows.iter().enumerate() {
        let retries = |k: EngineKind, f: fn(&LineRun) -> String| run(k, i).map_or("—".into(), f);
        let ratio = match (row.qubedb_over_sqlite, row.target_met) {
            (Some(r), Some(true)) => format!("{r:.2}×"),
            (Some(r), _) => format!("**{r:.2}×**"),
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | ≥ {:.1}×{} | {} | {} |",
            row.spec.label,
            thousands(row.spec.accounts as f64),
            cell(row.tx_per_sec.get("sqlite").copied()),
            cell(row.tx_per_sec.get("qubedb").copied()),
            ratio,
            row.spec.target,
            match row.target_met {
                Some(true) => " met",
                Some(false) => " missed",
                None => "",
            },
            retries(EngineKind::Sqlite, |r| retry_cell(r.retries.busy, r)),
            retries(EngineKind::Qubedb, |r| format!(
                "{} / {}",
                retry_cell(r.retries.serialization, r),
                retry_cell(r.retries.deadlock, r)
            )),
        );
    }
    println!(
        "\nEach transfer: one transaction that reads two distinct random accounts' balances, writes both and commits durably. QubeDB: `Mvcc` over `BTreeEngine` (`Durability::Always`, group commit), at the isolation level in the heading, `get_for_update` of both accounts in key order, retried on serialization failure (40001) or deadlock (40P01). SQLite: WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`, one connection per thread, busy timeout 10 s. Retries count the attempts that failed with a retryable error and rolled back; the percentage is retries / committed transfers. SQLite's busy retries are `SQLITE_BUSY` after the 10 s busy timeout. After each run, and again after closing and reopening, every line checks that all accounts are there and that the total of their balances is unchanged; a line that fails the check is listed under Failures, with `—` in its cells."
    );
    let mut failures = Vec::new();
    for (name, outcomes) in &engines {
        for (i, o) in outcomes.iter().enumerate() {
            let error = match o {
                Some(Outcome::Ok(_)) => continue,
                None if !args.only.is_empty() && !args.only.contains(&(i + 1)) => continue,
                Some(Outcome::Failed { error }) => error.as_str(),
                None => "no result (the child stopped before this line)",
            };
            failures.push(format!("{name}, {}: {error}", specs[i].label));
        }
    }
    if !failures.is_empty() {
        println!("\n**Failures:**\n");
        for f in &failures {
            println!("- {}", f.replace('\n', " "));
        }
    }

    if let Some(path) = &args.json {
        let report =
            Report { secs: args.secs, cache_bytes: args.cache_mb << 20, cpus, engines, rows };
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(failures.is_empty(), "{} line(s) failed", failures.len());
    Ok(())
}

/// "1,234 (5.6%)": retries and their share of committed transfers ("0" for none).
fn retry_cell(retries: u64, r: &LineRun) -> String {
    if retries == 0 || r.commits == 0 {
        return thousands(retries as f64);
    }
    format!("{} ({:.1}%)", thousands(retries as f64), 100.0 * retries as f64 / r.commits as f64)
}

/// Runs `bench bank --engine kind` and collects the JSON line it prints for
/// each line. Lines it printed before failing are kept.
fn spawn_child(
    exe: &Path,
    kind: EngineKind,
    dir: &Path,
    args: &BankArgs,
    n_lines: usize,
) -> Result<Vec<Option<Outcome>>> {
    let output = Command::new(exe)
        .arg("bank")
        .args(["--engine", kind.name()])
        .args(["--secs", &args.secs.to_string()])
        .args(["--uncontended", &args.uncontended.to_string()])
        .args(["--contended", &args.contended.to_string()])
        .args(["--cache-mb", &args.cache_mb.to_string()])
        .args(["--isolation", args.isolation.name()])
        .args(args.only.iter().flat_map(|l| ["--only".to_string(), l.to_string()]))
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting the child")?;
    let mut outcomes = vec![None; n_lines];
    for line in String::from_utf8(output.stdout)?.lines() {
        let l: ChildLine = serde_json::from_str(line)
            .with_context(|| format!("parsing the child's output line {line:?}"))?;
        *outcomes.get_mut(l.line).context("line number out of range")? = Some(l.outcome);
    }
    if !output.status.success() {
        for o in outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(Outcome::Failed { error: format!("child exited with {}", output.status) });
        }
    }
    Ok(outcomes)
}
