//! The `qubedb` command. The server arrives with a later issue; today it
//! offers `check`, which verifies a data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qubedb", version, about = "QubeDB: one engine, five data models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify every page, checksum and B+Tree invariant of a data directory.
    Check {
        /// The data directory.
        #[arg(long, default_value = "./qubedb-data")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { data } => check(&data),
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    let _ = dir;
    eprintln!("qubedb check: not built yet");
    ExitCode::FAILURE
}
