//! The `qubedb` command. The server arrives with a later issue; today it
//! offers `check`, which verifies a data directory.

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { data } => check(&data),
    }
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
