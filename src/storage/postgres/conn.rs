//! Connections: a [`Client`] with its prepared statements cached (a query
//! given as text costs a second round trip to prepare it), the r2d2 manager
//! that pools them, and the mapping of PostgreSQL's errors to
//! [`StoreError`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Row, SimpleQueryMessage, Statement};

use super::client::{Answer, Client, ConnectError, Step};
use super::slots::{NoSlot, Slots};
use super::target::Target;
use crate::error::StoreError;

/// What a connection is for. Each is named in `pg_stat_activity`
/// (`application_name`) and gets the per-connection bounds of its job, so that no
/// wait on the database is without end:
/// - every connection asks the server to probe its peer (TCP keepalives on
///   the server's side too: a replica partitioned away loses its sessions,
///   and their locks, within seconds, not the kernel's two hours);
/// - a read gives up after the query timeout (`statement_timeout` and
///   `lock_timeout`: a table locked by an operator answers `503`, not a
///   hang);
/// - the writer's transaction never sits idle between its round trips for
///   long (`idle_in_transaction_session_timeout`): a replica frozen (a VM
///   pause, `SIGSTOP`) with its transaction open loses it, and with it the
///   head rows and the lease lock it held, instead of stopping every
///   replica's writes for as long as it is frozen.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// The writer thread's connection.
    Writer,
    /// A pooled read connection, with the query timeout.
    Read(Duration),
    /// The `LISTEN` thread's connection.
    Listen,
}

/// The longest the writer's transaction may wait for the writer between
/// two round trips. Its round trips follow each other at once (decisions
/// are made in memory), so only a frozen or cut-off replica reaches it.
const WRITER_IDLE_LIMIT: Duration = Duration::from_millis(500);

impl Role {
    /// The statements that set a new connection up for this role.
    pub fn setup(self) -> String {
        let (name, bounds) = match self {
            Role::Writer => (
                "writer",
                format!(
                    "SET idle_in_transaction_session_timeout = {}",
                    WRITER_IDLE_LIMIT.as_millis()
                ),
            ),
            Role::Read(limit) => (
                "read",
                format!(
                    "SET statement_timeout = {ms}; SET lock_timeout = {ms}",
                    ms = limit.as_millis()
                ),
            ),
            Role::Listen => ("listen", String::new()),
        };
        // The URL's application_name (default `vkv`), suffixed with the
        // role: `vkv-writer`, `vkv-read`, `vkv-listen`.
        format!(
            "SELECT set_config('application_name',
                 current_setting('application_name') || '-{name}', false);
             SET plan_cache_mode = force_generic_plan;
             SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1;
             SET tcp_keepalives_count = 3; {bounds}"
        )
    }
}

/// One statement of [`PgConn::pipeline`].
pub(crate) enum Piped<'a> {
    /// Statements without parameters, as one simple query.
    Simple(&'a str),
    /// One of vkv's statements, and its parameters.
    Query(&'static str, &'a [&'a (dyn ToSql + Sync)]),
}

/// A client and the statements prepared on it, by their SQL text.
pub(crate) struct PgConn {
    pub client: Client,
    statements: HashMap<&'static str, Statement>,
    /// A statement failed because the connection did (see
    /// [`is_connection_error`]): the pool must not hand it out again.
    broken: bool,
    /// The connection's query timeout (a read connection's), which
    /// [`PgConn::within`] lowers for a while.
    timeout: Option<Duration>,
}

impl PgConn {
    /// `client`, set up for `role` (see [`Role`]) and for vkv's
    /// statements: each is prepared once and run with its generic plan. By
    /// default PostgreSQL plans a prepared statement again at every
    /// execution when its generic plan looks costlier than the custom ones,
    /// which it does for every statement here that takes arrays (`unnest`):
    /// measured with `perf` during cached GETs, planning (`GetCachedPlan`)
    /// took 41% of the backend's CPU, running the statement 10% (docs/design.md). The
    /// generic plans of these statements are the index lookups wanted.
    pub fn open(mut client: Client, role: Role) -> Result<Self, postgres::Error> {
        client.batch_execute(&role.setup())?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            broken: false,
            timeout: match role {
                Role::Read(limit) => Some(limit),
                Role::Writer | Role::Listen => None,
            },
        })
    }

    /// `f`, its statements bounded by `limit` (`statement_timeout` and
    /// `lock_timeout`) when that is below the connection's query timeout (zero:
    /// no bound, as for `--query-timeout 0`): a
    /// read that already waited for its turn gets what is left of its
    /// time, not the whole timeout again. Two round trips more, so only
    /// when the bound changes; if the connection's bound cannot be set back,
    /// the connection is not used again.
    pub fn within<T>(
        &mut self,
        limit: Duration,
        f: impl FnOnce(&mut PgConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let session = self.timeout.unwrap_or(Duration::ZERO);
        if limit.is_zero() || (!session.is_zero() && limit >= session) {
            return f(self);
        }
        let ms = |d: Duration| d.as_millis().max(1);
        let set = |ms: u128| format!("SET statement_timeout = {ms}; SET lock_timeout = {ms}");
        self.simple(&set(ms(limit)))?;
        let result = f(self);
        let restore = if session.is_zero() {
            "RESET statement_timeout; RESET lock_timeout".to_string()
        } else {
            set(ms(session))
        };
        if self.simple(&restore).is_err() {
            self.broken = true;
        }
        result
    }

    /// `sql`, prepared once per connection.
    pub fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.noted(|c| c.prepare(sql))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.noted(|c| c.query(&s, params))
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.noted(|c| c.query_opt(&s, params))
    }

    /// Sends `steps` together and answers each, in order (see
    /// [`Client::pipeline`]); their statements are prepared first (once per
    /// connection). Fails as a whole only if a statement could not be
    /// prepared, before anything was sent.
    pub fn pipeline(
        &mut self,
        steps: &[Piped<'_>],
    ) -> Result<Vec<Result<Answer, postgres::Error>>, postgres::Error> {
        let mut statements = Vec::with_capacity(steps.len());
        for step in steps {
            if let Piped::Query(sql, _) = step {
                statements.push(self.statement(sql)?);
            }
        }
        let mut prepared = statements.iter();
        let sent: Vec<Step<'_>> = steps
            .iter()
            .filter_map(|step| match step {
                Piped::Simple(sql) => Some(Step::Simple(sql)),
                Piped::Query(_, params) => prepared.next().map(|s| Step::Query(s, params)),
            })
            .collect();
        let answers = self.client.pipeline(&sent);
        for answer in &answers {
            if let Err(e) = answer {
                self.broken |= is_connection_error(e);
            }
        }
        Ok(answers)
    }

    /// `sql` (several statements, no parameters) as one simple query. An
    /// explicit transaction it began is rolled back if it failed.
    pub fn simple(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
        let result = self.noted(|c| c.simple_query(sql));
        if result.is_err() && !self.is_broken() {
            let _ = self.client.batch_execute("ROLLBACK");
        }
        result
    }

    /// `f` on the client, noting a failure of the connection itself.
    fn noted<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let result = f(&mut self.client);
        if let Err(e) = &result {
            self.broken |= is_connection_error(e);
        }
        result
    }

    /// Whether the connection is known to be unusable.
    pub fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }
}

/// `f` on a connection of `pool`; if the connection itself failed (one the
/// server ended while it sat in the pool: a restart, a failover,
/// `pg_terminate_backend`), again on the next one, so that a client is not
/// answered `503` for a connection that was dead before its request came.
/// A connection that failed is not returned to the pool. When the server
/// ended one idle connection it usually ended them all: at most one try
/// per connection the pool can hold, then one on a connection opened anew.
pub(crate) fn with_pooled<T>(
    pool: &r2d2::Pool<Manager>,
    f: impl FnMut(&mut PgConn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    with_pooled_until(pool, None, f)
}

/// [`with_pooled`], each wait for a connection ending by `deadline` if
/// given, or after the pool's own wait if that is sooner (then a pool that
/// has none free by then is `Unavailable`).
pub(crate) fn with_pooled_until<T>(
    pool: &r2d2::Pool<Manager>,
    deadline: Option<Instant>,
    mut f: impl FnMut(&mut PgConn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tries = pool.max_size().saturating_add(1);
    let mut tried = 0;
    loop {
        tried += 1;
        let mut conn = match deadline {
            None => pool.get()?,
            Some(deadline) => {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .min(pool.connection_timeout())
                    .max(Duration::from_millis(1));
                pool.get_timeout(left).map_err(|e| {
                    StoreError::Unavailable(format!("no connection to PostgreSQL in time: {e}"))
                })?
            }
        };
        match f(&mut conn) {
            Err(_) if conn.is_broken() && tried < tries => {}
            done => return done,
        }
    }
}

/// The r2d2 manager of the read pool's [`PgConn`]s, with the read role's
/// session bounds.
pub(crate) struct Manager {
    pub target: Target,
    /// The query timeout of reads.
    pub query_timeout: Duration,
    /// While it says to yield (a writer or listener waits for a connection
    /// slot, here or on another replica), each connection given back is
    /// closed and none is opened: reads can wait, writes must not starve.
    /// After the pool found no free slot, one connection given back is
    /// closed.
    pub slots: Arc<Slots>,
}

impl std::fmt::Debug for Manager {
    // The TLS connector has no `Debug`; the settings hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

/// Why the read pool opened no connection.
#[derive(Debug)]
pub(crate) enum PoolError {
    Pg(ConnectError),
    /// Connection slots are yielded to a writer or a listener.
    Yielding,
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Pg(e) => write!(f, "{e}"),
            PoolError::Yielding => {
                f.write_str("connection slots are left to a writer that has none")
            }
        }
    }
}

impl std::error::Error for PoolError {}

/// How the read pool reports connections it failed to open (r2d2 logs
/// them as errors by default): a yield is the pool working as meant.
#[derive(Debug)]
pub(crate) struct PoolErrors;

impl r2d2::HandleError<PoolError> for PoolErrors {
    fn handle_error(&self, e: PoolError) {
        match e {
            PoolError::Yielding => log::debug!("PostgreSQL read pool: {e}"),
            PoolError::Pg(_) => log::warn!("PostgreSQL read pool cannot connect: {e}"),
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = PoolError;

    fn connect(&self) -> Result<PgConn, PoolError> {
        if self.slots.yielding() {
            return Err(PoolError::Yielding);
        }
        let client = self.target.open().map_err(|e| {
            if e.no_slot() {
                self.slots.pool_found_none();
            }
            PoolError::Pg(e)
        })?;
        PgConn::open(client, Role::Read(self.query_timeout)).map_err(|e| PoolError::Pg(e.into()))
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), PoolError> {
        conn.client
            .batch_execute("")
            .map_err(|e| PoolError::Pg(e.into()))
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.is_broken() || self.slots.close_returned()
    }
}

/// Whether `e` says the connection itself failed (lost, or ended by the
/// server: a restart, `pg_terminate_backend`, a failover), not the query:
/// the same query on a new connection may well succeed.
pub(crate) fn is_connection_error(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => {
            let code = c.code();
            code.starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::IDLE_SESSION_TIMEOUT
                || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        }
    }
}

/// Whether `e` is worth retrying the whole transaction for: a
/// serialization failure or a deadlock the server broke.
pub(crate) fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection (I/O, closed, timeout).
            return StoreError::Unavailable(format!("PostgreSQL: {e}"));
        };
        let class = &code.code()[..2];
        let text = match e.as_db_error() {
            Some(db) => format!("PostgreSQL: {} ({})", db.message(), code.code()),
            None => format!("PostgreSQL: {e}"),
        };
        match class {
            // insufficient resources: disk full, out of memory, too many
            // connections.
            "53" if *code == SqlState::DISK_FULL => StoreError::StorageFull(text),
            // connection exceptions, insufficient resources, operator
            // intervention (shutdown, crash recovery), system errors, a
            // read-only transaction (a standby after a failover).
            "08" | "53" | "57" | "58" | "XX" => StoreError::Unavailable(text),
            _ if *code == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Unavailable(text),
            // A deadlock the server broke, or a serialization failure: the
            // statement was the victim of another's locks, not wrong (a
            // read under an operator's `LOCK TABLE a, b`); try again.
            "40" => StoreError::Unavailable(text),
            // A lock not granted within `lock_timeout` (a table locked by
            // an operator), or a transaction ended for sitting idle (this
            // replica was frozen): try again later.
            _ if *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT =>
            {
                StoreError::Unavailable(text)
            }
            _ => StoreError::Internal(text),
        }
    }
}
