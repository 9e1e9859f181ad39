//! `qubedb serve`'s settings: each one by flag, by environment variable
//! (`QUBEDB_<NAME>`) and by a TOML file (`--config FILE`, key `<name>`),
//! in that order of precedence, then the default.
//!
//! ```toml
//! # qubedb.toml: every key is optional; an unknown key is an error
//! data = "./qubedb-data"
//! memory = false
//! pg_addr = "127.0.0.1:5433"
//! http_addr = "127.0.0.1:8080"
//! max_connections = 100
//! max_message_bytes = 67108864    # the largest message a client may send
//! auth = "scram-sha-256"          # or "trust"
//! tls_cert = "server.crt"         # PEM; with tls_key, SSLRequest gets 'S'
//! tls_key = "server.key"
//! require_tls = false             # clients not on loopback must use TLS
//! log_level = "info"              # or a tracing filter: "info,qube_pgwire=debug"
//! log_format = "text"             # or "json"
//! statement_timeout = "30s"       # session defaults, PostgreSQL's units
//! idle_in_transaction_session_timeout = "10min"
//! work_mem = "16MB"
//! ```
//!
//! clap reads flags and environment variables (`env = …`) and tells, per
//! argument, where its value came from (`ArgMatches::value_source`); a
//! value that is only clap's default gives way to the file's.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

/// The settings as flags and environment variables.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A TOML file of settings (flags and environment variables win over it).
    #[arg(long, env = "QUBEDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory (created if missing).
    #[arg(long, default_value = "./qubedb-data", env = "QUBEDB_DATA")]
    pub data: PathBuf,
    /// Keep everything in memory (nothing is written; --data is ignored).
    #[arg(long, env = "QUBEDB_MEMORY")]
    pub memory: bool,
    /// Where PostgreSQL clients connect.
    #[arg(long, default_value = "127.0.0.1:5433", env = "QUBEDB_PG_ADDR")]
    pub pg_addr: String,
    /// Where the HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:8080", env = "QUBEDB_HTTP_ADDR")]
    pub http_addr: String,
    /// Log level or tracing filter (error, warn, info, debug, trace,
    /// or e.g. "qube_pgwire=debug").
    #[arg(long, default_value = "info", env = "QUBEDB_LOG_LEVEL")]
    pub log_level: String,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, default_value = "text", env = "QUBEDB_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: String,
    /// The most PostgreSQL client connections at once (one more gets 53300).
    #[arg(long, default_value_t = 100, env = "QUBEDB_MAX_CONNECTIONS")]
    pub max_connections: u64,
    /// The largest protocol message a client may send, in bytes (a longer
    /// one ends its connection with 54000; PostgreSQL's limit is 1 GiB).
    #[arg(long, default_value_t = qube_pgwire::DEFAULT_MAX_MESSAGE_BYTES, env = "QUBEDB_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: usize,
    /// How PostgreSQL clients authenticate: trust (loopback clients only,
    /// no password) or scram-sha-256 (a password for every client).
    #[arg(long, default_value = "trust", env = "QUBEDB_AUTH")]
    pub auth: String,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "QUBEDB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "QUBEDB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that are not on loopback unless they use TLS.
    #[arg(long, env = "QUBEDB_REQUIRE_TLS")]
    pub require_tls: bool,
    /// Default statement_timeout of new sessions (e.g. 30s, 500ms; 0: none).
    #[arg(long, env = "QUBEDB_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,
    /// Default idle_in_transaction_session_timeout of new sessions.
    #[arg(long, env = "QUBEDB_IDLE_IN_TRANSACTION_SESSION_TIMEOUT")]
    pub idle_in_transaction_session_timeout: Option<String>,
    /// Default work_mem of new sessions (e.g. 4MB).
    #[arg(long, env = "QUBEDB_WORK_MEM")]
    pub work_mem: Option<String>,
    /// Buffer pool size, PostgreSQL's shared_buffers (e.g. 128MB, 1GB; at
    /// least 192kB). Pages are cached in it as they are used.
    #[arg(long, env = "QUBEDB_SHARED_BUFFERS", default_value = DEFAULT_SHARED_BUFFERS)]
    pub shared_buffers: String,
    /// Print the settings in effect (after flags, environment and file)
    /// as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// A number or a string (`statement_timeout = 5000` or `"5s"`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Text {
    Int(i64),
    Str(String),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Int(n) => n.to_string(),
            Text::Str(s) => s,
        }
    }
}

/// The file's keys: the flags' names with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    memory: Option<bool>,
    pg_addr: Option<String>,
    http_addr: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    max_connections: Option<u64>,
    max_message_bytes: Option<usize>,
    auth: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_tls: Option<bool>,
    statement_timeout: Option<Text>,
    idle_in_transaction_session_timeout: Option<Text>,
    work_mem: Option<Text>,
    shared_buffers: Option<Text>,
}

/// The settings in effect.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: PathBuf,
    pub memory: bool,
    pub pg_addr: String,
    pub http_addr: String,
    pub log_level: String,
    pub log_format: String,
    pub max_connections: u64,
    pub max_message_bytes: usize,
    pub auth: qube_pgwire::Auth,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls: bool,
    /// (setting, value) for `Database::set_session_default`.
    pub session_defaults: Vec<(&'static str, String)>,
    /// The buffer pool's size in bytes.
    pub shared_buffers: usize,
}

/// PostgreSQL's default shared_buffers.
const DEFAULT_SHARED_BUFFERS: &str = "128MB";

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// Resolves flag > environment > file > default. `m` is the `serve`
/// subcommand's matches (for where each value came from).
pub fn resolve(args: ServeArgs, m: &ArgMatches) -> Result<Settings, String> {
    let file = match &args.config {
        Some(p) => read_file(p)?,
        None => FileConfig::default(),
    };
    // The flag's (or environment's) value unless it is only the default.
    let given = |id: &str| !matches!(m.value_source(id), None | Some(ValueSource::DefaultValue));
    fn pick<T>(given: bool, flag: T, file: Option<T>) -> T {
        if given { flag } else { file.unwrap_or(flag) }
    }
    let opt = |flag: Option<String>, file: Option<Text>| flag.or(file.map(Text::into_string));
    let shared_buffers = pick(
        given("shared_buffers"),
        args.shared_buffers,
        file.shared_buffers.map(Text::into_string),
    );
    // In kB as PostgreSQL takes it (a bare number is kB here, not 8 kB
    // pages as in postgresql.conf); 192 kB is the engine's least.
    let shared_buffers =
        qube_sql::exec::spill::parse_memory("shared_buffers", &shared_buffers, 192, 1 << 40)
            .map_err(|e| e.to_string())?;
    let auth_text = pick(given("auth"), args.auth, file.auth);
    let auth: qube_pgwire::Auth = auth_text.parse()?;
    let log_format = pick(given("log_format"), args.log_format, file.log_format);
    if !matches!(log_format.as_str(), "text" | "json") {
        return Err(format!("unknown log_format \"{log_format}\" (text or json)"));
    }
    let s = Settings {
        data: pick(given("data"), args.data, file.data),
        memory: pick(given("memory"), args.memory, file.memory),
        pg_addr: pick(given("pg_addr"), args.pg_addr, file.pg_addr),
        http_addr: pick(given("http_addr"), args.http_addr, file.http_addr),
        log_level: pick(given("log_level"), args.log_level, file.log_level),
        log_format,
        max_connections: pick(given("max_connections"), args.max_connections, file.max_connections),
        max_message_bytes: pick(
            given("max_message_bytes"),
            args.max_message_bytes,
            file.max_message_bytes,
        ),
        auth,
        tls_cert: args.tls_cert.or(file.tls_cert),
        tls_key: args.tls_key.or(file.tls_key),
        require_tls: pick(given("require_tls"), args.require_tls, file.require_tls),
        session_defaults: [
            ("statement_timeout", opt(args.statement_timeout, file.statement_timeout)),
            (
                "idle_in_transaction_session_timeout",
                opt(
                    args.idle_in_transaction_session_timeout,
                    file.idle_in_transaction_session_timeout,
                ),
            ),
            ("work_mem", opt(args.work_mem, file.work_mem)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect(),
        shared_buffers,
    };
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return Err("TLS needs both tls_cert and tls_key".into());
    }
    if s.require_tls && s.tls_cert.is_none() {
        return Err("require_tls needs tls_cert and tls_key".into());
    }
    Ok(s)
}

/// TOML string quoting (for --print-config).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Settings {
    /// The settings as a TOML file that gives them.
    pub fn to_toml(&self) -> String {
        let mut lines = vec![
            format!("data = {}", quoted(&self.data.display().to_string())),
            format!("memory = {}", self.memory),
            format!("pg_addr = {}", quoted(&self.pg_addr)),
            format!("http_addr = {}", quoted(&self.http_addr)),
            format!("log_level = {}", quoted(&self.log_level)),
            format!("log_format = {}", quoted(&self.log_format)),
            format!("max_connections = {}", self.max_connections),
            format!("max_message_bytes = {}", self.max_message_bytes),
            format!(
                "auth = {}",
                quoted(match self.auth {
                    qube_pgwire::Auth::Trust => "trust",
                    qube_pgwire::Auth::Scram => "scram-sha-256",
                })
            ),
        ];
        for (k, v) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if let Some(p) = v {
                lines.push(format!("{k} = {}", quoted(&p.display().to_string())));
            }
        }
        lines.push(format!("require_tls = {}", self.require_tls));
        lines.push(format!(
            "shared_buffers = {}",
            quoted(&qube_sql::exec::spill::format_memory(self.shared_buffers))
        ));
        for (k, v) in &self.session_defaults {
            lines.push(format!("{k} = {}", quoted(v)));
        }
        lines.join("\n") + "\n"
    }
}
