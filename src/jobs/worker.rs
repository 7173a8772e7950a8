//! Running jobs: [`execute`] sends a stored request through the same pipeline as a synchronous
//! one (routing, cache, retries, fallbacks, limits) and captures its answer; the embedded
//! store's side of the worker pool (`pool::Queue`) and its webhook dispatcher live here too
//! (JetStream's are in `nats/work.rs`).
//!
//! Rate limits wait rather than fail: a `429 rate_limit_error` from the pipeline makes the job
//! sleep for the `retry-after` and try again without spending an attempt. Other failures with a
//! status ≥ 500 (or 408) are retried as new attempts after a backoff, up to `jobs.max_attempts`;
//! caller errors (4xx) end the job at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::embedded::Embedded;
use super::pool::{Flow, Queue, Settled, settle};
use super::{Job, Jobs, WebhookState, WebhookStatus, backoff};
use crate::auth::Caller;
use crate::clock::{unix_ms, unix_secs};
use crate::jobs::host::SharedHost as SharedState;
use crate::webhooks::Attempt;
use crate::wire::Endpoint;

/// What running a job once came to.
pub enum Outcome {
    Succeeded(Box<RawValue>),
    Failed { error: Value, retryable: bool },
}

/// The error of a job whose process stopped while it ran, with no attempts left.
pub fn interrupted_error(attempts: u32) -> Value {
    json!({
        "message": format!("the job was interrupted {attempts} time(s) (the gateway running it stopped) and has no attempts left"),
        "type": "job_interrupted",
        "param": null,
        "code": null,
    })
}

fn headers_of(job: &Job) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in &job.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

/// The key a job runs as (see [`crate::keys::KeyStore::caller_by_id`]); `None` when it is gone,
/// revoked or expired.
async fn caller_of(state: &SharedState, job: &Job) -> Result<Option<Caller>, crate::error::Error> {
    state
        .keys()
        .caller_by_id(&state.runtime().auth, &job.caller_id)
        .await
}

/// The job's `traceparent`, if its submission carried one.
fn traceparent_of(job: &Job) -> Option<&str> {
    job.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        .map(|(_, v)| v.as_str())
}

/// Run a job once through the pipeline, as its key, in a span of its own (`telemetry::job_span`).
pub async fn execute(state: &SharedState, job: &Job, body: Bytes) -> Outcome {
    let span = crate::telemetry::job_span(
        &job.id,
        &job.endpoint,
        job.attempts.max(1),
        traceparent_of(job),
    );
    let outcome = tracing::Instrument::instrument(run_once(state, job, body), span.clone()).await;
    let error_type = match &outcome {
        Outcome::Succeeded(_) => None,
        Outcome::Failed { error, .. } => {
            Some(error.get("type").and_then(Value::as_str).unwrap_or(""))
        }
    };
    crate::telemetry::job_end(&span, error_type);
    outcome
}

async fn run_once(state: &SharedState, job: &Job, body: Bytes) -> Outcome {
    let Some(endpoint) = Endpoint::from_path(&job.endpoint) else {
        return Outcome::Failed {
            error: json!({"message": format!("unknown endpoint {}", job.endpoint), "type": "invalid_request_error", "param": null, "code": null}),
            retryable: false,
        };
    };
    let caller = match caller_of(state, job).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Outcome::Failed {
                error: json!({"message": "the key that submitted this job no longer exists, is revoked or expired", "type": "authentication_error", "param": null, "code": "invalid_api_key"}),
                retryable: false,
            };
        }
        Err(e) => {
            return Outcome::Failed {
                error: json!({"message": format!("cannot look the job's key up: {}", e.client_message()), "type": "service_unavailable", "param": null, "code": null}),
                retryable: true,
            };
        }
    };
    let headers = headers_of(job);
    loop {
        let resp = state
            .clone()
            .run_call(&caller, &job.request_id, &headers, body.clone(), endpoint)
            .await;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let timeout = state.runtime().config.server.request_timeout.get();
        let bytes = match tokio::time::timeout(timeout, resp.into_body().collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) => {
                return Outcome::Failed {
                    error: json!({"message": format!("the answer broke off: {e}"), "type": "upstream_error", "param": null, "code": null}),
                    retryable: true,
                };
            }
            Err(_) => {
                return Outcome::Failed {
                    error: json!({"message": "the request did not finish within its deadline", "type": "timeout", "param": null, "code": null}),
                    retryable: true,
                };
            }
        };
        if status.is_success() {
            return match serde_json::from_slice::<Box<RawValue>>(&bytes) {
                Ok(raw) => Outcome::Succeeded(raw),
                Err(e) => Outcome::Failed {
                    error: json!({"message": format!("the answer was not JSON: {e}"), "type": "upstream_error", "param": null, "code": null}),
                    retryable: true,
                },
            };
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({"error": {"message": String::from_utf8_lossy(&bytes), "type": "upstream_error"}}),
        );
        let error = v.get("error").cloned().unwrap_or(v);
        let ty = error.get("type").and_then(Value::as_str).unwrap_or("");
        // limits: a rate limit makes the job wait, not fail (a budget does fail it).
        if status.as_u16() == 429 && ty == "rate_limit_error" {
            let wait = retry_after
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(100), Duration::from_secs(60));
            tracing::debug!(job = %job.id, wait_ms = wait.as_millis() as u64, "job waits for a rate limit");
            tokio::time::sleep(wait).await;
            continue;
        }
        let retryable = status.is_server_error() || status.as_u16() == 408;
        return Outcome::Failed { error, retryable };
    }
}

/// The delay before attempt `attempts + 1` of a job that failed with a retryable error.
pub fn retry_delay(state: &SharedState, attempts: u32) -> Duration {
    let r = &state.runtime().config.resilience;
    backoff(attempts, r.backoff_initial.get(), r.backoff_max.get())
}

/// One webhook delivery attempt for an ended job: its new webhook state, and the delay before
/// the next attempt if one follows.
pub async fn deliver_webhook(
    state: &SharedState,
    jobs: &Jobs,
    job: &Job,
) -> Option<(WebhookState, Option<Duration>)> {
    let mut w = job.webhook.clone()?;
    if w.status != WebhookStatus::Pending {
        return None;
    }
    let cfg = state.runtime().config.jobs.webhook.clone();
    let attempt_no = w.attempts + 1;
    let mut shown = job.clone();
    if let Some(sw) = shown.webhook.as_mut() {
        sw.attempts = attempt_no;
        sw.next_attempt_at = None;
    }
    let body = serde_json::to_vec(&shown.public()).unwrap_or_default();
    // One client span per delivery attempt (a no-op span when trace export is off).
    let span = crate::telemetry::webhook_span(&w.url, &job.id, attempt_no, traceparent_of(job));
    let result = tracing::Instrument::instrument(
        jobs.webhooks.attempt(
            &w.url,
            &job.id,
            &body,
            cfg.timeout.get(),
            cfg.allow_private_networks,
        ),
        span.clone(),
    )
    .await;
    span.record("gateway.webhook.outcome", result.outcome());
    metrics::counter!(crate::metrics::WEBHOOKS, "outcome" => result.outcome()).increment(1);
    w.attempts = attempt_no;
    w.next_attempt_at = None;
    let next = match result {
        Attempt::Delivered => {
            w.status = WebhookStatus::Delivered;
            w.last_error = None;
            None
        }
        Attempt::Stop { reason, .. } => {
            w.status = WebhookStatus::Failed;
            w.last_error = Some(reason);
            None
        }
        Attempt::Retry {
            reason,
            retry_after,
            ..
        } => {
            w.last_error = Some(reason);
            if attempt_no >= cfg.max_attempts {
                w.status = WebhookStatus::Failed;
                None
            } else {
                let mut d = backoff(attempt_no, cfg.backoff_initial.get(), cfg.backoff_max.get());
                if let Some(ra) = retry_after {
                    d = d.max(ra.min(cfg.backoff_max.get()));
                }
                w.next_attempt_at = Some(unix_secs() + d.as_secs());
                Some(d)
            }
        }
    };
    if w.status != WebhookStatus::Pending {
        tracing::info!(job = %job.id, status = ?w.status, attempts = w.attempts, "webhook delivery ended");
    }
    Some((w, next))
}

/// Count (and log) a job that ended here.
pub fn count_end(job: &Job) {
    metrics::counter!(crate::metrics::JOBS, "status" => job.status.as_str()).increment(1);
    tracing::info!(
        target: "jobs",
        job = %job.id,
        status = job.status.as_str(),
        attempts = job.attempts,
        model = %job.model,
        endpoint = %job.endpoint,
        request_id = %job.request_id,
        "job ended"
    );
}

fn ttl_ms(state: &SharedState) -> u64 {
    u64::try_from(state.runtime().config.jobs.result_ttl.get().as_millis()).unwrap_or(u64::MAX)
}

/// The embedded store as the worker pool's queue (`pool::run`).
impl Queue for Embedded {
    type Taken = (Job, Bytes);
    const DRAINING: Option<&'static str> =
        Some("job workers stopped taking jobs; waiting for running ones");

    async fn take_jobs(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        stop: &mut watch::Receiver<bool>,
        start: &mut (dyn FnMut(Self::Taken, OwnedSemaphorePermit) + Send),
    ) -> Flow {
        match self.take(permits.len()).await {
            Ok((taken, next)) if taken.is_empty() => {
                drop(permits);
                let wait_ms = next
                    .map(|due| due.saturating_sub(unix_ms()))
                    .unwrap_or(1000)
                    .clamp(2, 1000);
                tokio::select! {
                    () = self.work.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                    _ = stop.changed() => return Flow::Stop,
                }
            }
            Ok((taken, _)) => {
                for (job, permit) in taken.into_iter().zip(permits) {
                    start(job, permit);
                }
            }
            Err(e) => {
                drop(permits);
                tracing::error!(error = %e, "cannot take jobs from the store; retrying in 1s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return Flow::Stop,
                }
            }
        }
        Flow::Go
    }

    async fn run_job(
        self: Arc<Self>,
        state: SharedState,
        (mut job, body): Self::Taken,
        mut hard: watch::Receiver<bool>,
    ) {
        let outcome = tokio::select! {
            o = execute(&state, &job, body) => Some(o),
            _ = hard.wait_for(|v| *v) => None,
        };
        let max_attempts = state.runtime().config.jobs.max_attempts;
        match settle(&state, &mut job, outcome, max_attempts) {
            Settled::Release => {
                if let Err(e) = self.requeue(job, unix_ms()).await {
                    tracing::warn!(error = %e, "could not release a running job; it is re-queued at the next start");
                }
            }
            Settled::Retry(delay) => {
                let due = unix_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(0));
                if let Err(e) = self.requeue(job, due).await {
                    tracing::error!(error = %e, "could not re-queue a job; it is re-queued at the next start");
                }
            }
            Settled::End => {
                let ended = job.clone();
                match self.finish(job, ttl_ms(&state)).await {
                    Ok(true) => count_end(&ended),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "could not store a job's result; it runs again at the next start");
                    }
                }
            }
        }
    }
}

/// The embedded backend's webhook dispatcher: delivers due webhooks (at most 64 at a time) and
/// reschedules failed ones, until `stop`.
pub async fn run_embedded_webhooks(
    state: SharedState,
    jobs: Arc<Jobs>,
    store: Arc<Embedded>,
    mut stop: watch::Receiver<bool>,
) {
    let sem = Arc::new(Semaphore::new(64));
    let busy: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        let free = sem.available_permits();
        let snapshot = busy.lock().map(|b| b.clone()).unwrap_or_default();
        let (due, next) = if free == 0 {
            (Vec::new(), None)
        } else {
            match store.webhooks_due(free, snapshot).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read due webhooks");
                    (Vec::new(), None)
                }
            }
        };
        if due.is_empty() {
            let wait_ms = next
                .map(|d| d.saturating_sub(unix_ms()))
                .unwrap_or(1000)
                .clamp(2, 1000);
            tokio::select! {
                () = store.webhook_work.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = stop.changed() => break,
            }
            continue;
        }
        for (old_due, job) in due {
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                break;
            };
            if let Ok(mut b) = busy.lock() {
                b.insert(job.id.clone());
            }
            let (state, jobs, store, busy) =
                (state.clone(), jobs.clone(), store.clone(), busy.clone());
            tasks.spawn(async move {
                let id = job.id.clone();
                match deliver_webhook(&state, &jobs, &job).await {
                    Some((w, next)) => {
                        let next_due = next.map(|d| {
                            unix_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(0))
                        });
                        if let Err(e) = store.webhook_done(&id, old_due, w, next_due).await {
                            tracing::error!(error = %e, "cannot record a webhook attempt");
                        }
                    }
                    None => {
                        // Nothing to deliver (no webhook, or it already ended): drop the entry.
                        if let Some(w) = job.webhook.clone()
                            && let Err(e) = store.webhook_done(&id, old_due, w, None).await
                        {
                            tracing::error!(error = %e, "cannot record a webhook attempt");
                        }
                    }
                }
                if let Ok(mut b) = busy.lock() {
                    b.remove(&id);
                }
                store.webhook_work.notify_one();
                drop(permit);
            });
        }
    }
    // Deliveries in flight finish (each is bounded by jobs.webhook.timeout).
    while tasks.join_next().await.is_some() {}
}

/// Drop expired embedded records once a minute.
pub async fn run_embedded_expiry(store: Arc<Embedded>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
        loop {
            match store.expire().await {
                Ok(n) if n >= 1000 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot expire old job records");
                    break;
                }
            }
        }
    }
}
