//! `GET /keys?delimiter=/`: a listing of one level of a key tree, as S3's
//! `ListObjects` gives it: the keys under the prefix with no delimiter after
//! it, and, once each, the "folders" (common prefixes: the prefix, the rest
//! up to and including the first delimiter) that hold the others.
//!
//! Built on the plain key range query of every backend ([`crate::Store::keys`]),
//! so it needs nothing of the storage layer: rows are read in key order, and
//! once a folder is found the scan seeks past it (one more range query
//! starting after the largest string a key in that folder could be) instead
//! of reading its keys. A level of many large folders costs one query per
//! folder, a flat level one query per page.

use crate::KeyInfo;
use crate::key::MAX_KEY_BYTES;

/// One entry of a level, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A key with no delimiter after the prefix.
    Key(KeyInfo),
    /// A folder: the prefix, then the rest of some key up to and including
    /// the first delimiter.
    Folder(String),
}

impl Entry {
    /// The key or the folder: what the next page's `after` names.
    pub fn name(&self) -> &str {
        match self {
            Entry::Key(k) => &k.key,
            Entry::Folder(f) => f,
        }
    }
}

/// How many rows a query reads after a seek past a folder: a folder that
/// filled a whole batch suggests large folders, whose rows are skipped
/// unread only by seeking. Small, so a page of large folders reads a few
/// rows per folder; not 1, so a level of small folders is not one query per
/// row.
const AFTER_SEEK_BATCH: usize = 16;

/// Up to `limit` entries of the level under `prefix` that come after
/// `after` (a key or a folder of an earlier page: after a folder, the
/// whole folder is skipped), and whether more remain. `fetch(after,
/// limit)` is the range query: up to `limit` live keys starting with
/// `prefix`, after `after`, in byte order, and whether more remain.
pub fn level<E>(
    prefix: &str,
    delimiter: &str,
    after: Option<&str>,
    limit: usize,
    mut fetch: impl FnMut(Option<&str>, usize) -> Result<(Vec<KeyInfo>, bool), E>,
) -> Result<(Vec<Entry>, bool), E> {
    debug_assert!(!delimiter.is_empty());
    let want = limit.saturating_add(1);
    let mut out: Vec<Entry> = Vec::new();
    let mut cursor = after.map(|a| match folder_of(prefix, delimiter, a) {
        Some(folder) => past(folder),
        None => a.to_string(),
    });
    let mut batch = want;
    // The folder of the last entry, while the scan is inside it.
    let mut open: Option<String> = None;
    loop {
        let (rows, more) = fetch(cursor.as_deref(), batch)?;
        let Some(last) = rows.last().map(|r| r.key.clone()) else {
            return Ok((out, false));
        };
        for row in rows {
            if open.as_deref().is_some_and(|f| row.key.starts_with(f)) {
                continue;
            }
            match folder_of(prefix, delimiter, &row.key) {
                Some(folder) => {
                    let folder = folder.to_string();
                    open = Some(folder.clone());
                    out.push(Entry::Folder(folder));
                }
                None => {
                    open = None;
                    out.push(Entry::Key(row));
                }
            }
            if out.len() == want {
                out.truncate(limit);
                return Ok((out, true));
            }
        }
        if !more {
            return Ok((out, false));
        }
        let need = want - out.len();
        (cursor, batch) = match &open {
            Some(folder) => (Some(past(folder)), need.min(AFTER_SEEK_BATCH)),
            None => (Some(last), need),
        };
    }
}

/// The folder of `key` under `prefix`, if the rest of `key` holds the
/// delimiter.
fn folder_of<'k>(prefix: &str, delimiter: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix)?;
    let end = rest.find(delimiter)? + prefix.len() + delimiter.len();
    key.get(..end)
}

/// A string above every key that starts with `folder`: the folder, then
/// U+10FFFF (the largest character, `F4 8F BF BF` in UTF-8) until it is
/// longer than any key can be. A key that starts with the folder is either
/// below it at the first character that differs, or a prefix of it.
fn past(folder: &str) -> String {
    let mut s = String::with_capacity(MAX_KEY_BYTES + 8);
    s.push_str(folder);
    while s.len() <= MAX_KEY_BYTES {
        s.push('\u{10FFFF}');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// The range query over a sorted list of keys, counting the queries.
    fn store(keys: &[&str]) -> (Vec<String>, std::cell::Cell<usize>) {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        (keys, std::cell::Cell::new(0))
    }

    fn list(
        (keys, queries): &(Vec<String>, std::cell::Cell<usize>),
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let fetch = |after: Option<&str>, n: usize| -> Result<_, Infallible> {
            queries.set(queries.get() + 1);
            let rows: Vec<KeyInfo> = keys
                .iter()
                .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
                .take(n + 1)
                .map(|k| KeyInfo {
                    key: k.clone(),
                    version: 1,
                    timestamp_ms: 0,
                    value: None,
                })
                .collect();
            let more = rows.len() > n;
            Ok((rows.into_iter().take(n).collect(), more))
        };
        let Ok((entries, more)) = level(prefix, "/", after, limit, fetch);
        let names = entries
            .iter()
            .map(|e| match e {
                Entry::Key(k) => k.key.clone(),
                Entry::Folder(f) => format!("[{f}]"),
            })
            .collect();
        (names, more)
    }

    #[test]
    fn folders_and_keys_of_one_level_in_order() {
        let s = store(&["a", "a/1", "a/2", "a/b/c", "b", "c/", "c/x", "d/e/f", "é/1"]);
        let (names, more) = list(&s, "", None, 100);
        assert_eq!(names, ["a", "[a/]", "b", "[c/]", "[d/]", "[é/]"]);
        assert!(!more);
        let (names, _) = list(&s, "a/", None, 100);
        assert_eq!(names, ["a/1", "a/2", "[a/b/]"]);
        // A prefix that does not end at a delimiter.
        let (names, _) = list(&s, "a", None, 100);
        assert_eq!(names, ["a", "[a/]"]);
        let (names, _) = list(&s, "zz", None, 100);
        assert!(names.is_empty());
    }

    #[test]
    fn pages_resume_after_a_key_or_a_whole_folder() {
        let s = store(&["a", "a/1", "a/2", "a/b/c", "b", "c/", "c/x", "d/e/f"]);
        let mut after: Option<String> = None;
        let mut all = Vec::new();
        loop {
            let (names, more) = list(&s, "", after.as_deref(), 2);
            assert!(names.len() <= 2);
            all.extend(names.iter().cloned());
            if !more {
                break;
            }
            let last = names.last().unwrap();
            after = Some(
                last.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            );
        }
        assert_eq!(all, ["a", "[a/]", "b", "[c/]", "[d/]"]);
        // `after` inside a folder skips the rest of that folder.
        let (names, _) = list(&s, "", Some("a/1"), 10);
        assert_eq!(names, ["b", "[c/]", "[d/]"]);
    }

    #[test]
    fn large_folders_are_skipped_by_seeking_not_read() {
        let mut keys = Vec::new();
        for folder in ["x", "y", "z"] {
            for i in 0..1000 {
                keys.push(format!("{folder}/{i:04}"));
            }
        }
        keys.push("\u{10FFFF}".to_string());
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let s = store(&refs);
        let (names, more) = list(&s, "", None, 100);
        assert_eq!(names, ["[x/]", "[y/]", "[z/]", "\u{10FFFF}"]);
        assert!(!more);
        // One query per folder plus the last: the folders' keys are skipped.
        assert_eq!(s.1.get(), 4);
    }

    #[test]
    fn past_is_above_every_key_of_the_folder() {
        let folder = "a/";
        let bound = past(folder);
        assert!(bound.len() > MAX_KEY_BYTES);
        let longest = format!("{folder}{}", "\u{10FFFF}".repeat((MAX_KEY_BYTES - 2) / 4));
        assert!(longest.len() <= MAX_KEY_BYTES);
        assert!(longest < bound);
        assert!("a/\u{10FFFF}\u{10FFFF}z" < bound.as_str());
        assert!("a0" > bound.as_str());
    }
}
