//! Latest reads share their round trips (after etcd's ReadIndex): a read
//! of a key's latest version joins the next *round*, one query that answers
//! every read queued before it was sent. A reader that finds no round in
//! flight leads one; the others wait for it, and whoever arrives while a
//! round is in flight is taken by the next one. Every read is answered by a
//! query sent after it arrived, so it sees every commit acknowledged before
//! it began (on any replica), as with one query per read, with one round
//! trip (and one statement of PostgreSQL's CPU) per round instead of per
//! read.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use r2d2::Pool;

use super::conn::Manager;
use super::reads::{db_int, versioned};
use crate::error::StoreError;
use crate::storage::Fresh;

/// One queued read: its id, key, and the version (and timestamp) cached.
type Ask = (u64, String, Option<(u64, i64)>);

/// The answer to the read with this id.
type Answer = (u64, Result<Fresh, StoreError>);

#[derive(Default)]
struct State {
    next_id: u64,
    queue: Vec<Ask>,
    answers: HashMap<u64, Result<Fresh, StoreError>>,
    leading: bool,
}

/// The rounds of latest reads of one replica.
#[derive(Default)]
pub(crate) struct Confirmer {
    state: Mutex<State>,
    answered: Condvar,
}

impl Confirmer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest version of `key`, or [`Fresh::Same`] if it is still
    /// `known` (version, timestamp).
    pub fn latest(
        &self,
        pool: &Pool<Manager>,
        key: &str,
        known: Option<(u64, i64)>,
    ) -> Result<Fresh, StoreError> {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.queue.push((id, key.to_string(), known));
        loop {
            if let Some(answer) = st.answers.remove(&id) {
                return answer;
            }
            if st.leading {
                st = self.answered.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.leading = true;
            let round = std::mem::take(&mut st.queue);
            drop(st);
            let mut lead = Lead {
                confirmer: self,
                ids: round.iter().map(|(id, _, _)| *id).collect(),
                answers: None,
            };
            lead.answers = Some(run_round(pool, &round));
            drop(lead);
            st = self.lock();
        }
    }
}

/// A round being led: publishes its answers (or, if the leader panicked,
/// an error for each read) and hands the lead on, whatever happens.
struct Lead<'a> {
    confirmer: &'a Confirmer,
    ids: Vec<u64>,
    answers: Option<Vec<Answer>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let answers = self.answers.take().unwrap_or_else(|| {
            let e = StoreError::Internal("a latest-read round failed".into());
            self.ids.iter().map(|id| (*id, Err(e.clone()))).collect()
        });
        let mut st = self.confirmer.lock();
        st.answers.extend(answers);
        st.leading = false;
        drop(st);
        self.confirmer.answered.notify_all();
    }
}

/// One query for every read of the round.
fn run_round(pool: &Pool<Manager>, round: &[Ask]) -> Vec<Answer> {
    match query_round(pool, round) {
        Ok(answers) => answers,
        Err(e) => round
            .iter()
            .map(|(id, _, _)| (*id, Err(e.clone())))
            .collect(),
    }
}

fn query_round(pool: &Pool<Manager>, round: &[Ask]) -> Result<Vec<Answer>, StoreError> {
    let keys: Vec<&[u8]> = round.iter().map(|(_, k, _)| k.as_bytes()).collect();
    // -1 matches no version: the value is always sent.
    let versions: Vec<i64> = round
        .iter()
        .map(|(_, _, known)| known.map_or(-1, |(v, _)| db_int(v)))
        .collect();
    let stamps: Vec<i64> = round
        .iter()
        .map(|(_, _, known)| known.map_or(0, |(_, ts)| ts))
        .collect();
    let rows = pool.get()?.query(
        "SELECT q.i, v.version, v.ts_ms,
             CASE WHEN v.version = q.version AND v.ts_ms = q.ts THEN NULL ELSE v.value END,
             v.deleted
         FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) WITH ORDINALITY
             AS q(key, version, ts, i)
         LEFT JOIN LATERAL (
             SELECT version, ts_ms, value, deleted FROM vkv_versions
             WHERE key = q.key ORDER BY version DESC LIMIT 1
         ) v ON true",
        &[&keys, &versions, &stamps],
    )?;
    let mut answers = Vec::with_capacity(round.len());
    for r in rows {
        let i: i64 = r.try_get(0)?;
        let Some((id, key, _)) = usize::try_from(i - 1).ok().and_then(|i| round.get(i)) else {
            continue;
        };
        let answer = if r.try_get::<_, Option<i64>>(1)?.is_none() {
            Ok(Fresh::Changed(None))
        } else if r.try_get::<_, Option<String>>(3)?.is_none() {
            Ok(Fresh::Same)
        } else {
            versioned(key, &r, 1).map(|v| Fresh::Changed(Some(v)))
        };
        answers.push((*id, answer));
    }
    if answers.len() != round.len() {
        return Err(StoreError::Internal(format!(
            "a latest-read round answered {} of {} reads",
            answers.len(),
            round.len()
        )));
    }
    Ok(answers)
}
