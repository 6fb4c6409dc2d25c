//! Command-line flags (each with a `VKV_*` environment variable) and the
//! subcommands: `health`, `restore`, `check`, `copy`, and the client's
//! (`src/client/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use log::LevelFilter;

use vkv::server::AuthTokens;
use vkv::server::ConnLimits;
use vkv::server::ServerConfig;
use vkv::{StoreConfig, SyncMode};

/// vkv: a versioned key-value store served over HTTP/JSON.
#[derive(Debug, Parser)]
#[command(name = "vkv", version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port); also the address
    /// `health` probes. Like --db and --log-level, it may come before or
    /// after the subcommand.
    #[arg(
        long,
        env = "VKV_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: String,
    // The help says what this build takes: a PostgreSQL URL only with the
    // `postgres` feature.
    #[cfg_attr(
        not(feature = "postgres"),
        arg(help = "SQLite database file (created if missing); also the file \
                    that `restore` replaces and `check` checks")
    )]
    #[cfg_attr(
        feature = "postgres",
        arg(help = "SQLite database file (created if missing), or a PostgreSQL \
                    database as a postgres:// or postgresql:// URL (its vkv tables \
                    created if missing); also the store that `check` checks and \
                    the SQLite file that `restore` replaces")
    )]
    #[arg(long, env = "VKV_DB", default_value = "kv_store.db", global = true)]
    pub db: PathBuf,
    /// Keys whose latest version the LRU cache holds (0 disables it).
    #[arg(long, env = "VKV_CACHE_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=MAX_CACHE_KEYS))]
    pub cache_size: u64,
    /// Bytes the cached values and keys may take (e.g. 32MiB, 1G, 500000;
    /// 0 disables the cache); a value larger than it is not cached.
    #[arg(long, env = "VKV_CACHE_BYTES", default_value = "32MiB",
          value_parser = |s: &str| size(s, MAX_CACHE_BYTES))]
    pub cache_bytes: u64,
    /// Worker threads running requests.
    #[arg(long, env = "VKV_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// I/O threads serving connections, each on its own listening socket
    /// of the one port.
    #[arg(long, env = "VKV_IO_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub io_threads: u16,
    /// Requests that may wait for a worker; beyond it, 503 at once.
    #[arg(long, env = "VKV_QUEUE_LEN", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_len: u32,
    /// Largest request body accepted, in bytes (e.g. 1MiB; 413 beyond).
    #[arg(long, env = "VKV_MAX_BODY_BYTES", default_value = "1MiB",
          value_parser = |s: &str| size(s, MAX_BODY_BYTES).and_then(nonzero))]
    pub max_body_bytes: u64,
    /// Bytes that answers not yet taken by their clients may hold in all
    /// (e.g. 64MiB); beyond it the connections whose clients have not read
    /// for the longest are closed. A cached value sent to many clients
    /// counts once.
    #[arg(long, env = "VKV_MAX_OUTPUT_BYTES", default_value = "64MiB",
          value_parser = |s: &str| size(s, MAX_OUTPUT_BYTES).and_then(nonzero))]
    pub max_output_bytes: u64,
    /// Commit durability: `full` survives power loss, `normal` (WAL) only
    /// process crashes.
    #[arg(long, env = "VKV_SYNC", value_enum, default_value = "full")]
    pub sync: Sync,
    /// Most open connections (no thread each: one I/O thread serves them
    /// all); at the limit the longest idle one is closed to make room, else
    /// 503 and close. Needs as many open files (raised at start).
    #[arg(long, env = "VKV_MAX_CONNECTIONS", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Close a keep-alive connection idle this long (e.g. 30s, 500ms).
    #[arg(long, env = "VKV_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// A request must arrive whole within this time of its first byte.
    #[arg(long, env = "VKV_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub read_timeout: Duration,
    /// Versions kept per key; a write past it removes the oldest (0: all).
    #[arg(long, env = "VKV_MAX_VERSIONS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub max_versions: u64,
    /// Long-poll requests (GET ?wait_after=) that may wait at once; 503 beyond.
    #[arg(long, env = "VKV_MAX_WATCHERS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_watchers: u32,
    /// The most puts in one POST /batch.
    #[arg(long, env = "VKV_MAX_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch: u32,
    /// PostgreSQL: a replica's read lease (e.g. 1s, 500ms). While it holds
    /// one, it answers cached latest versions without asking the database;
    /// a write on another replica waits until this one dropped the key, or
    /// for this long at most if it vanished (keep it well below
    /// --read-timeout). 0: no leases, every latest read asks the database.
    /// Unused with SQLite.
    #[arg(long, env = "VKV_READ_LEASE", default_value = "1s", value_parser = lease)]
    pub read_lease: Duration,
    /// The longest a read waits on the database (PostgreSQL: a slow
    /// statement, or a lock such as a table an operator locked); past it
    /// the read answers 503 with Retry-After, and /health says 503 within a
    /// second. Keep it below --read-timeout.
    #[arg(long, env = "VKV_QUERY_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub query_timeout: Duration,
    /// Log level: off, error, warn, info (one line per request), debug.
    #[arg(long, env = "VKV_LOG_LEVEL", default_value = "info", value_parser = level, global = true)]
    pub log_level: LevelFilter,
    /// Require bearer tokens: FILE lists one `TOKEN SCOPE` per line (scope
    /// read, write or admin; write includes read, admin both; `#` starts a
    /// comment). Every endpoint but /health, /openapi.json and /docs then needs
    /// `Authorization: Bearer TOKEN`: reads need read, put/delete/batch
    /// write, /backup admin. Without it, every endpoint is open.
    #[arg(long, env = "VKV_AUTH_TOKENS", value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,
    /// Host names (comma-separated) answered besides loopback ones. When
    /// listening on a loopback address only `Host` values naming loopback
    /// are answered (a defence against DNS rebinding); set this to answer
    /// other names, or `*` for any. On other addresses: when set, only these
    /// (and loopback) names are answered.
    #[arg(
        long,
        env = "VKV_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    pub allowed_hosts: Vec<String>,
    /// Origins (comma-separated `scheme://host[:port]`) whose cross-origin
    /// writes are accepted although their `Origin` does not match the
    /// request's `Host`: the public origin of a reverse proxy that rewrites
    /// `Host`. Without it a write from a page of another origin is refused
    /// (403).
    #[arg(
        long,
        env = "VKV_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGINS",
        value_parser = write_origin
    )]
    pub allowed_origins: Vec<String>,
    /// CORS: origins (comma-separated `scheme://host[:port]`, or `*` for
    /// any) of web apps allowed to call vkv from a browser. Their `OPTIONS`
    /// preflights are answered, their answers carry
    /// `Access-Control-Allow-Origin`, and their writes are accepted. None by
    /// default; cookies are never used (no credentials): pages send tokens
    /// in `Authorization`.
    #[arg(
        long,
        env = "VKV_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGINS",
        value_parser = vkv::server::parse_origin
    )]
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs
    /// --tls-key and a vkv built with `--features tls`.
    #[arg(long, env = "VKV_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "VKV_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one, vkv serves.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe a running server's /health at --bind (container health checks).
    ///
    /// For images without curl: prints `healthy` and exits 0, or
    /// names the address and the reason and exits 1. Over TLS when
    /// --tls-cert is set (the server's own certificate is then the one
    /// expected), or with --tls or --cacert.
    Health {
        /// Probe over TLS (checking the certificate against --cacert, else
        /// SSL_CERT_FILE or the system's CA bundle).
        #[arg(long)]
        tls: bool,
        /// CA certificates (PEM) to check the server's certificate with
        /// (its chain; not its name, since the probe dials an address).
        #[arg(long, env = "VKV_CACERT", value_name = "FILE")]
        cacert: Option<PathBuf>,
    },
    /// Replace the database --db with SNAPSHOT (a file from GET /backup),
    /// after verifying it like `check`. Refuses while a vkv serves --db,
    /// and when --db exists unless --force. Atomic: --db is either the old
    /// or the new database, never a mix.
    Restore {
        /// The snapshot file to restore.
        snapshot: PathBuf,
        /// Replace --db even if it exists (its old contents are lost).
        #[arg(long, env = "VKV_RESTORE_FORCE")]
        force: bool,
    },
    /// Check the database --db (safe while a server runs on it): SQLite's
    /// integrity_check, dense versions per key, the keys table and the
    /// counters against the versions. Exit 0 if all is well, 1 otherwise.
    Check,
    /// Copy a whole store from --from to --to (each a SQLite file or a
    /// postgres:// URL), every version with its timestamp and tombstones,
    /// in one transaction that commits only if the destination then holds
    /// exactly what was read.
    /// The source may be in use by running servers; the destination may
    /// not (a SQLite file is refused while served, a PostgreSQL database
    /// while replicas serve it, naming them).
    Copy {
        /// The store to read.
        #[arg(long, value_name = "DB")]
        from: PathBuf,
        /// The store to write (created if missing); refused if it holds
        /// keys, unless --force.
        #[arg(long, value_name = "DB")]
        to: PathBuf,
        /// Replace the contents of a non-empty --to.
        #[arg(long)]
        force: bool,
    },
    #[command(flatten)]
    Client(crate::client::Command),
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Sync {
    /// synchronous=FULL.
    Full,
    /// synchronous=NORMAL.
    Normal,
}

fn level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| "expected off, error, warn, info, debug or trace".to_string())
}

/// The longest `--idle-timeout` / `--read-timeout`: a day. Far beyond any
/// use, and far from where adding it to a clock could overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most keys `--cache-size` may ask for.
const MAX_CACHE_KEYS: u64 = 100_000_000;
/// The most bytes `--cache-bytes` may ask for (64 GiB).
const MAX_CACHE_BYTES: u64 = 64 << 30;
/// The largest `--max-body-bytes` (1 GiB): a body is held in memory whole.
const MAX_BODY_BYTES: u64 = 1 << 30;
/// The largest `--max-output-bytes` (64 GiB).
const MAX_OUTPUT_BYTES: u64 = 64 << 30;

fn duration(s: &str) -> Result<Duration, String> {
    let d = vkv::duration::parse(s).map_err(|e| format!("{e} (try 30s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    if d > MAX_DURATION {
        return Err(format!(
            "{} is more than the maximum of {}",
            humantime::format_duration(d),
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// A read lease: 0 (none), or from 100ms to 60s.
fn lease(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 1s, 500ms or 0)"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err("must be 0 (no leases) or from 100ms to 60s".into());
    }
    Ok(d)
}

/// A byte count: digits with an optional unit, `K`/`KiB` (1024), `M`/`MiB`,
/// `G`/`GiB` (case-insensitive, `B` alone or none: bytes), at most `max`.
fn size(s: &str, max: u64) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 32MiB, 512K or 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit (use K, M or G, powers of 1024)"
            ));
        }
    };
    number
        .checked_mul(1 << shift)
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("{s} is more than the maximum of {max} bytes"))
}

/// An origin of --allowed-origins: one origin, not `*` (that would accept
/// every site's writes; --cors-origins '*' says so on purpose).
fn write_origin(s: &str) -> Result<String, String> {
    match vkv::server::parse_origin(s)? {
        any if any == "*" => Err(
            "'*' would accept writes from every site: list origins, or use --cors-origins '*'"
                .to_string(),
        ),
        origin => Ok(origin),
    }
}

fn nonzero(n: u64) -> Result<u64, String> {
    if n == 0 {
        Err("must be above zero".into())
    } else {
        Ok(n)
    }
}

impl Cli {
    /// The store settings the flags describe.
    pub fn store_config(&self) -> StoreConfig {
        let mut c = StoreConfig::new(&self.db);
        // Both within usize: range-checked above.
        c.cache_size = usize::try_from(self.cache_size).unwrap_or(usize::MAX);
        c.cache_bytes = usize::try_from(self.cache_bytes).unwrap_or(usize::MAX);
        c.sync = match self.sync {
            Sync::Full => SyncMode::Full,
            Sync::Normal => SyncMode::Normal,
        };
        c.read_connections = u32::from(self.workers);
        c.max_versions = self.max_versions;
        c.max_watchers = self.max_watchers as usize;
        // No write waits for its answer longer than a request may take to
        // arrive.
        c.commit_timeout = Some(self.read_timeout);
        c.read_lease = self.read_lease;
        c.query_timeout = self.query_timeout;
        c
    }

    /// The HTTP settings the flags describe.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            bind: self.bind.clone(),
            workers: usize::from(self.workers),
            io_threads: usize::from(self.io_threads),
            queue_len: self.queue_len as usize,
            limits: ConnLimits {
                max_connections: self.max_connections as usize,
                idle_timeout: self.idle_timeout,
                read_timeout: self.read_timeout,
                max_body_bytes: self.max_body_bytes as usize,
                max_output_bytes: usize::try_from(self.max_output_bytes).unwrap_or(usize::MAX),
                ..ConnLimits::default()
            },
            max_batch_puts: self.max_batch as usize,
            auth: None,
            allowed_hosts: self.allowed_hosts.clone(),
            allowed_origins: self.allowed_origins.clone(),
            cors_origins: self.cors_origins.clone(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The HTTP settings plus what comes from files: the tokens of
    /// --auth-tokens and the certificate of --tls-cert/--tls-key.
    pub fn load_server_config(&self) -> Result<ServerConfig, Box<dyn std::error::Error>> {
        let mut config = self.server_config();
        if let Some(path) = &self.auth_tokens {
            config.auth = Some(Arc::new(AuthTokens::load(path)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls_config(&mut config, cert, key)?;
        }
        Ok(config)
    }
}

#[cfg(feature = "tls")]
fn tls_config(
    config: &mut ServerConfig,
    cert: &Path,
    key: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    config.tls = Some(vkv::server::load_tls(cert, key)?);
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn tls_config(
    _: &mut ServerConfig,
    cert: &Path,
    _: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    Err(format!(
        "--tls-cert {}: this vkv was built without TLS support; rebuild with `cargo build --features tls`",
        cert.display()
    )
    .into())
}
