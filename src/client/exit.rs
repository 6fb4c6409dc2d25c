//! Why a command failed, and the exit code a script branches on. The codes
//! are part of the interface (README, docs/client.md, `--help`): never
//! renumber them.

use std::fmt;
use std::process::ExitCode;

/// Exit codes of the client commands.
pub mod code {
    /// Done.
    pub const OK: u8 = 0;
    /// Anything else: a refused value or key (422), a server error, a local
    /// file that cannot be read or written.
    pub const OTHER: u8 = 1;
    /// Bad command line (clap's code), or a setting that cannot work (an
    /// `https` endpoint in a vkv without TLS, an unreadable token file).
    pub const USAGE: u8 = 2;
    /// No such key or version (404), or a version removed by retention
    /// (410); for the change feed, changes after the revision asked for
    /// removed (410).
    pub const NOT_FOUND: u8 = 3;
    /// A condition failed (409): `--if-version` did not match.
    pub const CONFLICT: u8 = 4;
    /// Refused: no token, an unknown token (401), or a token without the
    /// scope (403).
    pub const REFUSED: u8 = 5;
    /// No endpoint answered (connection refused or timed out everywhere,
    /// or `503` from every one), or the connection was lost after a write
    /// was sent (its outcome is unknown).
    pub const UNAVAILABLE: u8 = 6;
}

/// The table of exit codes every client command's help ends with (also
/// in docs/client.md). A macro, so that help texts can `concat!` it.
macro_rules! exit_codes {
    () => {
        "
Exit codes:
  0  success
  1  other error (invalid key or value, server error, local file error)
  2  usage error (bad flags; https without TLS support; unreadable token file)
  3  not found (404: no such key, version or lease, or deleted; 410: removed by
     retention, or for watch --prefix and changes the changes after --after)
  4  condition failed (409: --if-version did not match)
  5  refused (401: no or unknown token; 403: token without the scope)
  6  unavailable (no endpoint answered, or each answered 503)"
    };
}
pub(crate) use exit_codes;

/// A failed command: its exit code and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(code::USAGE, message)
    }

    pub fn other(message: impl Into<String>) -> Failure {
        Failure::new(code::OTHER, message)
    }

    /// An end with nothing to say and exit code 0 (stdout was closed by
    /// its reader: `vkv ls | head`).
    pub fn quiet() -> Failure {
        Failure::new(code::OK, "")
    }

    /// The failure an HTTP answer `status` means, `detail` being the
    /// server's words (its JSON `detail`, or the body as text).
    pub fn from_status(status: u16, detail: &str, from: &str) -> Failure {
        let code = match status {
            404 | 410 => code::NOT_FOUND,
            409 | 412 => code::CONFLICT,
            401 | 403 => code::REFUSED,
            503 => code::UNAVAILABLE,
            _ => code::OTHER,
        };
        let detail = if detail.is_empty() {
            "(no detail)"
        } else {
            detail
        };
        Failure::new(code, format!("{detail} ({status} from {from})"))
    }

    /// The process's exit code; prints the message on stderr.
    pub fn exit(self, command: &str) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("vkv {command}: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `detail` of a JSON error body, else the body as text (cut short).
pub fn detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Detail {
        detail: String,
    }
    match serde_json::from_slice::<Detail>(body) {
        Ok(d) => d.detail,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match text.char_indices().nth(200) {
                Some((i, _)) => format!("{}...", &text[..i]),
                None => text.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_codes() {
        for (status, want) in [
            (404, code::NOT_FOUND),
            (410, code::NOT_FOUND),
            (409, code::CONFLICT),
            (401, code::REFUSED),
            (403, code::REFUSED),
            (503, code::UNAVAILABLE),
            (422, code::OTHER),
            (500, code::OTHER),
            (507, code::OTHER),
        ] {
            assert_eq!(
                Failure::from_status(status, "x", "e").code,
                want,
                "{status}"
            );
        }
        assert_eq!(
            detail(br#"{"detail":"key 'k' not found"}"#),
            "key 'k' not found"
        );
        assert_eq!(detail(b" plain text \n"), "plain text");
        assert_eq!(detail(&[b'a'; 300]).len(), 203);
    }
}
