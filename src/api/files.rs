//! `POST /v1/files` (multipart, `purpose=batch`), `GET /v1/files`, `GET /v1/files/{id}`,
//! `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`: OpenAI's shapes. Uploads and
//! downloads are streamed; a file belongs to the key (by id) that uploaded it, or that created
//! the batch that wrote it, and is 404 for every other key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde_json::json;

use super::listing::{self, answer, owned_by};
use crate::api::context::SharedState;
use crate::auth::Caller;
use crate::error::Error;
use crate::jobs::batches::Batches;
use crate::jobs::files::{FileMeta, PutError, new_file_id, valid_file_id};

/// The batch system, or the 503 when the job store could not be opened.
pub(crate) fn batches_of(state: &SharedState) -> Result<Arc<Batches>, Error> {
    state
        .jobs
        .get()
        .map(|j| j.batches.clone())
        .ok_or_else(|| {
            Error::unavailable(
                "files and batches are not available: the job store could not be opened (see the gateway's log)",
            )
        })
}

pub(crate) fn store_error(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("the batch store is unavailable: {e}"))
}

fn no_file(id: &str) -> Error {
    Error::NoSuch(format!("no file {id} for this key"))
}

/// A file `caller` may see.
async fn owned(batches: &Batches, caller: &Caller, id: &str) -> Result<FileMeta, Error> {
    if !valid_file_id(id) {
        return Err(no_file(id));
    }
    owned_by(
        batches.records.get_file(id).await.map_err(store_error)?,
        caller,
        |m| m.owner_id.as_str(),
        || no_file(id),
    )
}

pub async fn upload(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    answer(upload_inner(state, caller, req).await)
}

async fn upload_inner(state: SharedState, caller: Caller, req: Request) -> Result<Response, Error> {
    let batches = batches_of(&state)?;
    let limit = state.runtime.load().config.batches.max_file_size.0;
    let (parts, body) = req.into_parts();
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ctype).map_err(|_| {
        Error::invalid("POST /v1/files takes multipart/form-data with the fields purpose and file")
    })?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit.saturating_add(64 * 1024)) {
        return Err(Error::TooLarge { limit });
    }
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut purpose: Option<String> = None;
    let mut stored: Option<FileMeta> = None;
    let bad_form =
        |e: multer::Error| Error::invalid(format!("the multipart body is not valid: {e}"));
    let result = async {
        while let Some(field) = form.next_field().await.map_err(bad_form)? {
            match field.name() {
                Some("purpose") => {
                    let p = field.text().await.map_err(bad_form)?;
                    if p != "batch" {
                        return Err(Error::invalid(format!(
                            "purpose {p:?} is not supported: this gateway stores files for batches (purpose \"batch\")"
                        )));
                    }
                    purpose = Some(p);
                }
                Some("file") if stored.is_none() => {
                    let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                    let id = new_file_id();
                    let reader = tokio_util::io::StreamReader::new(
                        field.map_err(std::io::Error::other),
                    );
                    let bytes = batches
                        .files
                        .put(&id, reader, limit)
                        .await
                        .map_err(|e| match e {
                            PutError::TooLarge(l) => Error::TooLarge { limit: l },
                            PutError::Read(m) => Error::invalid(format!("could not read the file: {m}")),
                            PutError::Store(e) => store_error(e),
                        })?;
                    stored = Some(FileMeta {
                        id,
                        bytes,
                        created_at: crate::clock::unix_secs(),
                        filename,
                        purpose: "batch".into(),
                        owner_id: caller.id().to_owned(),
                    });
                }
                _ => {
                    // Other fields are read and ignored.
                    let mut f = field;
                    while f.chunk().await.map_err(bad_form)?.is_some() {}
                }
            }
        }
        Ok(())
    }
    .await;
    let meta = match (result, purpose.is_some(), stored) {
        (Ok(()), true, Some(meta)) => meta,
        (Ok(()), true, None) => return Err(Error::invalid("the field file is missing")),
        (r, _, s) => {
            if let Some(m) = s {
                let _ = batches.files.delete(&m.id).await;
            }
            return Err(r.err().unwrap_or_else(|| {
                Error::invalid("the field purpose is missing (use \"batch\")")
            }));
        }
    };
    if let Err(e) = batches.records.put_file(&meta).await {
        let _ = batches.files.delete(&meta.id).await;
        return Err(store_error(e));
    }
    tracing::info!(file = %meta.id, bytes = meta.bytes, "file uploaded");
    Ok(axum::Json(meta.public()).into_response())
}

pub async fn list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let mut files: Vec<FileMeta> = batches
                .records
                .list_files()
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|m| caller.owns(&m.owner_id))
                .filter(|m| q.get("purpose").is_none_or(|p| *p == m.purpose))
                .collect();
            files.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            if q.get("order").is_some_and(|o| o == "asc") {
                files.reverse();
            }
            if let Some(after) = q.get("after")
                && let Some(pos) = files.iter().position(|m| &m.id == after)
            {
                files.drain(..=pos);
            }
            Ok(axum::Json(listing::page(
                files,
                &q,
                (10_000, 10_000),
                |m| m.id.as_str(),
                FileMeta::public,
            ))
            .into_response())
        }
        .await,
    )
}

pub async fn get(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let m = owned(&batches, &caller, &id).await?;
            Ok(axum::Json(m.public()).into_response())
        }
        .await,
    )
}

pub async fn content(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let m = owned(&batches, &caller, &id).await?;
            let reader = batches
                .files
                .open(&m.id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| no_file(&id))?;
            let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                reader,
                64 * 1024,
            ));
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, m.bytes.to_string()),
                ],
                body,
            )
                .into_response())
        }
        .await,
    )
}

pub async fn delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let batches = batches_of(&state)?;
            let m = owned(&batches, &caller, &id).await?;
            let in_use = batches
                .records
                .list()
                .await
                .map_err(store_error)?
                .into_iter()
                .any(|b| !b.status.is_terminal() && b.input_file_id == m.id);
            if in_use {
                return Err(Error::Conflict {
                    message: format!("file {id} is the input of a batch that has not ended; cancel the batch first"),
                    code: None,
                });
            }
            batches.records.delete_file(&m.id).await.map_err(store_error)?;
            batches.files.delete(&m.id).await.map_err(store_error)?;
            Ok(axum::Json(json!({"id": m.id, "object": "file", "deleted": true})).into_response())
        }
        .await,
    )
}
