//! The one-shot commands: `get`, `put`, `del`, `history`, `ls`, `batch`
//! and `backup`, each a request (or a few pages of them) through a
//! [`Client`] and its answer printed. (`watch` has its own file.)

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::args::{BackupArgs, BatchArgs, DelArgs, GetArgs, HistoryArgs, LsArgs, Output, PutArgs};
use super::endpoint::{path_key, query_value};
use super::exit::Failure;
use super::failover::Client;
use super::http::Request;
use super::output::{self, compact, value_text};

/// `GET /get/{key}` (and `/keys`, `/history`'s entries): what the client
/// reads of the answers.
#[derive(Debug, Deserialize)]
pub struct Found<'a> {
    #[serde(borrow)]
    pub value: &'a RawValue,
    pub version: u64,
    pub timestamp: String,
}

#[derive(Debug, Deserialize)]
struct Written {
    key: String,
    version: u64,
    #[serde(default)]
    operation: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Purged {
    key: String,
    purged_versions: u64,
}

#[derive(Debug, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub timestamp: String,
    pub deleted: bool,
    pub size_bytes: u64,
}

#[derive(Debug, Deserialize)]
pub struct HistoryPage {
    pub versions: Vec<HistoryEntry>,
    pub next_before: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct KeyEntry {
    key: String,
    version: u64,
    timestamp: String,
}

#[derive(Debug, Deserialize)]
struct KeysPage {
    keys: Vec<KeyEntry>,
    next_after: Option<String>,
}

/// The most entries a listing page asks for (the server's maximum).
const PAGE: u64 = 1000;

/// Parses a JSON answer, or says which endpoint sent what.
pub fn parse<'a, T: Deserialize<'a>>(client: &Client, body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::other(format!(
            "{}: unexpected answer ({e}): {}",
            client.endpoint(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}

/// A JSON `POST` or `DELETE`.
fn write_request<'a>(method: &'static str, target: String, body: Option<&'a [u8]>) -> Request<'a> {
    Request {
        method,
        body,
        ..Request::get(target)
    }
}

pub fn get(a: &GetArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let mut target = format!("/get/{}", path_key(&a.key));
    if let Some(v) = a.version {
        target.push_str(&format!("?version={v}"));
    }
    let r = client.expect_ok(Request::get(target))?;
    match a.output {
        Output::Json => output::raw(&r.body),
        Output::Text => {
            let found: Found<'_> = parse(&client, &r.body)?;
            output::line(&value_text(found.value))
        }
    }
}

/// The JSON text of the value `put` sends: VALUE (or stdin) as JSON when
/// it parses and `--string` is not given, else as a JSON string.
fn put_value(value: &str, string: bool) -> Result<String, Failure> {
    let text = if value == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::other(format!("cannot read stdin: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| Failure::usage("the value on stdin is not UTF-8 text (values are JSON)"))?
    } else {
        value.to_string()
    };
    if !string && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
        return Ok(text);
    }
    serde_json::to_string(&text).map_err(|e| Failure::other(e.to_string()))
}

pub fn put(a: &PutArgs) -> Result<(), Failure> {
    // The value first: a usage error must not depend on a server.
    let value = put_value(&a.value, a.string)?;
    let body = format!("{{\"value\":{value}}}");
    let mut client = Client::new(&a.connect)?;
    let mut query = Vec::new();
    if let Some(v) = a.if_version {
        query.push(format!("if_version={v}"));
    }
    if let Some(ttl) = &a.ttl {
        query.push(format!("ttl={}", query_value(ttl)));
    }
    if let Some(id) = a.lease {
        query.push(format!("lease={id}"));
    }
    let mut target = format!("/put/{}", path_key(&a.key));
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    let r = client.expect_ok(write_request("POST", target, Some(body.as_bytes())))?;
    match a.output {
        Output::Json => output::raw(&r.body),
        Output::Text => output::line(&written_line(&parse(&client, &r.body)?)),
    }
}

/// `created k at version 1`, `updated k to version 3`.
fn written_line(w: &Written) -> String {
    match w.operation.as_deref() {
        Some("create") => format!("created {} at version {}", w.key, w.version),
        _ => format!("updated {} to version {}", w.key, w.version),
    }
}

pub fn del(a: &DelArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let mut query = Vec::new();
    if a.purge {
        query.push("purge=true".to_string());
    }
    if let Some(v) = a.if_version {
        query.push(format!("if_version={v}"));
    }
    let mut target = format!("/delete/{}", path_key(&a.key));
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    let r = client.expect_ok(write_request("DELETE", target, None))?;
    match a.output {
        Output::Json => output::raw(&r.body),
        Output::Text if a.purge => {
            let p: Purged = parse(&client, &r.body)?;
            output::line(&format!(
                "purged {}: {} versions removed",
                p.key, p.purged_versions
            ))
        }
        Output::Text => {
            let d: Written = parse(&client, &r.body)?;
            output::line(&format!("deleted {} at version {}", d.key, d.version))
        }
    }
}

/// One page of a key's history: versions below `before` (all if `None`),
/// newest first.
pub fn history_page(
    client: &mut Client,
    key: &str,
    before: Option<u64>,
    limit: u64,
) -> Result<HistoryPage, Failure> {
    let mut target = format!("/history/{}?limit={limit}", path_key(key));
    if let Some(b) = before {
        target.push_str(&format!("&before={b}"));
    }
    let r = client.expect_ok(Request::get(target))?;
    parse(client, &r.body)
}

pub fn history(a: &HistoryArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let mut left = a.limit.unwrap_or(u64::MAX);
    let mut before = None;
    while left > 0 {
        let page = history_page(&mut client, &a.key, before, left.min(PAGE))?;
        for v in &page.versions {
            output::line(&match a.output {
                Output::Json => format!(
                    "{{\"version\":{},\"timestamp\":{},\"deleted\":{},\"size_bytes\":{}}}",
                    v.version,
                    json_string(&v.timestamp),
                    v.deleted,
                    v.size_bytes
                ),
                Output::Text if v.deleted => format!("{}\t{}\tdeleted", v.version, v.timestamp),
                Output::Text => format!("{}\t{}\t{} bytes", v.version, v.timestamp, v.size_bytes),
            })?;
        }
        left = left.saturating_sub(page.versions.len() as u64);
        match page.next_before {
            Some(b) if !page.versions.is_empty() => before = Some(b),
            _ => break,
        }
    }
    Ok(())
}

pub fn ls(a: &LsArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let mut after: Option<String> = None;
    loop {
        let mut target = format!("/keys?limit={PAGE}&prefix={}", query_value(&a.prefix));
        if let Some(after) = &after {
            target.push_str(&format!("&after={}", query_value(after)));
        }
        let r = client.expect_ok(Request::get(target))?;
        let page: KeysPage = parse(&client, &r.body)?;
        for k in &page.keys {
            let value = if a.values {
                match value_at(&mut client, &k.key, k.version)? {
                    Some(v) => Some(v),
                    // Deleted or purged since the page was read.
                    None => continue,
                }
            } else {
                None
            };
            let line = match (a.output, &value) {
                (Output::Text, None) => k.key.clone(),
                (Output::Text, Some(v)) => format!("{}\t{v}", k.key),
                (Output::Json, _) => {
                    let mut obj = format!(
                        "{{\"key\":{},\"version\":{},\"timestamp\":{}",
                        json_string(&k.key),
                        k.version,
                        json_string(&k.timestamp)
                    );
                    if let Some(v) = &value {
                        obj.push_str(&format!(",\"value\":{v}"));
                    }
                    obj.push('}');
                    obj
                }
            };
            output::line(&line)?;
        }
        match page.next_after {
            Some(next) if !page.keys.is_empty() => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// Version `version` of `key` as one-line JSON; `None` if it is gone
/// (404, 410).
fn value_at(client: &mut Client, key: &str, version: u64) -> Result<Option<String>, Failure> {
    let r = client.call(Request::get(format!(
        "/get/{}?version={version}",
        path_key(key)
    )))?;
    if matches!(r.status, 404 | 410) {
        return Ok(None);
    }
    let r = client.ok(r)?;
    let found: Found<'_> = parse(client, &r.body)?;
    Ok(Some(compact(found.value.get())))
}

pub fn batch(a: &BatchArgs) -> Result<(), Failure> {
    let body = read_input(&a.file)?;
    let mut client = Client::new(&a.connect)?;
    let r = client.expect_ok(write_request("POST", "/batch".to_string(), Some(&body)))?;
    match a.output {
        Output::Json => output::raw(&r.body),
        Output::Text => {
            #[derive(Deserialize)]
            struct Results {
                results: Vec<Written>,
            }
            let results: Results = parse(&client, &r.body)?;
            for w in &results.results {
                output::line(&written_line(w))?;
            }
            Ok(())
        }
    }
}

/// The bytes of FILE, or of stdin for `-`.
fn read_input(file: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::other(format!("cannot read stdin: {e}")))?;
    } else {
        bytes = std::fs::read(file)
            .map_err(|e| Failure::other(format!("cannot read {}: {e}", file.display())))?;
    }
    Ok(bytes)
}

pub fn backup(a: &BackupArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let req = Request::get("/backup".to_string());
    if a.file == Path::new("-") {
        let mut out = std::io::stdout().lock();
        let r = client.call_to(req, &mut out)?;
        client.ok(r)?;
        return out.flush().map_err(output::stdout_failure);
    }
    if a.file.exists() && !a.force {
        return Err(Failure::other(format!(
            "{} exists; add --force to replace it",
            a.file.display()
        )));
    }
    let partial = partial_name(&a.file);
    let result = download(&mut client, req, &partial);
    let written = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &a.file).map_err(|e| {
        Failure::other(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            a.file.display()
        ))
    })?;
    output::line(&format!(
        "wrote {} ({written} bytes) from {}",
        a.file.display(),
        client.endpoint()
    ))
}

/// `FILE.partial`, beside FILE.
fn partial_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// GET /backup into `path`, synced to disk; the bytes written.
fn download(client: &mut Client, req: Request<'_>, path: &Path) -> Result<u64, Failure> {
    let local = |e: std::io::Error| Failure::other(format!("{}: {e}", path.display()));
    let file = File::create(path).map_err(local)?;
    let mut out = Counting {
        inner: BufWriter::new(file),
        bytes: 0,
    };
    let r = client.call_to(req, &mut out)?;
    client.ok(r)?;
    let file = out.inner.into_inner().map_err(|e| local(e.into_error()))?;
    file.sync_all().map_err(local)?;
    Ok(out.bytes)
}

/// A writer that counts what goes through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `s` as a JSON string.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_when_they_parse() {
        let v = |s: &str, string| put_value(s, string).map_err(|f| f.message);
        assert_eq!(v("42", false), Ok("42".into()));
        assert_eq!(v("{\"a\": 1}", false), Ok("{\"a\": 1}".into()));
        assert_eq!(v("\"quoted\"", false), Ok("\"quoted\"".into()));
        assert_eq!(v("on", false), Ok("\"on\"".into()));
        assert_eq!(v("hello world", false), Ok("\"hello world\"".into()));
        assert_eq!(v("007", false), Ok("\"007\"".into()));
        assert_eq!(v("42", true), Ok("\"42\"".into()));
        assert_eq!(v("a\"b\n", false), Ok("\"a\\\"b\\n\"".into()));
        assert_eq!(v("", false), Ok("\"\"".into()));
    }
}
