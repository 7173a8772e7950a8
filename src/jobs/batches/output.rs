//! Rendering the lines' answers, and writing a batch's output and error files from the recorded
//! answers ([`super::answers`]), one line per input line: a line answered 2xx goes to the output
//! file, any other to the error file. The files are streamed (a pipe into the file store), never
//! built in memory, and their ids derive from the batch id, so a finalisation cut short by a
//! crash writes them again.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;

use super::lines::{LineReader, custom_id_of};
use super::{Batch, BatchStatus, Batches, line_job_id, result_file_id};
use crate::clock::unix_secs as now_unix;
use crate::jobs::StoreError;
use crate::jobs::files::FileMeta;
use crate::jobs::host::SharedHost as SharedState;

#[derive(Serialize)]
struct Response<'a> {
    status_code: u16,
    request_id: &'a str,
    body: &'a RawValue,
}

#[derive(Serialize)]
struct OutLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<Response<'a>>,
    error: Option<Value>,
}

/// The HTTP status a failed line's error stands for (a job keeps the error, not the status).
pub(super) fn status_of(error: &Value) -> u16 {
    let ty = error.get("type").and_then(Value::as_str).unwrap_or("");
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    match (ty, code) {
        (_, "budget_exceeded") | ("rate_limit_error" | "insufficient_quota", _) => 429,
        (_, "model_not_found") | ("not_found_error", _) => 404,
        ("authentication_error", _) | (_, "invalid_api_key") => 401,
        ("permission_error", _) | (_, "model_not_allowed") => 403,
        ("invalid_request_error", _) => 400,
        ("timeout", _) => 504,
        ("upstream_error", _) => 502,
        ("service_unavailable", _) => 503,
        _ => 500,
    }
}

/// Why a line that did not run did not: the batch's stop reason.
fn not_run(b: &Batch) -> (&str, &'static str) {
    match b.stop.as_deref() {
        Some("budget_exceeded") => (
            "budget_exceeded",
            "this key's spend budget was used up before the line ran",
        ),
        Some("batch_expired") => (
            "batch_expired",
            "the batch's completion window ended before the line ran",
        ),
        Some("invalid_api_key") => (
            "invalid_api_key",
            "the batch's key no longer exists, is revoked or expired",
        ),
        Some("batch_cancelled") => (
            "batch_cancelled",
            "the batch was cancelled before the line ran",
        ),
        _ => ("line_not_run", "the line could not run"),
    }
}

fn render(line: &OutLine<'_>) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// A line's id in the files (`batch_req_…`), from its job id ([`line_job_id`]).
fn line_id(job_id: &str) -> String {
    format!(
        "batch_req_{}",
        job_id.strip_prefix("job_").unwrap_or(job_id)
    )
}

/// The output line of a line answered 2xx (`job_id`: the line's [`line_job_id`]).
pub fn ok_line(job_id: &str, custom_id: &str, request_id: &str, body: &RawValue) -> Bytes {
    render(&OutLine {
        id: line_id(job_id),
        custom_id,
        response: Some(Response {
            status_code: 200,
            request_id,
            body,
        }),
        error: None,
    })
}

/// The error-file line of a line that ran and failed with `error`.
pub fn failed_line(job_id: &str, custom_id: &str, request_id: &str, error: &Value) -> Bytes {
    let body = serde_json::value::to_raw_value(&serde_json::json!({"error": error}))
        .unwrap_or_else(|_| RawValue::NULL.to_owned());
    render(&OutLine {
        id: line_id(job_id),
        custom_id,
        response: Some(Response {
            status_code: status_of(error),
            request_id,
            body: &body,
        }),
        error: None,
    })
}

/// The error-file line of a line that never ran.
fn not_run_line(b: &Batch, index: u64, custom_id: &str) -> Bytes {
    let (code, message) = not_run(b);
    render(&OutLine {
        id: line_id(&line_job_id(&b.id, index)),
        custom_id,
        response: None,
        error: Some(serde_json::json!({"code": code, "message": message})),
    })
}

/// Which lines have a recorded answer (a bit per line).
pub struct Seen(Vec<u64>);

impl Seen {
    pub fn new(total: u64) -> Self {
        Self(vec![0; usize::try_from(total.div_ceil(64)).unwrap_or(0)])
    }

    /// Mark `index`; whether it was new.
    pub fn insert(&mut self, index: u64) -> bool {
        let (w, bit) = (
            usize::try_from(index / 64).unwrap_or(usize::MAX),
            index % 64,
        );
        match self.0.get_mut(w) {
            Some(word) => {
                let new = *word & (1 << bit) == 0;
                *word |= 1 << bit;
                new
            }
            None => false,
        }
    }

    pub fn contains(&self, index: u64) -> bool {
        let (w, bit) = (
            usize::try_from(index / 64).unwrap_or(usize::MAX),
            index % 64,
        );
        self.0.get(w).is_some_and(|word| word & (1 << bit) != 0)
    }
}

/// Lines gathered for a file are written once they reach this size (or at a group's end).
const FLUSH_AT: usize = 32 * 1024;

/// Write the files, set the counts and the end status: first the recorded answers (in the order
/// they were recorded), then a line for each line that never ran, read from the input.
pub async fn finalize(
    state: &SharedState,
    batches: &Batches,
    b: &mut Batch,
) -> Result<(), StoreError> {
    let input = batches
        .files
        .open(&b.input_file_id)
        .await?
        .ok_or_else(|| StoreError::new("the input file is gone"))?;
    let cap = usize::try_from(state.runtime().config.server.max_body_size.0)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let reader = LineReader::new(tokio::io::BufReader::with_capacity(64 * 1024, input), cap);
    let out_id = result_file_id(&b.id, "output");
    let err_id = result_file_id(&b.id, "error");
    let (mut out_w, out_r) = tokio::io::duplex(256 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(256 * 1024);
    let batch: &Batch = b;
    let answers = &batches.answers;
    let write = async move {
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut seen = Seen::new(batch.total);
        let mut cursor = answers.cursor(&batch.id);
        // A group's lines are gathered and written at once (a write per line into the pipes
        // cost more than the lines' bytes).
        let (mut out_buf, mut err_buf) = (
            Vec::with_capacity(FLUSH_AT + 2048),
            Vec::with_capacity(FLUSH_AT + 2048),
        );
        while let Some(group) = cursor.next().await? {
            for e in group {
                if !seen.insert(e.index) {
                    continue;
                }
                let to_ok = e.ok;
                let line = answers.line(e).await?;
                let (w, buf) = if to_ok {
                    ok += 1;
                    (&mut out_w, &mut out_buf)
                } else {
                    failed += 1;
                    (&mut err_w, &mut err_buf)
                };
                buf.extend_from_slice(&line);
                if buf.len() >= FLUSH_AT {
                    w.write_all(buf).await.map_err(StoreError::new)?;
                    buf.clear();
                }
            }
            for (w, buf) in [(&mut out_w, &mut out_buf), (&mut err_w, &mut err_buf)] {
                if !buf.is_empty() {
                    w.write_all(buf).await.map_err(StoreError::new)?;
                    buf.clear();
                }
            }
        }
        if ok + failed < batch.total {
            let mut reader = reader;
            while let Some(l) = reader.next().await.map_err(StoreError::new)? {
                if seen.contains(l.index) {
                    continue;
                }
                let custom_id = l.text.as_deref().map(custom_id_of).unwrap_or_default();
                err_w
                    .write_all(&not_run_line(batch, l.index, &custom_id))
                    .await
                    .map_err(StoreError::new)?;
            }
        }
        out_w.shutdown().await.map_err(StoreError::new)?;
        err_w.shutdown().await.map_err(StoreError::new)?;
        Ok::<_, StoreError>((ok, failed))
    };
    let (written, out, err) = tokio::join!(
        write,
        batches.files.put(&out_id, out_r, u64::MAX),
        batches.files.put(&err_id, err_r, u64::MAX),
    );
    let (ok, failed) = written?;
    let out_bytes = out.map_err(|e| StoreError::new(e.to_string()))?;
    let err_bytes = err.map_err(|e| StoreError::new(e.to_string()))?;
    let now = now_unix();
    for (id, bytes, which, keep) in [
        (&out_id, out_bytes, "output", out_bytes > 0),
        (&err_id, err_bytes, "error", err_bytes > 0),
    ] {
        if keep {
            batches
                .records
                .put_file(&FileMeta {
                    id: id.clone(),
                    bytes,
                    created_at: now,
                    filename: format!("{}_{which}.jsonl", b.id),
                    purpose: "batch_output".into(),
                    owner_id: b.owner_id.clone(),
                })
                .await?;
        } else {
            batches.files.delete(id).await?;
        }
    }
    b.output_file_id = (out_bytes > 0).then_some(out_id);
    b.error_file_id = (err_bytes > 0).then_some(err_id);
    b.completed = ok;
    b.failed = failed;
    if b.stop.as_deref() == Some("batch_cancelled") {
        b.status = BatchStatus::Cancelled;
        b.cancelled_at = Some(now);
    } else if b.stop.as_deref() == Some("batch_expired") {
        b.status = BatchStatus::Expired;
        b.expired_at = Some(now);
    } else {
        b.status = BatchStatus::Completed;
        b.completed_at = Some(now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_marks_each_line_once_and_ignores_indexes_past_the_end() {
        let mut s = Seen::new(130);
        assert!(s.insert(0) && s.insert(64) && s.insert(129));
        assert!(!s.insert(64), "a second answer for a line is not new");
        assert!(s.contains(129) && !s.contains(1) && !s.contains(128));
        assert!(!s.insert(1 << 20) && !s.contains(1 << 20));
    }

    #[test]
    fn a_failed_line_carries_the_status_its_error_stands_for() {
        let e = serde_json::json!({"message": "m", "type": "rate_limit_error", "code": "budget_exceeded"});
        let v: Value =
            serde_json::from_slice(&failed_line(&line_job_id("batch_x", 3), "c3", "req_1", &e))
                .unwrap();
        assert_eq!(v["custom_id"], "c3");
        assert_eq!(v["response"]["status_code"], 429);
        assert_eq!(v["response"]["request_id"], "req_1");
        assert_eq!(v["response"]["body"]["error"]["code"], "budget_exceeded");
        assert!(v["error"].is_null());
    }
}
