//! `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`,
//! `POST /v1/batches/{id}/cancel` (OpenAI's shapes), and `GET /admin/batches` (every key's
//! batches, for the console). A batch belongs to the key (by id) that created it; other keys
//! get 404. The work itself is done by `batches::runner`.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::files::{batches_of, store_error};
use super::listing::{self, answer, owned_by};
use crate::api::context::SharedState;
use crate::auth::Caller;
use crate::clock::unix_secs;
use crate::error::Error;
use crate::jobs::batches::{Batch, BatchStatus, new_batch_id, valid_batch_id};

/// The endpoints a batch may run.
pub const ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/responses",
];

fn no_batch(id: &str) -> Error {
    Error::NoSuch(format!("no batch {id} for this key"))
}

#[derive(Deserialize)]
struct Create {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub async fn create(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    answer(create_inner(state, caller, body).await)
}

async fn create_inner(state: SharedState, caller: Caller, body: Bytes) -> Result<Response, Error> {
    let batches = batches_of(&state)?;
    let req: Create = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("the request body is not a valid batch: {e}")))?;
    let Some(input_file_id) = req.input_file_id else {
        return Err(Error::invalid("input_file_id is required"));
    };
    let endpoint = req.endpoint.unwrap_or_default();
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        return Err(Error::invalid(format!(
            "endpoint {endpoint:?} is not supported; use one of {}",
            ENDPOINTS.join(", ")
        )));
    }
    let window = req.completion_window.unwrap_or_default();
    if window != "24h" {
        return Err(Error::invalid(format!(
            "completion_window {window:?} is not supported; use \"24h\""
        )));
    }
    match &req.metadata {
        None | Some(Value::Null) => {}
        Some(Value::Object(m))
            if m.len() <= 16
                && m.values()
                    .all(|v| v.as_str().is_some_and(|s| s.len() <= 512)) => {}
        Some(_) => {
            return Err(Error::invalid(
                "metadata must be an object of at most 16 string values",
            ));
        }
    }
    let file = if crate::jobs::files::valid_file_id(&input_file_id) {
        batches
            .records
            .get_file(&input_file_id)
            .await
            .map_err(store_error)?
    } else {
        None
    };
    let Some(file) = file.filter(|f| caller.owns(&f.owner_id)) else {
        return Err(Error::NoSuch(format!(
            "no file {input_file_id} for this key"
        )));
    };
    if file.purpose != "batch" {
        return Err(Error::invalid(format!(
            "file {input_file_id} has purpose {:?}; a batch's input needs purpose \"batch\"",
            file.purpose
        )));
    }
    let now = unix_secs();
    let window_secs = state
        .runtime
        .load()
        .config
        .batches
        .expire_after
        .get()
        .as_secs()
        .max(1);
    let batch = Batch {
        id: new_batch_id(),
        owner_id: caller.id().to_owned(),
        owner_name: caller.name().to_owned(),
        endpoint,
        input_file_id,
        completion_window: window,
        status: BatchStatus::Validating,
        created_at: now,
        expires_at: now + window_secs,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        output_file_id: None,
        error_file_id: None,
        errors: None,
        metadata: req.metadata.filter(|m| !m.is_null()),
        total: 0,
        completed: 0,
        failed: 0,
        stop: None,
        lease_owner: String::new(),
        lease_until: 0,
        rev: 0,
    };
    batches.records.create(&batch).await.map_err(store_error)?;
    batches.wake.notify_one();
    tracing::info!(batch = %batch.id, endpoint = %batch.endpoint, "batch created");
    Ok(axum::Json(batch.public()).into_response())
}

async fn owned(state: &SharedState, caller: &Caller, id: &str) -> Result<(Batch, u64), Error> {
    let batches = batches_of(state)?;
    if !valid_batch_id(id) {
        return Err(no_batch(id));
    }
    owned_by(
        batches.records.get(id).await.map_err(store_error)?,
        caller,
        |(b, _)| b.owner_id.as_str(),
        || no_batch(id),
    )
}

pub async fn get(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    answer(
        owned(&state, &caller, &id)
            .await
            .map(|(b, _)| axum::Json(b.public()).into_response()),
    )
}

/// A page of batches, newest first: `after` (an id of the previous page) and `limit` (1-100,
/// default 20).
fn page(
    mut list: Vec<Batch>,
    q: &HashMap<String, String>,
    show: impl Fn(&Batch) -> Value,
) -> Value {
    list.sort_by(|a, b| b.id.cmp(&a.id));
    if let Some(after) = q.get("after") {
        list.retain(|b| b.id < *after);
    }
    listing::page(list, q, (20, 100), |b| b.id.as_str(), show)
}

pub async fn list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let list: Vec<Batch> = batches
                .records
                .list()
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|b| caller.owns(&b.owner_id))
                .collect();
            Ok(axum::Json(page(list, &q, Batch::public)).into_response())
        }
        .await,
    )
}

pub async fn cancel(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            for _ in 0..20 {
                let (mut b, rev) = owned(&state, &caller, &id).await?;
                match b.status {
                    BatchStatus::Validating | BatchStatus::InProgress => {}
                    BatchStatus::Cancelling | BatchStatus::Cancelled => {
                        return Ok(axum::Json(b.public()).into_response());
                    }
                    s => {
                        return Err(Error::Conflict {
                            message: format!(
                                "batch {id} is {}; only a validating or in_progress batch can be cancelled",
                                s.as_str()
                            ),
                            code: None,
                        });
                    }
                }
                b.status = BatchStatus::Cancelling;
                b.cancelling_at = Some(unix_secs());
                if batches
                    .records
                    .update(&b, rev)
                    .await
                    .map_err(store_error)?
                    .is_some()
                {
                    batches.wake.notify_one();
                    tracing::info!(batch = %id, "batch cancelling");
                    return Ok(axum::Json(b.public()).into_response());
                }
            }
            Err(store_error("the batch changed too often; retry"))
        }
        .await,
    )
}

/// `GET /admin/batches`: every key's batches, newest first, with the key's name.
pub async fn admin_list(
    State(state): State<SharedState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let list = batches.records.list().await.map_err(store_error)?;
            Ok(axum::Json(page(list, &q, |b| {
                let mut v = b.public();
                v["key"] = Value::String(b.owner_name.clone());
                v
            }))
            .into_response())
        }
        .await,
    )
}
