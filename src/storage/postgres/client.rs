//! A blocking PostgreSQL client that can pipeline: tokio-postgres driven on
//! a private current-thread runtime inside each call (as the `postgres`
//! crate does), plus [`Client::pipeline`], which sends several statements
//! before it reads the first answer. The writer uses it so that a write
//! statement and the `COMMIT` behind it reach the server together: a lock
//! the statement takes is then released by the server itself, without
//! waiting for this process to be scheduled again (see `apply.rs`).

use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Error, Row, SimpleQueryMessage, Statement, ToStatement};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::tls::Connector;

/// How long dropping a client waits for its connection to say goodbye
/// (`Terminate`) to a server that does not read any more.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A connection to PostgreSQL, used from one thread at a time.
pub(crate) struct Client {
    /// Dropped first (fields drop in order), which tells the connection
    /// task to say goodbye; then `driver` waits for it.
    client: tokio_postgres::Client,
    driver: Driver,
}

/// The runtime, and the task on it that reads and writes the socket (it
/// runs while a call blocks on the runtime).
struct Driver {
    runtime: Runtime,
    connection: Option<JoinHandle<()>>,
}

/// Why no connection was opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The server refused, or could not be reached.
    Pg(Error),
    /// The private runtime could not be built (no file descriptor left).
    Runtime(std::io::Error),
}

impl From<Error> for ConnectError {
    fn from(e: Error) -> Self {
        ConnectError::Pg(e)
    }
}

/// One statement of a [`Client::pipeline`].
pub(crate) enum Step<'a> {
    /// Statements without parameters, as one simple query.
    Simple(&'a str),
    /// A prepared statement and its parameters.
    Query(&'a Statement, &'a [&'a (dyn ToSql + Sync)]),
}

/// The answer to one [`Step`].
pub(crate) enum Answer {
    Simple(Vec<SimpleQueryMessage>),
    Rows(Vec<Row>),
}

impl Client {
    /// A new connection to the server `config` names.
    pub fn connect(
        config: &tokio_postgres::Config,
        tls: Connector,
    ) -> Result<Client, ConnectError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let (client, connection) = runtime.block_on(config.connect(tls))?;
        // Notices are logged by the connection itself; a `NOTIFY` to this
        // connection is dropped (no connection of this kind listens).
        let connection = runtime.spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(Client {
            client,
            driver: Driver {
                runtime,
                connection: Some(connection),
            },
        })
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.driver.runtime.block_on(self.client.batch_execute(sql))
    }

    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.driver.runtime.block_on(self.client.simple_query(sql))
    }

    pub fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        self.driver.runtime.block_on(self.client.prepare(sql))
    }

    pub fn query<T: ?Sized + ToStatement>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.driver
            .runtime
            .block_on(self.client.query(statement, params))
    }

    pub fn query_opt<T: ?Sized + ToStatement>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        self.driver
            .runtime
            .block_on(self.client.query_opt(statement, params))
    }

    /// Sends every step before reading any answer, and answers each in
    /// order. The server runs them one after the other as they arrive;
    /// after a step that failed, the others still run (each step is its
    /// own message sequence), so inside a transaction they fail too, as
    /// the transaction is aborted. A connection that fails fails every
    /// step left.
    ///
    /// The steps go out in one write while they fit the connection's
    /// 8 KiB write buffer; a larger pipeline takes several, and a process
    /// stopped between two of them leaves the server with the first part
    /// only (for the writer, a transaction idle with what ran so far, ended
    /// by its idle limit).
    pub fn pipeline(&mut self, steps: &[Step<'_>]) -> Vec<Result<Answer, Error>> {
        let c = &self.client;
        let calls = steps.iter().map(|step| async move {
            match step {
                Step::Simple(sql) => c.simple_query(sql).await.map(Answer::Simple),
                Step::Query(statement, params) => {
                    c.query(*statement, params).await.map(Answer::Rows)
                }
            }
        });
        // `join_all` polls each call once, in order, before waiting: each
        // sends its messages at its first poll, and the connection writes
        // them out together.
        self.driver
            .runtime
            .block_on(futures_util::future::join_all(calls))
    }

    /// Whether the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl Drop for Driver {
    /// Runs after the client was dropped: the connection task sends
    /// `Terminate` and ends, waited for boundedly.
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, connection).await });
        }
    }
}
