//! The `qubedb` command: `serve` runs the server (PostgreSQL protocol;
//! HTTP comes later), `check` verifies a data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qube_storage::{BTreeEngine, Engine, Error, Options};

#[derive(Parser)]
#[command(name = "qubedb", version, about = "QubeDB: one engine, five data models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: PostgreSQL wire protocol on --pg-addr over the data
    /// directory (or memory). SIGINT or SIGTERM stops it cleanly: running
    /// statements finish, connections close, the database is checkpointed.
    Serve(ServeArgs),
    /// Verify a data directory: every page checksum, the B+Tree's order,
    /// links, depth and fill, overflow chains, and the free-list accounting.
    ///
    /// Opening the directory recovers it first (the WAL after the last
    /// checkpoint is replayed and a checkpoint is taken), exactly as a server
    /// start would; the check then reads every page from disk.
    Check {
        /// The data directory.
        #[arg(long, default_value = "./qubedb-data", env = "QUBEDB_DATA")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The data directory (created if missing).
    #[arg(long, default_value = "./qubedb-data", env = "QUBEDB_DATA")]
    data: PathBuf,
    /// Keep everything in memory (nothing is written; --data is ignored).
    #[arg(long, env = "QUBEDB_MEMORY")]
    memory: bool,
    /// Where PostgreSQL clients connect.
    #[arg(long, default_value = "127.0.0.1:5433", env = "QUBEDB_PG_ADDR")]
    pg_addr: String,
    /// Where the HTTP API will listen (accepted; not served yet).
    #[arg(long, default_value = "127.0.0.1:8080", env = "QUBEDB_HTTP_ADDR")]
    http_addr: String,
    /// Log level or tracing filter (error, warn, info, debug, trace,
    /// or e.g. "qube_pgwire=debug").
    #[arg(long, default_value = "info", env = "QUBEDB_LOG_LEVEL")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check { data } => check(&data),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("qubedb serve: bad --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let db = if args.memory {
        qube_sql::Database::memory()
    } else {
        qube_sql::Database::open(&args.data)
    };
    let db = match db {
        Ok(db) => db,
        Err(e) => {
            tracing::error!("cannot open {}: {e}", args.data.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.pg_addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.pg_addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = qube_pgwire::Server::new(db.clone(), qube_pgwire::Config::default());
        let where_ =
            if args.memory { "memory".to_string() } else { args.data.display().to_string() };
        tracing::info!(
            "QubeDB serving {where_}: PostgreSQL protocol on {addr} (HTTP on {} is not built yet)",
            args.http_addr
        );
        let serving = tokio::spawn(server.serve(listener, stopped));
        shutdown_signal().await;
        tracing::info!("shutting down: finishing running statements");
        let _ = stop.send(true);
        match serving.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    if let Err(e) = result {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    // The last handle: closing the engine checkpoints it.
    drop(db);
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn check(dir: &Path) -> ExitCode {
    if !dir.join(qube_storage::btree::DATA_FILE).exists() {
        eprintln!("qubedb check: {} is not a QubeDB data directory (no data file)", dir.display());
        return ExitCode::from(2);
    }
    let opts =
        Options { checkpoint_interval: None, checkpoint_wal_bytes: u64::MAX, ..Options::default() };
    let result = BTreeEngine::open(dir, opts).and_then(|engine| {
        let report = engine.verify()?;
        let status = engine.status()?;
        engine.close()?;
        Ok((report, status))
    });
    match result {
        Ok((r, s)) => {
            println!("{}: OK", dir.display());
            println!("  keys            {}", r.keys);
            println!("  tree depth      {}", r.depth);
            println!(
                "  pages           {} (leaf {}, internal {}, overflow {}, free {}, free-list {})",
                r.pages,
                r.leaf_pages,
                r.internal_pages,
                r.overflow_pages,
                r.free_pages,
                r.freelist_pages
            );
            println!(
                "  node fill       {}% (underfull nodes: {})",
                r.fill_percent, r.underfull_nodes
            );
            println!("  checkpoint LSN  {}", s.checkpoint_lsn);
            println!("  bytes on disk   {}", s.disk_bytes);
            ExitCode::SUCCESS
        }
        Err(e @ Error::Corruption { .. }) => {
            eprintln!("qubedb check: CORRUPT: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("qubedb check: {e}");
            ExitCode::from(2)
        }
    }
}
