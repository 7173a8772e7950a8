//! `/admin/requests`, `/admin/requests/{id}`, `/admin/usage`, `/admin/stats` (master key): the
//! request log, the usage report and the overview's numbers (see `request_log`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::context::SharedState;
use crate::api::error::Render;
use crate::error::Error;
use crate::request_log::counters::{self, DIMENSIONS};
use crate::request_log::{ReadError, StatusFilter};

const MAX_LIMIT: usize = 1000;

fn err(e: Error) -> Response {
    e.into_response_for(crate::wire::Format::OpenAi)
}

fn store_err(e: &str) -> Response {
    tracing::warn!(error = %e, "request log read failed");
    err(Error::Unavailable {
        message: "the request log cannot be read right now; retry shortly".to_owned(),
        retry_after: std::time::Duration::from_secs(1),
    })
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// `GET /admin/requests?limit=50&after=ID&key=&model=&status=`: newest first.
pub async fn list(
    State(state): State<SharedState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match param(&q, "limit") {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return err(Error::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, not {l:?}"
                )));
            }
        },
    };
    let status = match param(&q, "status") {
        None => None,
        Some(s) => match StatusFilter::parse(s) {
            Some(f) => Some(f),
            None => {
                return err(Error::invalid(format!(
                    "status must be an HTTP status (429), a class (4xx), \"error\" or \"ok\", not {s:?}"
                )));
            }
        },
    };
    let Some(log) = &state.request_log else {
        return axum::Json(json!({"object": "list", "data": [], "has_more": false}))
            .into_response();
    };
    let query = crate::request_log::Query {
        limit,
        after: param(&q, "after").map(str::to_owned),
        key: param(&q, "key").map(str::to_owned),
        model: param(&q, "model").map(str::to_owned),
        status,
    };
    match log.list(query).await {
        Ok(page) => axum::Json(json!({
            "object": "list",
            "data": page.data,
            "has_more": page.has_more,
        }))
        .into_response(),
        Err(ReadError::UnknownCursor) => err(Error::invalid(
            "after names no entry of the request log (it may have been trimmed since); start again without it",
        )),
        Err(ReadError::Store(e)) => store_err(&e),
    }
}

/// `GET /admin/requests/{id}`.
pub async fn get(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    let not_found = || {
        err(Error::NoSuch(format!(
            "no request {id:?} in the request log"
        )))
    };
    let Some(log) = &state.request_log else {
        return not_found();
    };
    match log.get(id.clone()).await {
        Ok(Some(e)) => axum::Json(e).into_response(),
        Ok(None) => not_found(),
        Err(e) => store_err(&e),
    }
}

fn today() -> i64 {
    i64::try_from(crate::clock::unix_secs() / 86_400).unwrap_or(0)
}

/// `GET /admin/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day,key,model`: totals per group
/// over every replica. `to` defaults to today, `from` to 29 days before `to`; `group_by` to
/// `day,key,model`.
pub async fn usage(
    State(state): State<SharedState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let retention_days = i64::try_from(
        state
            .runtime
            .load()
            .config
            .request_log
            .usage_retention
            .get()
            .as_secs()
            / 86_400,
    )
    .unwrap_or(i64::MAX)
    .max(1);
    let day = |name: &str| -> Result<Option<i64>, Error> {
        match param(&q, name) {
            None => Ok(None),
            Some(s) => counters::parse_day(s).map(Some).ok_or_else(|| {
                Error::invalid(format!(
                    "{name} must be a date as YYYY-MM-DD (such as 2026-12-06), not {s:?}"
                ))
            }),
        }
    };
    let to = match day("to") {
        Ok(d) => d.unwrap_or_else(today),
        Err(e) => return err(e),
    };
    let from = match day("from") {
        Ok(d) => d.unwrap_or(to - 29.min(retention_days - 1)),
        Err(e) => return err(e),
    };
    if from > to {
        return err(Error::invalid(format!(
            "the range is reversed: from ({}) is after to ({})",
            counters::day_string(from),
            counters::day_string(to)
        )));
    }
    if to - from + 1 > retention_days {
        return err(Error::invalid(format!(
            "the range is too long: {} days from {} to {}; at most {retention_days} (request_log.usage_retention) are kept",
            to - from + 1,
            counters::day_string(from),
            counters::day_string(to)
        )));
    }
    let mut group_by: Vec<&str> = Vec::new();
    // Absent: the default; given empty: no grouping (one row of totals).
    for g in q
        .get("group_by")
        .map_or("day,key,model", String::as_str)
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        let Some(d) = DIMENSIONS.iter().find(|d| **d == g) else {
            return err(Error::invalid(format!(
                "group_by takes day, key, model and provider (comma-separated), not {g:?}"
            )));
        };
        if !group_by.contains(d) {
            group_by.push(d);
        }
    }
    // In the order of DIMENSIONS, whatever order they were given in.
    group_by.sort_by_key(|g| DIMENSIONS.iter().position(|d| d == g));
    let Some(log) = &state.request_log else {
        return axum::Json(json!({"object": "list", "data": []})).into_response();
    };
    let days: Vec<String> = (from..=to).map(counters::day_string).collect();
    let hashes = days.iter().map(|d| format!("d:{d}")).collect();
    match log.counters(hashes).await {
        Ok(got) => {
            let days: Vec<_> = days.into_iter().zip(got).collect();
            let data = counters::usage_rows(&days, &group_by);
            axum::Json(json!({"object": "list", "data": data})).into_response()
        }
        Err(e) => store_err(&e),
    }
}

/// `GET /admin/stats?window=hour|day`: the overview's buckets (hour: 60 of 60 s; day: 24 of
/// 3600 s), oldest first, and their totals.
pub async fn stats(
    State(state): State<SharedState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let window = param(&q, "window").unwrap_or("hour");
    let (prefix, size, n) = match window {
        "hour" => ("m", 60u64, 60u64),
        "day" => ("h", 3600, 24),
        w => {
            return err(Error::invalid(format!(
                "window must be \"hour\" or \"day\", not {w:?}"
            )));
        }
    };
    let now = crate::clock::unix_secs();
    let last = now / size * size;
    let starts: Vec<u64> = (0..n).rev().map(|i| last - i * size).collect();
    let got = match &state.request_log {
        None => vec![counters::Hash::new(); starts.len()],
        Some(log) => {
            match log
                .counters(starts.iter().map(|s| format!("{prefix}:{s}")).collect())
                .await
            {
                Ok(g) => g,
                Err(e) => return store_err(&e),
            }
        }
    };
    let buckets: Vec<_> = starts
        .iter()
        .zip(&got)
        .map(|(s, h)| counters::stats_of(Some(*s), &[h]))
        .collect();
    let all: Vec<&counters::Hash> = got.iter().collect();
    axum::Json(json!({
        "window": window,
        "bucket_seconds": size,
        "buckets": buckets,
        "totals": counters::stats_of(None, &all),
        "dropped": state.request_log.as_ref().map_or(0, |l| l.dropped()),
    }))
    .into_response()
}
