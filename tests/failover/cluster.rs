//! A real PostgreSQL primary with a real synchronous streaming standby, in
//! a temporary directory, for the failover test: `initdb`, then
//! `pg_basebackup -R` for the standby, `synchronous_standby_names = '*'` on
//! the primary (a commit returns only once the standby has flushed it), a
//! crash of the primary (SIGKILL to the postmaster and every backend) and
//! `pg_ctl promote` on the standby, as Patroni or pg_auto_failover would.
//! The server commands themselves are `tests/support/pg.rs`; both servers
//! are stopped (immediate mode) and the directory removed on drop.

use std::time::Duration;

use crate::common::{free_port, poll_until};
use crate::pg::{Node, Tools, append, path};

/// A primary and its synchronous standby.
pub struct Cluster {
    tools: Tools,
    pub password: String,
    pub primary: Node,
    pub standby: Node,
}

impl Cluster {
    /// Starts a primary, takes a base backup of it, starts the standby
    /// streaming from it, and waits until the primary reports the standby
    /// as synchronous.
    pub fn start() -> Cluster {
        let tools = Tools::new("vkv-failover-");
        let password = format!("pw{:x}", std::process::id() as u64 * 7919 + 17);
        let cluster = Cluster {
            password,
            primary: Node {
                data: tools.dir().join("primary"),
                port: free_port(),
            },
            standby: Node {
                data: tools.dir().join("standby"),
                port: free_port(),
            },
            tools,
        };
        cluster.tools.initdb(
            &cluster.primary,
            &cluster.password,
            "synchronous_standby_names = '*'\nmax_connections = 100\n",
        );
        cluster.tools.start(&cluster.primary);
        // The standby: a base backup over the primary's Unix socket
        // (`local replication all trust`), with -R writing its
        // primary_conninfo and standby.signal.
        cluster.tools.run(
            "pg_basebackup",
            &[
                "-D",
                path(&cluster.standby.data),
                "-h",
                &cluster.tools.socket_dir(),
                "-p",
                &cluster.primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        // Once promoted, the standby is a primary without a standby of its
        // own: it must not wait for one (Patroni and pg_auto_failover drop
        // the synchronous requirement when the last standby is gone;
        // otherwise every commit on the new primary would hang).
        append(
            &cluster.standby.data.join("postgresql.conf"),
            "synchronous_standby_names = ''\n",
        );
        cluster.tools.start(&cluster.standby);
        let ok = poll_until(Duration::from_secs(60), || {
            cluster
                .psql(
                    true,
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                )
                .is_some_and(|n| n == "1")
        });
        assert!(ok, "the standby never became synchronous");
        cluster
    }

    /// The libpq URL of the database `db` naming both servers, primary
    /// first, with `target_session_attrs=read-write` so that a client
    /// follows whichever one takes writes.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&connect_timeout=2",
            self.password, self.primary.port, self.standby.port
        )
    }

    /// Creates database `db` on the primary (the standby replicates it).
    pub fn create_db(&self, db: &str) {
        self.psql(true, &format!("CREATE DATABASE {db}"))
            .unwrap_or_else(|| panic!("CREATE DATABASE {db} failed"));
    }

    fn node(&self, primary: bool) -> &Node {
        if primary {
            &self.primary
        } else {
            &self.standby
        }
    }

    /// Runs one SQL statement on a node over its Unix socket; its single
    /// output line, or `None` if psql failed.
    pub fn psql(&self, primary: bool, sql: &str) -> Option<String> {
        self.tools.psql(self.node(primary), "postgres", sql)
    }

    /// Crashes the primary: SIGKILL to the postmaster and to each of its
    /// children, so nothing of it answers any more (as when its host
    /// dies). Returns once its port no longer accepts connections.
    pub fn kill_primary(&self) {
        self.tools.kill(&self.primary);
    }

    /// Crashes the standby the same way. The primary still lists it in
    /// `synchronous_standby_names`: its commits wait until it is back.
    pub fn kill_standby(&self) {
        self.tools.kill(&self.standby);
    }

    /// Starts the (killed) standby again; it recovers and streams from the
    /// primary. Returns once the primary reports it as synchronous.
    pub fn restart_standby(&self) {
        self.tools.start(&self.standby);
        let ok = poll_until(Duration::from_secs(60), || {
            self.psql(
                true,
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            )
            .is_some_and(|n| n == "1")
        });
        assert!(ok, "the restarted standby never became synchronous");
    }

    /// Promotes the standby to primary (`pg_ctl promote`, waiting until it
    /// takes writes).
    pub fn promote_standby(&self) {
        self.tools.run(
            "pg_ctl",
            &["-D", path(&self.standby.data), "-w", "-t", "60", "promote"],
        );
        let ok = poll_until(Duration::from_secs(60), || {
            self.psql(false, "SELECT pg_is_in_recovery()")
                .is_some_and(|r| r == "f")
        });
        assert!(ok, "the standby did not leave recovery");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in [&self.primary, &self.standby] {
            self.tools.stop(node);
        }
    }
}
