//! `GET /health` (liveness) and `GET /ready` (readiness with each dependency's state; 503
//! `draining` from SIGTERM until the process exits).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::context::SharedState;

pub async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub async fn ready(State(state): State<SharedState>) -> Response {
    let rt = state.runtime.load();
    let redis = match &state.redis {
        None => "unused",
        Some(r) if r.is_healthy() => "ok",
        Some(_) => "down",
    };
    let nats = match state.jobs.get() {
        Some(j) => j.nats_state(),
        None if rt.config.state.nats_url.is_some() => "down",
        None => "unused",
    };
    let status = if redis == "down" || nats == "down" {
        "degraded"
    } else {
        "ok"
    };
    if state.connections.is_draining() {
        // Probes keep being answered until the drain ends; each on a connection of its own.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (axum::http::header::RETRY_AFTER, "1"),
                (axum::http::header::CONNECTION, "close"),
            ],
            axum::Json(json!({"status": "draining", "redis": redis, "nats": nats})),
        )
            .into_response();
    }
    axum::Json(json!({"status": status, "redis": redis, "nats": nats})).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<SharedState>) -> Response {
    let rt = state.runtime.load();
    let body = state
        .metrics
        .as_ref()
        .map(|h| {
            rt.publish_gauges();
            crate::metrics::render(h)
        })
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
