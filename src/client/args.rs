//! The client commands' flags and help texts (clap), flattened into the
//! binary's subcommands by `src/cli.rs`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::exit::exit_codes;

/// The commands that talk to a running server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a key's value (a string as is, any other value as JSON).
    #[command(after_help = concat!(
        "Examples:
  vkv get config/mode                  # latest value: on
  vkv get config/mode --version 2      # version 2
  vkv get config/mode -o json          # {\"key\":...,\"value\":...,\"version\":...,\"timestamp\":...}
  VKV_ENDPOINTS=http://a:8080,http://b:8080 vkv get k
", exit_codes!()))]
    Get(GetArgs),
    /// Write a new version of a key.
    #[command(after_help = concat!(
        "VALUE is taken as JSON when it parses (42, true, null, {\"a\":1}, \"quoted\"), else as a
string (on, hello world); --string always takes it as a string. `-` reads it from
stdin (all of it, trailing newline included: use printf, not echo, for a string).

Prints the new version (`-o json`: the server's answer).

Examples:
  vkv put config/mode on                      # the string \"on\"
  vkv put config/limits '{\"rps\": 100}'        # a JSON object
  vkv put build/id 007 --string               # the string \"007\"
  vkv put config/mode off --if-version 3      # only if the latest is version 3
  vkv put lock/leader me --if-version 0       # only if the key has no version
  vkv put services/api/host-7 up --ttl 30s    # expires in 30 s unless written again
  vkv put blob - < value.json
", exit_codes!()))]
    Put(Box<PutArgs>),
    /// Delete a key (a tombstone version), or purge every version.
    #[command(after_help = concat!(
        "Examples:
  vkv del config/mode                  # a deletion marker; history is kept
  vkv del config/mode --if-version 4   # only if the latest is version 4
  vkv del config/mode --purge          # every version removed for good
", exit_codes!()))]
    Del(DelArgs),
    /// List a key's versions, newest first.
    #[command(after_help = concat!(
        "One line per version: VERSION, commit time (UTC), and the value's size or
`deleted`. `-o json`: one JSON object per line.

Examples:
  vkv history config/mode
  vkv history config/mode --limit 5 -o json
", exit_codes!()))]
    History(HistoryArgs),
    /// List the live keys under a prefix, in byte order.
    #[command(after_help = concat!(
        "One key per line; with --values, the key, a tab and its value as JSON. `-o json`:
one JSON object per line ({\"key\",\"version\",\"timestamp\"} and \"value\" with
--values). Pages through the whole prefix.

Examples:
  vkv ls                        # every key
  vkv ls config/                # keys starting with config/
  vkv ls config/ --values
", exit_codes!()))]
    Ls(LsArgs),
    /// Print one line per change of a key, or of the keys under a prefix,
    /// until interrupted.
    #[command(after_help = concat!(
        "With KEY: each change is one line: the version, a tab, and the value as JSON,
or `deleted`. Starts after the latest version (or after --after VERSION), and
prints every version written since, in order.

With --prefix P: the change feed (GET /changes) of the keys starting with P.
Each change is one line: the store's revision, the operation (create, update,
delete, expire, purge), the key, its version and, for create and update, the
value as JSON, separated by tabs. `-o json`: the feed's object for each change.
Starts now (or after --after REVISION; 0: from the oldest change kept). If the
feed no longer holds the changes after that revision (removed by retention or
a purge: 410), the watch ends with exit code 3 and names the oldest revision
to start after.

Either way, a dropped connection or a restarted server is retried, with
backoff, on every endpoint, and the watch resumes where it was: nothing
missed, nothing printed twice.

Examples:
  vkv watch config/mode
  vkv watch config/mode --after 0          # every version, from the first
  vkv watch config/mode --count 1          # wait for the next change, then exit
  vkv watch config/mode -o json | jq .value
  vkv watch --prefix app/                  # every change under app/ from now on
  vkv watch --prefix app/ --after 0        # every change kept, then new ones
  vkv watch --prefix '' -o json            # every change of every key
", exit_codes!()))]
    Watch(WatchArgs),
    /// Print one page of the change feed (GET /changes): what changed under
    /// a prefix after a revision.
    #[command(after_help = concat!(
        "One line per change, in the store's revision order: the revision, the operation
(create, update, delete, expire, purge), the key, its version and, for create
and update, the value as JSON, separated by tabs. The last line says where the
next page starts: `next_after<TAB>R`; run again with --after R for what came
since (nothing is printed twice, nothing skipped). `-o json`: the feed's object
for each change, one per line, then {\"revision\":CUR,\"next_after\":R}.

Without --after, only the revision now is printed (no change yet: a starting
point); --after 0 starts at the oldest change kept. If the changes after
--after are no longer kept (removed by retention or a purge: 410), it exits 3
and names the oldest revision to start after. There is no --follow: to follow
the feed as it changes, use `vkv watch --prefix P`.

Examples:
  vkv changes --prefix app/ --after 0           # the oldest changes kept under app/
  vkv changes --prefix app/ --after 42 --limit 10
  vkv changes --prefix app/ --after 42 -o json | jq -c 'select(.key)'
  after=$(vkv changes --prefix app/ | cut -f2)   # the revision now, to start after
", exit_codes!()))]
    Changes(ChangesArgs),
    /// Write several keys at once: all or none (POST /batch).
    #[command(after_help = concat!(
        "FILE (or `-`, stdin) holds the request body: {\"puts\": [{\"key\": K, \"value\": V,
\"if_version\": N}, ...]} (if_version optional). Prints one line per put: the key,
its new version and `create` or `update`.

Examples:
  echo '{\"puts\":[{\"key\":\"a\",\"value\":1},{\"key\":\"b\",\"value\":2}]}' | vkv batch -
  vkv batch changes.json -o json
", exit_codes!()))]
    Batch(BatchArgs),
    /// Download a consistent snapshot of the database (GET /backup).
    #[command(after_help = concat!(
        "The snapshot is a SQLite file, restored with `vkv restore`. It is written to
FILE.partial and renamed to FILE once whole; `-` writes to stdout. Needs an
admin token when auth is on.

Examples:
  vkv backup vkv-$(date +%F).db
  vkv backup - | gzip > vkv.db.gz
", exit_codes!()))]
    Backup(BackupArgs),
    /// Grant, keep alive, revoke and list leases (keys put with --lease
    /// expire with theirs).
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Hold a lock while COMMAND runs (or until interrupted).
    #[command(after_help = concat!(
        "Grants a lease (--ttl), takes the lock with a create-only put of key NAME with
that lease, waiting (a long poll on NAME) while another holds it, and keeps the
lease alive while it holds the lock. COMMAND runs with the fencing token in
VKV_LOCK_TOKEN (the lock put's revision: it increases from one holder to the
next); when it exits the lease is revoked (the lock freed) and vkv lock exits
with COMMAND's status (128 + N if signal N ended it). Without COMMAND, prints
the token and holds the lock until SIGINT or SIGTERM. A holder killed outright
loses the lock when its lease runs out (--ttl).

Examples:
  vkv lock locks/nightly -- ./nightly.sh
  vkv lock locks/nightly --ttl 30s -- sh -c 'echo token $VKV_LOCK_TOKEN'
  vkv lock locks/leader                 # prints the token; Ctrl-C releases
", exit_codes!()))]
    Lock(LockArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  vkv completion bash > /etc/bash_completion.d/vkv
  vkv completion zsh > \"${fpath[1]}/_vkv\"
  vkv completion fish > ~/.config/fish/completions/vkv.fish")]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How to reach the servers; every command that talks to one has these.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// Servers to talk to, comma-separated, in order. On a connection
    /// error or a 503 the next is tried, so a script survives one
    /// server's restart. A URL without a scheme is http.
    #[arg(
        long,
        env = "VKV_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080",
        value_name = "URL,..."
    )]
    pub endpoints: Vec<String>,
    /// CA certificates (PEM) to check https endpoints with; default
    /// SSL_CERT_FILE, else the system's CA bundle.
    #[arg(long, env = "VKV_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A file holding the bearer token (its first line). Without it, the
    /// token is VKV_TOKEN's value, if set.
    #[arg(long, env = "VKV_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// How long to wait for a connection and for each answer (e.g. 10s,
    /// 500ms).
    #[arg(long, env = "VKV_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub server_flags: ServerFlags,
}

/// The server's flags that clap would otherwise pass down to every
/// subcommand (they are global for `health`, `check`, `restore`): hidden
/// here, and refused with a hint. Their types are the server flags' own:
/// clap copies the server's defaults into them.
#[derive(Debug, Clone, Args)]
#[allow(dead_code)] // never read: they exist to be hidden and refused
pub struct ServerFlags {
    #[arg(long, hide = true, value_parser = server_flag::<String>)]
    bind: Option<String>,
    #[arg(long, hide = true, value_parser = server_flag::<PathBuf>)]
    db: Option<PathBuf>,
    #[arg(long, hide = true, value_parser = server_flag::<log::LevelFilter>)]
    log_level: Option<log::LevelFilter>,
}

fn server_flag<T>(_: &str) -> Result<T, String> {
    Err("a server flag; client commands take --endpoints".to_string())
}

/// `-o`: how to print answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people: values alone, one item per line.
    #[default]
    Text,
    /// The server's JSON answers (one object per line for lists).
    Json,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Read this version instead of the latest.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub version: Option<u64>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value: JSON if it parses, else a string; `-` reads stdin.
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Take VALUE as a string even if it parses as JSON.
    #[arg(long)]
    pub string: bool,
    /// Write only if the latest version is N (0: only if the key has no
    /// version); else exit 4 and write nothing.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    /// The key expires this long after the write unless written again
    /// (30s, 5m, 2h, 7days or plain seconds; 1s to 30days).
    #[arg(long, value_name = "DURATION", conflicts_with = "lease")]
    pub ttl: Option<String>,
    /// The key expires with lease ID (POST /leases): when it runs out or is
    /// revoked.
    #[arg(long, value_name = "ID")]
    pub lease: Option<u64>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key.
    pub key: String,
    /// Delete only if the latest version is N; else exit 4.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    /// Remove every version of the key for good (history included).
    #[arg(long)]
    pub purge: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The key.
    pub key: String,
    /// At most this many versions (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only keys starting with this (default: every key).
    #[arg(default_value = "")]
    pub prefix: String,
    /// Print each key's value too.
    #[arg(long)]
    pub values: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The key.
    #[arg(required_unless_present = "prefix")]
    pub key: Option<String>,
    /// Follow the changes of every key starting with PREFIX (the change
    /// feed) instead of one key.
    #[arg(long, value_name = "PREFIX", conflicts_with = "key")]
    pub prefix: Option<String>,
    /// With KEY: print the versions after this one (0: all of them);
    /// default: the latest version now. With --prefix: the changes after
    /// this revision of the store (0: every change kept); default: now.
    #[arg(long, value_name = "VERSION|REVISION")]
    pub after: Option<u64>,
    /// Exit after this many changes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// How long each long poll waits on the server before it is renewed.
    #[arg(long, default_value = "60s", value_parser = poll_duration)]
    pub poll: Duration,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// Only changes of keys starting with PREFIX (default: every key).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        hide_default_value = true
    )]
    pub prefix: String,
    /// The changes after this revision of the store (0: from the oldest
    /// kept; a previous page's next_after). Default: none, only the
    /// revision now.
    #[arg(long, value_name = "REVISION",
          value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub after: Option<u64>,
    /// At most about this many changes (1 to 1000; default 100). A page
    /// never ends inside a revision: a larger batch comes whole.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: Option<u64>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The JSON body, or `-` for stdin.
    pub file: PathBuf,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the snapshot, or `-` for stdout.
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connect: Connect,
}

/// A duration from 1 ms to a day.
fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 10s or 500ms)"))?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(24 * 3600) {
        return Err("must be from 1ms to 24h".into());
    }
    Ok(d)
}

/// A long poll's wait: whole seconds from 1 to 300 (the server's range).
fn poll_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 60s)"))?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
        return Err("must be from 1s to 300s".into());
    }
    Ok(Duration::from_secs(d.as_secs()))
}

/// `vkv lease ...`.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease; prints its id.
    #[command(after_help = concat!(
        "TTL: 30s, 5m, 2h or plain seconds, 1s to 30days. The lease runs out TTL after
the grant unless kept alive; keys put with --lease ID expire with it.

Examples:
  id=$(vkv lease grant 10s)
  vkv put services/api/host-7 up --lease \"$id\"
  vkv lease keepalive \"$id\" --every 3s &
", exit_codes!()))]
    Grant(LeaseGrantArgs),
    /// Keep a lease alive: it runs out its TTL from now.
    #[command(after_help = concat!(
        "Prints the lease's id, TTL and new deadline (tab-separated). With --every, keeps
it alive until interrupted, one line per keepalive; endpoints that do not answer
are retried with backoff. A lease that ran out or was revoked exits 3.

Examples:
  vkv lease keepalive 7
  vkv lease keepalive 7 --every 3s
", exit_codes!()))]
    Keepalive(LeaseKeepaliveArgs),
    /// Revoke a lease: its keys expire now.
    #[command(after_help = concat!(
        "Examples:
  vkv lease revoke 7
", exit_codes!()))]
    Revoke(LeaseIdArgs),
    /// Show a lease: its TTL, deadline, time left and keys.
    #[command(after_help = concat!(
        "Examples:
  vkv lease show 7
  vkv lease show 7 -o json
", exit_codes!()))]
    Show(LeaseIdArgs),
    /// List the live leases: id, TTL and deadline, one per line.
    #[command(after_help = concat!(
        "Examples:
  vkv lease ls
", exit_codes!()))]
    Ls(LeaseLsArgs),
}

#[derive(Debug, Args)]
pub struct LeaseGrantArgs {
    /// How long the lease lives unless kept alive (10s, 5m, 2h, ...).
    pub ttl: String,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct LeaseKeepaliveArgs {
    /// The lease.
    pub id: u64,
    /// Keep it alive every DURATION until interrupted (e.g. a third of its
    /// TTL).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub every: Option<Duration>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct LeaseIdArgs {
    /// The lease.
    pub id: u64,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct LeaseLsArgs {
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lock: a key, held while the lock is.
    pub name: String,
    /// The lease's TTL: how long after a holder dies the lock frees itself.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub ttl: String,
    /// The command to run while holding the lock.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub connect: Connect,
}
