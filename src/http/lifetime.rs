//! A put's lifetime as clients give it: `ttl` (a duration, `30s` or plain
//! seconds `30`) or `lease` (an id), in the query of `POST /put` or in an
//! entry of `POST /batch`; and a lease's TTL in `POST /leases`.

use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use super::api_error::ApiError;
use crate::Lifetime;

/// A TTL in a JSON body: a duration (`"30s"`, `"1m 30s"`) or a number of
/// seconds.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TtlValue {
    /// Whole seconds.
    Seconds(u64),
    /// A duration with units, such as `30s`, `500ms`, `2h` or `7days`.
    Text(String),
}

impl TtlValue {
    /// The duration (`422` if it is not one; bounds are the store's).
    pub fn duration(&self) -> Result<Duration, ApiError> {
        match self {
            TtlValue::Seconds(s) => Ok(Duration::from_secs(*s)),
            TtlValue::Text(t) => ttl(t),
        }
    }
}

/// Parses a TTL (`422` naming what was given if it is not a duration).
pub fn ttl(text: &str) -> Result<Duration, ApiError> {
    crate::duration::parse(text).map_err(|e| {
        let shown: String = text.chars().filter(|c| !c.is_control()).take(100).collect();
        ApiError::unprocessable(format!(
            "ttl must be a duration from 1s to 30days, like 30s, 5m or 30 (seconds), \
             got '{shown}': {e}"
        ))
    })
}

/// The lifetime of a put from its `ttl` and `lease` (`422` for both).
pub fn lifetime(ttl_given: Option<Duration>, lease: Option<u64>) -> Result<Lifetime, ApiError> {
    match (ttl_given, lease) {
        (Some(_), Some(_)) => Err(ApiError::unprocessable(
            "ttl and lease cannot be combined: a key expires with its own TTL or with its lease",
        )),
        (Some(d), None) => Ok(Lifetime::Ttl(d)),
        (None, Some(id)) => Ok(Lifetime::Lease(id)),
        (None, None) => Ok(Lifetime::Permanent),
    }
}
