//! The command-line client (`vkv get|put|del|history|ls|watch|changes|
//! batch|backup|lease|lock|completion`) as a user runs it: the real binary against real
//! servers, every command and every exit code. One test binary, one module
//! per concern.

mod auth;
mod changes;
mod commands;
#[path = "../support/mod.rs"]
mod common;
mod failover;
mod feed;
mod help;
mod lease;
mod lock;
mod watch;

use std::time::Duration;

use common::{Server, poll_until, run_with};

/// What a client command did.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout without its last newline.
    pub fn out(&self) -> &str {
        self.stdout.strip_suffix('\n').unwrap_or(&self.stdout)
    }

    /// Asserts the exit code, showing everything when it differs.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Ran {
        assert_eq!(self.code, want, "exit code: {self:#?}");
        self
    }
}

/// `vkv ARGS` with `env` set and `stdin` fed, to completion (60 s at most).
pub fn vkv_with(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let out = run_with(args, env, stdin);
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `http://ADDR` of a server.
pub fn url(s: &Server) -> String {
    format!("http://{}", s.addr)
}

/// `vkv ARGS --endpoints URL-of-s`.
pub fn on(s: &Server, args: &[&str]) -> Ran {
    let endpoint = url(s);
    let mut all = args.to_vec();
    all.extend(["--endpoints", &endpoint]);
    vkv_with(&all, &[], b"")
}

/// Waits until `s` answers `/health`.
pub fn wait_healthy(s: &Server) {
    assert!(
        poll_until(Duration::from_secs(20), || {
            common::Client::try_connect(s.addr)
                .and_then(|mut c| c.try_request("GET", "/health", &[], b""))
                .is_ok_and(|r| r.status == 200)
        }),
        "{} never became healthy",
        s.addr
    );
}
