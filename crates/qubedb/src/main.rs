//! The `qubedb` command: `serve` runs the server (PostgreSQL protocol and
//! HTTP API), `shell` and `sql` run SQL on an embedded database or on a
//! running server (`--url`), `check` verifies a data directory.

mod config;
mod remote;
mod shell;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use config::ServeArgs;
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
    /// An interactive SQL shell on an embedded database (no server needed)
    /// or on a running server (--url): history, multi-line statements
    /// ending with ';', aligned output, \timing, \q, \?.
    Shell(EmbedArgs),
    /// Run SQL from -c or -f on an embedded database or a running server
    /// (--url), print results as psql does; stops at the first error (exit
    /// code 1; 2 if the database cannot be opened or the connection fails).
    Sql {
        #[command(flatten)]
        db: EmbedArgs,
        /// SQL to run (may hold several statements).
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// A file of SQL to run ("-" for standard input).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Accepted for psql compatibility (e.g. ON_ERROR_STOP=1): scripts
        /// always stop at the first error.
        #[arg(short = 'v', long = "set")]
        vars: Vec<String>,
        /// Print each statement's time.
        #[arg(long)]
        timing: bool,
    },
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
struct EmbedArgs {
    /// The data directory (created if missing).
    #[arg(long, default_value = "./qubedb-data", env = "QUBEDB_DATA")]
    data: PathBuf,
    /// Use an empty database in memory (nothing is written).
    #[arg(long, conflicts_with = "data")]
    memory: bool,
    /// A running server instead of a data directory:
    /// postgres://user[:password]@host[:port]/database, or libpq's
    /// "host=… port=… user=… dbname=…". Port 5433 and user qubedb unless
    /// given; the password may also come from PGPASSWORD. --data or
    /// --memory on the command line win over QUBEDB_URL.
    #[arg(long, env = "QUBEDB_URL")]
    url: Option<String>,
    /// The database to connect to (a database in --url wins).
    #[arg(long, short = 'd', default_value = "qubedb")]
    database: String,
}

/// An open backend for the shell, and what to call it in the banner.
struct Opened {
    backend: Box<dyn shell::Backend>,
    target: String,
    database: String,
    /// The embedded database, dropped (checkpointed) after the session.
    _db: Option<qube_sql::Database>,
}

impl EmbedArgs {
    /// Settles --url against --data and --memory: both on the command
    /// line is a usage error; otherwise the command line beats the
    /// environment (`m` are the subcommand's matches).
    fn settle(&mut self, m: Option<&clap::ArgMatches>) -> Result<(), String> {
        use clap::parser::ValueSource::CommandLine;
        let Some(m) = m else { return Ok(()) };
        let local = self.memory || m.value_source("data") == Some(CommandLine);
        match m.value_source("url") {
            Some(CommandLine) if local => Err("give --url or --data/--memory, not both".into()),
            Some(CommandLine) | None => Ok(()),
            Some(_) => {
                if local {
                    self.url = None;
                }
                Ok(())
            }
        }
    }

    /// Connects to `--url`, or opens the data directory; errors are
    /// printed.
    fn connect(&self) -> Option<Opened> {
        let Some(url) = &self.url else {
            let (db, session, target) = self.open()?;
            return Some(Opened {
                backend: Box::new(shell::Embedded { session }),
                target,
                database: self.database.clone(),
                _db: Some(db),
            });
        };
        let target = match remote::Target::parse(url, &self.database) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("qubedb: {e}");
                return None;
            }
        };
        match remote::Remote::connect(&target) {
            Ok(r) => Some(Opened {
                backend: Box::new(r),
                target: target.describe(),
                database: target.database.clone(),
                _db: None,
            }),
            Err(e) => {
                eprintln!("qubedb: cannot connect to {}: {e}", target.describe());
                None
            }
        }
    }

    /// Opens the database and a session; errors are printed.
    fn open(&self) -> Option<(qube_sql::Database, qube_sql::Session, String)> {
        let (db, target) = if self.memory {
            (qube_sql::Database::memory(), "memory".to_string())
        } else {
            (qube_sql::Database::open(&self.data), self.data.display().to_string())
        };
        let db = match db {
            Ok(db) => db,
            Err(e) => {
                eprintln!("qubedb: cannot open {target}: {e}");
                return None;
            }
        };
        match db.session_in(&self.database) {
            Ok(s) => Some((db, s, target)),
            Err(e) => {
                eprintln!("qubedb: {e}");
                None
            }
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Serve(args) => {
            let Some(m) = matches.subcommand_matches("serve") else { return ExitCode::from(2) };
            let print = args.print_config;
            match config::resolve(args, m) {
                Ok(s) if print => {
                    print!("{}", s.to_toml());
                    ExitCode::SUCCESS
                }
                Ok(s) => serve(s),
                Err(e) => {
                    eprintln!("qubedb serve: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check { data } => check(&data),
        Command::Shell(mut args) => {
            if let Err(e) = args.settle(matches.subcommand_matches("shell")) {
                eprintln!("qubedb shell: {e}");
                return ExitCode::from(2);
            }
            let Some(mut o) = args.connect() else { return ExitCode::from(2) };
            let ok = shell::repl(o.backend.as_mut(), &o.target, &o.database);
            // The session before its database.
            drop(o.backend);
            if ok { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Command::Sql { db: mut args, command, file, vars: _, timing } => {
            if let Err(e) = args.settle(matches.subcommand_matches("sql")) {
                eprintln!("qubedb sql: {e}");
                return ExitCode::from(2);
            }
            let sql = match (command, file) {
                (Some(c), _) => c,
                (None, Some(f)) if f.as_os_str() == "-" => {
                    let mut s = String::new();
                    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                        eprintln!("qubedb sql: cannot read standard input: {e}");
                        return ExitCode::from(2);
                    }
                    s
                }
                (None, Some(f)) => match std::fs::read_to_string(&f) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("qubedb sql: {}: {e}", f.display());
                        return ExitCode::from(2);
                    }
                },
                (None, None) => {
                    eprintln!("qubedb sql: give -c SQL or -f FILE");
                    return ExitCode::from(2);
                }
            };
            let Some(mut o) = args.connect() else { return ExitCode::from(2) };
            let code = shell::run_script(o.backend.as_mut(), &sql, timing);
            drop(o.backend);
            ExitCode::from(code)
        }
    }
}

fn serve(args: config::Settings) -> ExitCode {
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("qubedb serve: bad log level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match qube_pgwire::tls::load_config(cert, key) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let db = if args.memory {
        qube_sql::Database::memory()
    } else {
        qube_sql::Database::open_with_buffer_pool(&args.data, args.shared_buffers)
    };
    let db = match db {
        Ok(db) => db,
        Err(e) => {
            tracing::error!("cannot open {}: {e}", args.data.display());
            return ExitCode::from(2);
        }
    };
    for (name, value) in &args.session_defaults {
        if let Err(e) = db.set_session_default(name, value) {
            tracing::error!("{name}: {e}");
            return ExitCode::from(2);
        }
    }
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
        let http_listener = tokio::net::TcpListener::bind(&args.http_addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.http_addr))?;
        let http_addr = http_listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let config = qube_pgwire::Config {
            max_connections: args.max_connections,
            max_message_bytes: args.max_message_bytes,
            auth: args.auth,
            tls,
            require_tls: args.require_tls,
            ..qube_pgwire::Config::default()
        };
        let server = qube_pgwire::Server::new(db.clone(), config);
        let pg = server.clone();
        let http_config = qube_http::Config {
            pg_connections: Some(std::sync::Arc::new(move || pg.connections())),
            ..qube_http::Config::default()
        };
        let where_ =
            if args.memory { "memory".to_string() } else { args.data.display().to_string() };
        tracing::info!(
            "QubeDB serving {where_}: PostgreSQL protocol on {addr}, HTTP on {http_addr} (auth {:?}, TLS {})",
            args.auth,
            if args.tls_cert.is_some() { "on" } else { "off" }
        );
        let serving = tokio::spawn(server.serve(listener, stopped.clone()));
        let http = tokio::spawn(qube_http::serve(http_listener, db.clone(), http_config, stopped));
        shutdown_signal().await;
        tracing::info!("shutting down: finishing running statements");
        let _ = stop.send(true);
        let mut result = Ok(());
        for (name, task) in [("PostgreSQL", serving), ("HTTP", http)] {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(format!("{name} server: {e}")),
                Err(e) => result = Err(format!("{name} server: {e}")),
            }
        }
        result
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
