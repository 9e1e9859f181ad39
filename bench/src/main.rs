//! QubeDB benchmarks.
//!
//! * `bench storage`: QubeDB's B+Tree engine against redb and SQLite (this file);
//! * `bench bank`: bank transfers through QubeDB's transaction layer against
//!   SQLite (`bank.rs`).
//!
//! `bench storage` (the parent) runs each selected engine in three child
//! processes of this same binary (`bench storage --engine X --phase P ...`),
//! one after the other on the same directory: `load` (line 1), `small-cache`
//! (line 3) and `main` (lines 2, 4, 5). Each child has its own peak RSS
//! (VmHWM), so the small-cache child's memory belongs to line 3 alone. Each
//! child prints one JSON line with its results and the parent prints the
//! Markdown report. See README.md.

mod bank;
mod bank_qubedb;
mod bank_sqlite;
mod sql;
mod store;
mod store_qubedb;
mod store_redb;
mod store_sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use store::{EngineKind, Store};

pub const KEY_LEN: usize = 16;
pub const VAL_LEN: usize = 100;
pub type Key = [u8; KEY_LEN];
pub type Val = [u8; VAL_LEN];

#[derive(Parser)]
#[command(name = "bench", about = "QubeDB benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Storage engines: QubeDB B+Tree vs redb vs SQLite.
    Storage(StorageArgs),
    /// Bank transfers: QubeDB transactions (MVCC over the B+Tree) vs SQLite.
    Bank(bank::BankArgs),
    /// SQL, embedded: QubeDB's SQL engine vs SQLite.
    Sql(sql::SqlArgs),
}

#[derive(Args, Clone)]
struct StorageArgs {
    /// Engines to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "redb,sqlite,qubedb")]
    engines: Vec<EngineKind>,
    /// Number of keys.
    #[arg(long, default_value_t = 1_000_000)]
    n: u64,
    /// Keys per commit when loading.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Single-key durable commits (line 5).
    #[arg(long, default_value_t = 10_000)]
    commits: u64,
    /// Engine cache for every line but line 3, in MiB.
    #[arg(long, default_value_t = 1024)]
    cache_mb: u64,
    /// Runs of each read line (2, 3 and 4); the report shows the best run.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Directory under which a fresh temporary directory is made (default /var/tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run one phase of one engine in this process, in the
    /// directory --dir, and print the result as one JSON line.
    #[arg(long, hide = true, requires = "phase")]
    engine: Option<EngineKind>,
    /// Internal: the phase that this child runs (needs --engine).
    #[arg(long, hide = true, requires = "engine")]
    phase: Option<Phase>,
    /// Internal: the engine cache for `--phase small-cache`, in bytes.
    #[arg(long, hide = true)]
    cache_bytes: Option<u64>,
}

/// The part of one engine's run that one child process does. The parent runs
/// them in this order on the same directory.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Phase {
    /// Line 1, into the empty directory; leaves the data there.
    Load,
    /// Line 3, with a cache of 10% of the data.
    SmallCache,
    /// Lines 2, 4 and 5, with the big cache.
    Main,
}

impl Phase {
    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::SmallCache => "small-cache",
            Phase::Main => "main",
        }
    }
}

fn main() -> Result<()> {
    let args = match Cli::parse().cmd {
        Cmd::Storage(args) => args,
        Cmd::Bank(args) => return bank::main(args),
        Cmd::Sql(args) => return sql::main(args),
    };
    ensure!(args.n > 0 && args.batch > 0, "--n and --batch must be positive");
    ensure!(args.repeat > 0, "--repeat must be positive");
    match args.engine.zip(args.phase) {
        Some((kind, phase)) => {
            let dir = args.dir.clone().context("--engine needs --dir")?;
            let json = match phase {
                Phase::Load => serde_json::to_string(&load_phase(kind, &dir, &args)?)?,
                Phase::SmallCache => serde_json::to_string(&small_cache_phase(kind, &dir, &args)?)?,
                Phase::Main => serde_json::to_string(&main_phase(kind, &dir, &args)?)?,
            };
            println!("{json}");
            Ok(())
        }
        None => run_parent(&args),
    }
}

// ---------------------------------------------------------------- data

const KEY_SEED: u64 = 0x5142_4442_6b65_7973; // "QBDBkeys"
const VAL_SEED: u64 = 0x5142_4442_7661_6c73; // "QBDBvals"

/// splitmix64's finalizer: a bijection on u64 with good mixing.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The i-th key: 16 random-looking bytes. The first 8 bytes are a bijection of
/// `i`, so keys never collide. Computed, not stored, so no engine's RSS holds them.
fn key(i: u64) -> Key {
    let mut k = [0; KEY_LEN];
    k[..8].copy_from_slice(&mix(KEY_SEED ^ (2 * i)).to_be_bytes());
    k[8..].copy_from_slice(&mix(KEY_SEED ^ (2 * i + 1)).to_be_bytes());
    k
}

/// The i-th value: 100 random bytes.
fn value(i: u64) -> Val {
    let mut v = [0; VAL_LEN];
    let mut s = mix(VAL_SEED ^ i);
    for chunk in v.chunks_mut(8) {
        chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
        s = mix(s);
    }
    v
}

/// A permutation of 0..n without memory: j -> (j * stride + offset) mod n with
/// gcd(stride, n) = 1. Key indices are already random in key space; this only
/// makes the read order differ from the insertion order.
struct Shuffle {
    n: u64,
    stride: u64,
    offset: u64,
}

impl Shuffle {
    fn new(n: u64) -> Self {
        let gcd = |mut a: u64, mut b: u64| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let mut stride = (n as f64 * 0.618_033_988_7) as u64 | 1;
        while gcd(stride, n) != 1 {
            stride += 1;
        }
        Shuffle { n, stride, offset: mix(n) % n }
    }

    fn at(&self, j: u64) -> u64 {
        ((j as u128 * self.stride as u128 + self.offset as u128) % self.n as u128) as u64
    }
}

// ---------------------------------------------------------------- children: one engine

/// How many operations a line did and how long they took.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Measured {
    ops: u64,
    secs: f64,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// The run with the highest ops/s.
fn best(runs: &[Measured]) -> Measured {
    runs.iter()
        .copied()
        .max_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()))
        .unwrap_or_default()
}

/// What the load child reports (line 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoadResult {
    insert: Measured,
    /// Bytes of all files in the engine's directory after the load (and checkpoint).
    data_bytes: u64,
    /// VmHWM of the load child at the end.
    peak_rss_bytes: u64,
}

/// What the small-cache child reports (line 3).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SmallCacheResult {
    /// The engine cache: 10% of `LoadResult::data_bytes`.
    cache_bytes: u64,
    /// One entry per run (`--repeat`).
    reads: Vec<Measured>,
    /// VmRSS just before the store was opened.
    baseline_rss_bytes: u64,
    /// VmHWM after the last run, before the close.
    peak_rss_bytes: u64,
    /// `peak_rss_bytes - baseline_rss_bytes`: what the engine added while reading.
    engine_bytes: u64,
}

/// What the main child reports (lines 2, 4 and 5).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MainResult {
    /// One entry per run (`--repeat`).
    read_warm: Vec<Measured>,
    /// One entry per run (`--repeat`).
    scan: Vec<Measured>,
    single_commits: Measured,
    /// VmHWM of the main child at the end.
    peak_rss_bytes: u64,
}

fn timed(ops: u64, f: impl FnOnce() -> Result<()>) -> Result<Measured> {
    let t = Instant::now();
    f()?;
    Ok(Measured { ops, secs: t.elapsed().as_secs_f64() })
}

/// Runs `f` `repeat` times in a row, timing each run of `ops` operations.
fn timed_runs(
    kind: EngineKind,
    what: &str,
    repeat: u32,
    ops: u64,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<Measured>> {
    (1..=repeat)
        .map(|run| {
            let m = timed(ops, &mut f)?;
            log(kind, &format!("{what} (run {run}/{repeat})"), m);
            Ok(m)
        })
        .collect()
}

fn log(kind: EngineKind, what: &str, m: Measured) {
    eprintln!(
        "[{}] {what}: {} ops in {:.2} s = {} ops/s",
        kind.name(),
        m.ops,
        m.secs,
        thousands(m.ops_per_sec())
    );
}

/// Line 1: opens the store in the empty `dir` with the big cache, inserts N
/// keys, closes, and measures the files. The data stays for the next children.
fn load_phase(kind: EngineKind, dir: &Path, args: &StorageArgs) -> Result<LoadResult> {
    let n = args.n;
    let mut s = store::open(kind, dir, args.cache_mb << 20)?;
    let insert = timed(n, || {
        let mut pairs = Vec::with_capacity(args.batch);
        for i in 0..n {
            pairs.push((key(i), value(i)));
            if pairs.len() == args.batch || i == n - 1 {
                s.insert_batch(&pairs)?;
                pairs.clear();
            }
        }
        Ok(())
    })?;
    log(kind, "insert", insert);
    s.close()?;
    let data_bytes = dir_bytes(dir)?;
    eprintln!("[{}] data after load: {:.1} MiB", kind.name(), mib(data_bytes));
    Ok(LoadResult { insert, data_bytes, peak_rss_bytes: proc_status_bytes("VmHWM:")? })
}

/// Line 3: random point reads with a cache of `--cache-bytes`, `--repeat`
/// times. This process does nothing else, so the growth of its peak RSS over
/// the RSS just before the open is the memory the engine used for line 3.
fn small_cache_phase(kind: EngineKind, dir: &Path, args: &StorageArgs) -> Result<SmallCacheResult> {
    let cache_bytes = args.cache_bytes.context("--phase small-cache needs --cache-bytes")?;
    // Binary, libc and argument parsing only: keys are computed, not stored.
    let baseline_rss_bytes = proc_status_bytes("VmRSS:")?;
    let mut s = store::open(kind, dir, cache_bytes)?;
    let reads = timed_runs(kind, "reads, 10% cache", args.repeat, args.n, || {
        read_all(s.as_mut(), args.n, args.batch)
    })?;
    let peak_rss_bytes = proc_status_bytes("VmHWM:")?;
    s.close()?;
    let engine_bytes = peak_rss_bytes.saturating_sub(baseline_rss_bytes);
    eprintln!(
        "[{}] memory above baseline during line 3: {:.1} MiB for a cache of {:.1} MiB",
        kind.name(),
        mib(engine_bytes),
        mib(cache_bytes)
    );
    Ok(SmallCacheResult { cache_bytes, reads, baseline_rss_bytes, peak_rss_bytes, engine_bytes })
}

/// Lines 2, 4 and 5: reopens with the big cache, warms it with an untimed full
/// scan, then warm reads (`--repeat` times), full scans (`--repeat` times) and
/// single-key commits of new keys.
fn main_phase(kind: EngineKind, dir: &Path, args: &StorageArgs) -> Result<MainResult> {
    let n = args.n;
    let mut s = store::open(kind, dir, args.cache_mb << 20)?;
    s.scan_all()?;

    // 2. Random point reads, warm cache.
    let read_warm =
        timed_runs(kind, "reads, warm", args.repeat, n, || read_all(s.as_mut(), n, args.batch))?;

    // 4. Full ordered scan.
    let scan = timed_runs(kind, "scan", args.repeat, n, || {
        let (pairs, bytes) = s.scan_all()?;
        ensure!(pairs == n, "scan saw {pairs} pairs, expected {n}");
        ensure!(bytes == n * (KEY_LEN + VAL_LEN) as u64, "scan saw {bytes} bytes");
        Ok(())
    })?;

    // 5. Single-key durable commits of new keys.
    let single_commits = timed(args.commits, || {
        for i in n..n + args.commits {
            s.commit_one(&key(i), &value(i))?;
        }
        Ok(())
    })?;
    log(kind, "single commits", single_commits);
    s.close()?;

    Ok(MainResult { read_warm, scan, single_commits, peak_rss_bytes: proc_status_bytes("VmHWM:")? })
}

/// Reads every key once in shuffled order, `batch` keys per read batch, and
/// checks that all were found.
fn read_all(s: &mut dyn Store, n: u64, batch: usize) -> Result<()> {
    let order = Shuffle::new(n);
    let mut keys = Vec::with_capacity(batch);
    let mut found = 0;
    for j in 0..n {
        keys.push(key(order.at(j)));
        if keys.len() == batch || j == n - 1 {
            found += s.read_batch(&keys)?;
            keys.clear();
        }
    }
    ensure!(found == n, "found {found} of {n} keys");
    Ok(())
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// A size from this process's /proc/self/status, e.g. `field` = "VmHWM:"
/// (peak resident set size) or "VmRSS:" (current resident set size).
fn proc_status_bytes(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kib: u64 = line.split_whitespace().nth(1).context("bad /proc/self/status line")?.parse()?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------- parent: report

/// Everything the three children of one engine reported.
#[derive(Debug, Clone, Serialize)]
struct EngineResult {
    engine: EngineKind,
    load: LoadResult,
    small_cache: SmallCacheResult,
    main: MainResult,
}

/// A line of the report: its label and the measurement an engine result gives
/// for it (the best run for the repeated read lines).
type Line = (&'static str, fn(&EngineResult) -> Measured);

const LINES: [Line; 5] = [
    ("1. random inserts, batched durable commits", |r| r.load.insert),
    ("2. random point reads, warm cache", |r| best(&r.main.read_warm)),
    ("3. random point reads, cache = 10% of data", |r| best(&r.small_cache.reads)),
    ("4. full ordered scan (keys/s)", |r| best(&r.main.scan)),
    ("5. single-key durable commits", |r| r.main.single_commits),
];

#[derive(Serialize)]
struct Report {
    n: u64,
    batch: usize,
    commits: u64,
    cache_bytes: u64,
    repeat: u32,
    engines: BTreeMap<&'static str, Outcome>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Ok(EngineResult),
    Failed { error: String },
}

#[derive(Serialize)]
struct Row {
    workload: &'static str,
    /// The best run for lines 2, 3 and 4.
    ops_per_sec: BTreeMap<&'static str, f64>,
    qubedb_over_redb: Option<f64>,
    qubedb_over_sqlite: Option<f64>,
}

fn run_parent(args: &StorageArgs) -> Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("/var/tmp"));
    std::fs::create_dir_all(&base)?;
    let root = tempfile::Builder::new().prefix("qube-bench-").tempdir_in(&base)?;
    let exe = std::env::current_exe()?;

    let mut engines = BTreeMap::new();
    for kind in EngineKind::ALL.into_iter().filter(|k| args.engines.contains(k)) {
        let dir = root.path().join(kind.name());
        eprintln!("[{}] running in {}", kind.name(), dir.display());
        let outcome = match run_engine(&exe, kind, &dir, args) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => {
                eprintln!("[{}] FAILED: {e:#}", kind.name());
                Outcome::Failed { error: format!("{e:#}") }
            }
        };
        let _ = std::fs::remove_dir_all(&dir); // free the disk before the next engine
        engines.insert(kind.name(), outcome);
    }

    let result = |kind: EngineKind| match engines.get(kind.name()) {
        Some(Outcome::Ok(r)) => Some(r),
        _ => None,
    };
    let rows: Vec<Row> = LINES
        .iter()
        .map(|(label, get)| {
            let rate = |k| result(k).map(|r| get(r).ops_per_sec());
            let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
            Row {
                workload: label,
                ops_per_sec: EngineKind::ALL
                    .iter()
                    .filter_map(|&k| Some((k.name(), rate(k)?)))
                    .collect(),
                qubedb_over_redb: ratio(rate(EngineKind::Qubedb), rate(EngineKind::Redb)),
                qubedb_over_sqlite: ratio(rate(EngineKind::Qubedb), rate(EngineKind::Sqlite)),
            }
        })
        .collect();

    // Markdown.
    println!(
        "## Storage: {} keys (16-byte random keys, 100-byte values), {} keys/commit on load, {} single commits, cache {} MiB, lines 2–4 best of {} runs, {} CPUs\n",
        thousands(args.n as f64),
        thousands(args.batch as f64),
        thousands(args.commits as f64),
        args.cache_mb,
        args.repeat,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );
    println!(
        "| workload | redb ops/s | SQLite ops/s | QubeDB ops/s | QubeDB/redb | QubeDB/SQLite |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let cell = |x: Option<f64>| x.map_or("—".to_string(), thousands);
    let times = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.2}×"));
    for row in &rows {
        let rate = |k: EngineKind| row.ops_per_sec.get(k.name()).copied();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.workload,
            cell(rate(EngineKind::Redb)),
            cell(rate(EngineKind::Sqlite)),
            cell(rate(EngineKind::Qubedb)),
            times(row.qubedb_over_redb),
            times(row.qubedb_over_sqlite),
        );
    }
    println!(
        "\n| engine | data on disk after load | cache for line 3 | memory above baseline during line 3 | ratio | peak RSS, cache = {} MiB (line 1 / lines 2, 4, 5) |",
        args.cache_mb
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for kind in EngineKind::ALL {
        let Some(outcome) = engines.get(kind.name()) else { continue };
        let label = kind.label();
        match outcome {
            Outcome::Ok(r) => println!(
                "| {label} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2}× | {:.1} / {:.1} MiB |",
                mib(r.load.data_bytes),
                mib(r.small_cache.cache_bytes),
                mib(r.small_cache.engine_bytes),
                r.small_cache.engine_bytes as f64 / r.small_cache.cache_bytes as f64,
                mib(r.load.peak_rss_bytes),
                mib(r.main.peak_rss_bytes),
            ),
            Outcome::Failed { error } => println!(
                "| {label} | failed: {} | | | | |",
                error.replace('|', "/").replace('\n', " ")
            ),
        }
    }
    println!(
        "\nLine 3 runs in a child process of its own. Memory above baseline = that child's VmHWM after the reads − its VmRSS just before it opened the store; ratio = that memory / the cache for line 3 (the target is ≤ 1.20×). Peak RSS = VmHWM of the load child (line 1) and of the child that runs lines 2, 4 and 5, both with the big cache. QubeDB's cache is its buffer pool (`Options::pool_bytes`); redb's is `Builder::set_cache_size`; SQLite's is `PRAGMA cache_size`."
    );

    let failed: Vec<&str> = engines
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
        .map(|(name, _)| *name)
        .collect();
    if let Some(path) = &args.json {
        let report = Report {
            n: args.n,
            batch: args.batch,
            commits: args.commits,
            cache_bytes: args.cache_mb << 20,
            repeat: args.repeat,
            engines,
            rows,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(failed.is_empty(), "engines failed: {}", failed.join(", "));
    Ok(())
}

/// Runs one engine's three children on `dir`, one after the other: load
/// (line 1), small-cache (line 3, cache = 10% of the data the load left), main
/// (lines 2, 4, 5). The caller deletes `dir` afterwards.
fn run_engine(
    exe: &Path,
    kind: EngineKind,
    dir: &Path,
    args: &StorageArgs,
) -> Result<EngineResult> {
    let load: LoadResult = run_child(exe, kind, Phase::Load, dir, args, None)?;
    let small_cache: SmallCacheResult =
        run_child(exe, kind, Phase::SmallCache, dir, args, Some(load.data_bytes / 10))?;
    let main: MainResult = run_child(exe, kind, Phase::Main, dir, args, None)?;
    Ok(EngineResult { engine: kind, load, small_cache, main })
}

/// Runs `bench storage --engine kind --phase phase` and parses the JSON line it
/// prints last.
fn run_child<T: DeserializeOwned>(
    exe: &Path,
    kind: EngineKind,
    phase: Phase,
    dir: &Path,
    args: &StorageArgs,
    cache_bytes: Option<u64>,
) -> Result<T> {
    let mut cmd = Command::new(exe);
    cmd.arg("storage")
        .args(["--engine", kind.name()])
        .args(["--phase", phase.name()])
        .args(["--n", &args.n.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--commits", &args.commits.to_string()])
        .args(["--cache-mb", &args.cache_mb.to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .arg("--dir")
        .arg(dir);
    if let Some(bytes) = cache_bytes {
        cmd.args(["--cache-bytes", &bytes.to_string()]);
    }
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting the {} child", phase.name()))?;
    if !output.status.success() {
        bail!("{} child exited with {}", phase.name(), output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line =
        stdout.lines().last().with_context(|| format!("{} child printed nothing", phase.name()))?;
    serde_json::from_str(line)
        .with_context(|| format!("parsing the {} child's result", phase.name()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
