//! Optional bearer-token authentication (`--auth-tokens FILE`).
//!
//! The file lists one token per line as `TOKEN SCOPE`, scope `read`, `write`
//! or `admin` (each includes the ones before it); blank lines and `#`
//! comments are ignored. A request then needs `Authorization: Bearer TOKEN`
//! with the scope its route asks for (`Route::scope`).
//!
//! `AuthTokens::reload` (on SIGHUP) re-reads the file and swaps the whole
//! set at once; a file that cannot be read or parsed changes nothing.
//!
//! Secrets stay secret:
//! - a presented token is compared with every configured token, in time
//!   independent of where the bytes differ (`subtle`) and without stopping at
//!   the first match, so timing tells neither how much of a guess was right
//!   nor which token matched. Only whether the guess has the length of some
//!   token can show, which is worthless against random tokens. (Comparing
//!   SHA-256 digests would hide that too, at the price of a hashing crate.)
//! - no error message, log line or `Debug` output contains a token: a
//!   malformed file is reported by path and line number only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a token may do. Ordered: each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Reads: get, history, keys, stats, metrics, docs.
    Read = 1,
    /// Reads and writes: put, delete, batch.
    Write = 2,
    /// Everything, including backups.
    Admin = 3,
}

impl Scope {
    /// The scope's name in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn from_code(code: u8) -> Option<Scope> {
        match code {
            1 => Some(Scope::Read),
            2 => Some(Scope::Write),
            3 => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// Why a request is not allowed; `api_error` turns it into `401`/`403`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("authentication required: send Authorization: Bearer <token>")]
    Missing,
    /// A bearer token that is not in the tokens file.
    #[error("invalid bearer token")]
    InvalidToken,
    /// A valid token without the scope the route needs.
    #[error("this token lacks the '{}' scope", .need.as_str())]
    InsufficientScope {
        /// The scope the route needs.
        need: Scope,
    },
}

/// Why the tokens file was refused. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read auth tokens file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not `TOKEN SCOPE`.
    #[error("auth tokens file {}, line {line}: {reason}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's content).
        reason: String,
    },
    /// The file lists no token at all: every request would be refused.
    #[error("auth tokens file {} lists no tokens", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The configured tokens, and the file they came from.
pub struct AuthTokens {
    /// The tokens file (`None`: parsed from bytes, nothing to reload).
    path: Option<PathBuf>,
    /// Swapped whole by `reload`: a request sees the old set or the new
    /// one, never a mix.
    tokens: RwLock<Arc<TokenSet>>,
}

/// One parsed tokens file.
type TokenSet = Vec<(Box<[u8]>, Scope)>;

impl fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthTokens")
            .field("tokens", &self.len())
            .finish()
    }
}

/// RFC 6750 `b64token`: what may follow `Bearer `.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

impl AuthTokens {
    /// Reads and validates the tokens file.
    pub fn load(path: &Path) -> Result<AuthTokens, TokenFileError> {
        let tokens = Self::read(path)?;
        Ok(AuthTokens {
            path: Some(path.to_path_buf()),
            tokens: RwLock::new(Arc::new(tokens)),
        })
    }

    /// Reads the file again and, only if it is valid, replaces every token
    /// at once; returns how many there are now. On an error the tokens
    /// loaded before stay in force.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let Some(path) = &self.path else {
            return Ok(self.len());
        };
        let fresh = Arc::new(Self::read(path)?);
        let count = fresh.len();
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(count)
    }

    /// The file named by `--auth-tokens`, if the tokens came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read(path: &Path) -> Result<TokenSet, TokenFileError> {
        let bytes = std::fs::read(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let tokens =
            Self::parse_set(&bytes).map_err(|(line, reason)| TokenFileError::Malformed {
                path: path.to_path_buf(),
                line,
                reason,
            })?;
        if tokens.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        warn_if_readable_by_others(path);
        Ok(tokens)
    }

    /// Parses the file's content; `Err((line, reason))` on the first bad line.
    pub fn parse(bytes: &[u8]) -> Result<AuthTokens, (usize, String)> {
        Ok(AuthTokens {
            path: None,
            tokens: RwLock::new(Arc::new(Self::parse_set(bytes)?)),
        })
    }

    fn parse_set(bytes: &[u8]) -> Result<TokenSet, (usize, String)> {
        let mut tokens: TokenSet = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let line = std::str::from_utf8(raw).map_err(|_| (n, "not UTF-8".to_string()))?;
            // A token never contains '#', so everything after one is comment.
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [token, scope] = fields[..] else {
                return Err((
                    n,
                    format!(
                        "expected `TOKEN SCOPE` (two fields), found {} fields",
                        fields.len()
                    ),
                ));
            };
            let scope = Scope::parse(scope).ok_or_else(|| {
                (
                    n,
                    "unknown scope: expected read, write or admin".to_string(),
                )
            })?;
            if !is_b64token(token) {
                return Err((
                    n,
                    "the token may only contain letters, digits, - . _ ~ + / and trailing ="
                        .to_string(),
                ));
            }
            if let Some(k) = tokens.iter().position(|(t, _)| **t == *token.as_bytes()) {
                return Err((
                    n,
                    format!("the same token is already on line {}", lines_of[k]),
                ));
            }
            if token.len() < 16 {
                log::warn!("auth token on line {n} is shorter than 16 characters: easy to guess");
            }
            tokens.push((token.as_bytes().into(), scope));
            lines_of.push(n);
        }
        Ok(tokens)
    }

    /// The tokens in force now.
    fn current(&self) -> Arc<TokenSet> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// The scope of `token`, if it is configured. Compares against every
    /// token in constant time per byte (see the module docs).
    fn scope_of(&self, token: &[u8]) -> Option<Scope> {
        let mut found = 0u8;
        for (known, scope) in self.current().iter() {
            let same = known.as_ref().ct_eq(token);
            found = u8::conditional_select(&found, &(*scope as u8), same);
        }
        Scope::from_code(found)
    }

    /// Checks the `Authorization` header value for scope `need`.
    pub fn authorize(&self, authorization: Option<&str>, need: Scope) -> Result<Scope, AuthError> {
        let token = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(AuthError::Missing)?;
        let scope = self
            .scope_of(token.as_bytes())
            .ok_or(AuthError::InvalidToken)?;
        if scope < need {
            return Err(AuthError::InsufficientScope { need });
        }
        Ok(scope)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        log::warn!(
            "auth tokens file {} is readable by every user; chmod 600 it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AuthTokens {
        AuthTokens::parse(
            b"# comment\n\nreader-token-0001 read\r\nwriter-token-0001  write # trailing\nadmin-token-00001\tadmin\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn scopes_include_lower_ones() {
        let t = tokens();
        assert_eq!(t.len(), 3);
        let ok = |h: &str, s| t.authorize(Some(h), s);
        assert_eq!(ok("Bearer reader-token-0001", Scope::Read), Ok(Scope::Read));
        assert_eq!(
            ok("Bearer reader-token-0001", Scope::Write),
            Err(AuthError::InsufficientScope { need: Scope::Write })
        );
        assert_eq!(
            ok("bearer writer-token-0001", Scope::Write),
            Ok(Scope::Write)
        );
        assert_eq!(
            ok("Bearer admin-token-00001", Scope::Admin),
            Ok(Scope::Admin)
        );
        assert_eq!(
            ok("Bearer admin-token-0000", Scope::Read),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(ok("Basic abc", Scope::Read), Err(AuthError::Missing));
        assert_eq!(t.authorize(None, Scope::Read), Err(AuthError::Missing));
    }

    #[test]
    fn malformed_lines_are_named_without_their_content() {
        let bad: &[(&[u8], usize)] = &[
            (b"abcdefghijklmnop read\nsecret-xyz\n", 2),
            (b"secret-xyz reader\n", 1),
            (b"\n\nsecret xyz read\n", 3),
            (b"sec\"ret read\n", 1),
            (b"abcdefghijklmnop read\nabcdefghijklmnop admin\n", 2),
            (b"\xff\xfe read\n", 1),
        ];
        for (text, line) in bad {
            let (n, reason) = AuthTokens::parse(text).err().unwrap_or_default();
            assert_eq!(n, *line, "{reason}");
            assert!(!reason.contains("secret"), "{reason}");
        }
        let debug = format!("{:?}", tokens());
        assert!(!debug.contains("token-0001"), "{debug}");
    }
}
