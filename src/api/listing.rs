//! What the files and batches endpoints share: an answer or its error in OpenAI's shape, a record
//! seen only by the key that owns it, and a page of records in OpenAI's list shape.

use std::collections::HashMap;

use axum::response::Response;
use serde_json::{Value, json};

use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;

/// The answer, or its error in OpenAI's shape.
pub(crate) fn answer(r: Result<Response, Error>) -> Response {
    r.unwrap_or_else(|e| e.into_response_for(crate::wire::Format::OpenAi))
}

/// The record when `caller` owns it (`owner` gives its owner's key id); `missing` otherwise, so
/// that another key's record looks like one that does not exist.
pub(crate) fn owned_by<T>(
    record: Option<T>,
    caller: &Caller,
    owner: impl Fn(&T) -> &str,
    missing: impl FnOnce() -> Error,
) -> Result<T, Error> {
    match record {
        Some(r) if caller.owns(owner(&r)) => Ok(r),
        _ => Err(missing()),
    }
}

/// A page of `items` (already sorted and started after the query's `after`): at most `limit`
/// of them (the query's, between 1 and `max`; `default` without one), as
/// `{"object": "list", "data", "first_id", "last_id", "has_more"}`.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    q: &HashMap<String, String>,
    (default, max): (usize, usize),
    id: impl Fn(&T) -> &str,
    show: impl Fn(&T) -> Value,
) -> Value {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, max);
    let has_more = items.len() > limit;
    items.truncate(limit);
    json!({
        "object": "list",
        "data": items.iter().map(show).collect::<Vec<_>>(),
        "first_id": items.first().map(&id),
        "last_id": items.last().map(&id),
        "has_more": has_more,
    })
}
