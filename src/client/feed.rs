//! The change feed (`GET /changes`) as the client reads it, for both of its
//! commands: `vkv changes` (one page, `changes.rs`) and `vkv watch --prefix`
//! (long polls in a loop, `follow.rs`). The request's target, the answer
//! and its `410`, and the line printed for each change.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::args::Output;
use super::commands::parse;
use super::endpoint::query_value;
use super::exit::{Failure, code, detail};
use super::failover::Client;
use super::http::{Request, Response};
use super::output::compact;

/// One answer of `GET /changes`, each change kept as sent (for `-o json`).
#[derive(Deserialize)]
pub struct Page<'a> {
    #[serde(borrow)]
    pub changes: Vec<&'a RawValue>,
    /// The store's revision the answer covers.
    pub revision: u64,
    next_after: Option<u64>,
}

impl Page<'_> {
    /// The revision to resume after: the last change's when the limit cut
    /// the page, else the one the answer covers.
    pub fn next_after(&self) -> u64 {
        self.next_after.unwrap_or(self.revision)
    }
}

/// What a text line shows of a change.
#[derive(Deserialize)]
struct Change<'a> {
    revision: u64,
    key: String,
    version: u64,
    operation: String,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// A `410`'s body: the smallest `after` the server answers now.
#[derive(Deserialize)]
struct Gone {
    oldest_revision: Option<u64>,
}

/// `GET /changes` of the keys starting with `prefix`, after revision
/// `after` (`None`: from now on), with `params` (`&limit=N`, ...) added.
pub fn target(prefix: &str, after: Option<u64>, params: &str) -> String {
    let mut target = format!("/changes?prefix={}", query_value(prefix));
    if let Some(after) = after {
        target.push_str(&format!("&after={after}"));
    }
    target.push_str(params);
    target
}

/// Sends `req`, a `GET /changes` after revision `after`: its answer if it
/// is a `2xx`. A `410` is a failure (exit 3) that names the oldest
/// revision to start again after, telling the user to `verb` from there;
/// any other status is the failure it means.
pub fn fetch(
    client: &mut Client,
    req: Request<'_>,
    after: u64,
    verb: &str,
) -> Result<Response, Failure> {
    let r = client.call(req)?;
    if r.status != 410 {
        return client.ok(r);
    }
    let oldest = serde_json::from_slice::<Gone>(&r.body)
        .ok()
        .and_then(|g| g.oldest_revision)
        .map_or("unknown".to_string(), |o| o.to_string());
    Err(Failure::new(
        code::NOT_FOUND,
        format!(
            "changes after revision {after} are gone (removed by retention or a purge); \
             the oldest revision to {verb} after is {oldest}: list the keys again \
             (vkv ls) and {verb} with --after {oldest} or later ({}: {})",
            client.endpoint(),
            detail(&r.body)
        ),
    ))
}

/// The line printed for the change `raw`: the feed's object on one line
/// (`-o json`), or its revision, operation, key, version and, for a create
/// or an update, its value as one-line JSON, tab-separated.
pub fn line(client: &Client, raw: &RawValue, output: Output) -> Result<String, Failure> {
    Ok(match output {
        Output::Json => compact(raw.get()),
        Output::Text => {
            let c: Change<'_> = parse(client, raw.get().as_bytes())?;
            let mut line = format!("{}\t{}\t{}\t{}", c.revision, c.operation, c.key, c.version);
            if let Some(v) = c.value {
                line.push('\t');
                line.push_str(&compact(v.get()));
            }
            line
        }
    })
}
