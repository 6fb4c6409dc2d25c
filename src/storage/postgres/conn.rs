//! Connections: a `postgres::Client` with its prepared statements cached
//! (a query given as text costs a second round trip to prepare it), the
//! r2d2 manager that pools them, and the mapping of PostgreSQL's errors to
//! [`StoreError`].

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;

use crate::error::StoreError;

/// A client and the statements prepared on it, by their SQL text.
pub(crate) struct PgConn {
    pub client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    /// `client`, set up for vkv's statements: each is prepared once and run
    /// with its generic plan. By default PostgreSQL plans a prepared
    /// statement again at every execution when its generic plan looks
    /// costlier than the custom ones, which it does for every statement
    /// here that takes arrays (`unnest`): measured with `perf` during
    /// cached GETs, planning (`GetCachedPlan`) took 41% of the backend's
    /// CPU, running the statement 10% (docs/design.md). The generic plans
    /// of these statements are the index lookups wanted.
    pub fn open(mut client: Client) -> Result<Self, postgres::Error> {
        client.batch_execute("SET plan_cache_mode = force_generic_plan")?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    /// `sql`, prepared once per connection.
    pub fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query(&s, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params)
    }
}

/// The r2d2 manager of [`PgConn`]s: r2d2_postgres's, plus the statement
/// cache.
pub(crate) struct Manager(pub PostgresConnectionManager<super::tls::Connector>);

impl std::fmt::Debug for Manager {
    // The TLS connector has no `Debug`; the settings hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        self.0.connect().and_then(PgConn::open)
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
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
            _ => StoreError::Internal(text),
        }
    }
}
