//! `/admin/*` (master key only): configuration reload for now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::context::SharedState;
use crate::api::error::Render;

/// `POST /admin/reload`: re-read the file; an invalid one is refused with its errors. A valid one
/// is applied, and the answer lists the changed keys that need a restart (`restart_required`).
pub async fn reload(State(state): State<SharedState>) -> Response {
    match crate::api::context::reload(&state).await {
        Ok(restart_required) => axum::Json(json!({
            "status": "reloaded",
            "restart_required": restart_required,
        }))
        .into_response(),
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "reload refused; the running configuration stays");
            }
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {
                    "message": format!("the configuration was not reloaded: {}", errors.join("; ")),
                    "type": "invalid_request_error", "param": null, "code": "invalid_config",
                    "errors": errors,
                }})),
            )
                .into_response()
        }
    }
}

/// `GET /admin/deployments`: each model's deployments with their circuit state, latency EWMA,
/// error rate, in-flight and request counts.
pub async fn deployments(State(state): State<SharedState>) -> Response {
    let rt = state.runtime.load();
    let now = crate::clock::monotonic_ms();
    let models: Vec<_> = rt
        .model_names
        .iter()
        .filter_map(|name| rt.models.get(name))
        .map(|m| {
            let deployments: Vec<_> = m
                .deployments
                .iter()
                .map(|d| {
                    let s = &d.state;
                    let requests = s.requests();
                    json!({
                        "provider": d.provider.name,
                        "provider_type": d.provider.type_name(),
                        "model": d.model,
                        "priority": d.priority,
                        "weight": d.weight,
                        "circuit_state": s.breaker.state().as_str(),
                        "circuit_retry_in_ms": s.breaker.retry_in_ms(now),
                        "latency_ewma_ms": s.latency_ms(),
                        "error_rate": if requests == 0 { 0.0 } else { s.failures() as f64 / requests as f64 },
                        "failures": s.failures(),
                        "in_flight": s.in_flight(),
                        "requests": requests,
                        "rpm": d.rpm,
                        "tpm": d.tpm,
                        "input_cost_per_mtok": d.input_cost_per_mtok,
                        "output_cost_per_mtok": d.output_cost_per_mtok,
                    })
                })
                .collect();
            json!({"model": &*m.name, "routing": m.routing, "fallbacks": m.fallbacks, "retries": m.retries, "deployments": deployments})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": models})).into_response()
}

fn admin_error(e: crate::error::Error) -> Response {
    e.into_response_for(crate::wire::Format::OpenAi)
}

/// A key record as the admin API shows it: never the key or its hash; spend and usage of the
/// current period.
async fn key_view(state: &SharedState, rec: &crate::keys::KeyRecord) -> serde_json::Value {
    let period = rec
        .budget_period
        .as_deref()
        .and_then(|p| p.parse::<crate::config::Dur>().ok())
        .map_or(crate::config::DEFAULT_BUDGET_PERIOD, |d| d.get());
    let totals = state.services.ledger.spend.totals(&rec.id, period).await;
    let (start, end) = crate::limits::spend::period_bounds(period);
    json!({
        "id": rec.id, "object": "gateway.key", "name": rec.name, "key_prefix": rec.key_prefix,
        "source": "admin", "models": rec.models, "rpm": rec.rpm, "tpm": rec.tpm,
        "budget_usd": rec.budget_usd, "budget_period": rec.budget_period,
        "expires_at": rec.expires_at, "metadata": rec.metadata, "created_at": rec.created_at,
        "revoked": rec.revoked,
        "spend_usd": totals.spend_usd,
        "usage": {"period_start": start / 1000, "period_end": end / 1000, "requests": totals.requests,
                  "input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens},
    })
}

fn parse_change(body: &[u8]) -> Result<crate::keys::KeyChange, crate::error::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(crate::keys::KeyChange::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| crate::error::Error::invalid(format!("invalid key body: {e}")))
}

/// `POST /admin/keys`: create a key; the answer carries the plaintext `key`, shown this once.
pub async fn create_key(State(state): State<SharedState>, body: axum::body::Bytes) -> Response {
    let change = match parse_change(&body) {
        Ok(c) => c,
        Err(e) => return admin_error(e),
    };
    let file = state.runtime.load_full();
    match state.keys.create(change, &file.auth).await {
        Ok((rec, key)) => {
            let mut v = key_view(&state, &rec).await;
            v["key"] = json!(key);
            tracing::info!(key_id = %rec.id, name = %rec.name, "key created");
            (StatusCode::CREATED, axum::Json(v)).into_response()
        }
        Err(e) => admin_error(e),
    }
}

/// `GET /admin/keys`: admin-created keys, then the file's keys (read-only, `source: config`).
pub async fn list_keys(State(state): State<SharedState>) -> Response {
    let records = match state.keys.list().await {
        Ok(r) => r,
        Err(e) => return admin_error(e),
    };
    let mut data = Vec::with_capacity(records.len());
    for r in &records {
        data.push(key_view(&state, r).await);
    }
    let rt = state.runtime.load_full();
    let mut statics: Vec<_> = rt.auth.static_keys().cloned().collect();
    statics.sort_by(|a, b| a.name.cmp(&b.name));
    for k in statics {
        let totals = state.services.ledger.spend.totals(&k.id, k.period()).await;
        data.push(json!({
            "id": k.id, "object": "gateway.key", "name": &*k.name, "source": "config",
            "rpm": k.rpm, "tpm": k.tpm, "budget_usd": k.budget_usd,
            "spend_usd": totals.spend_usd,
            "usage": {"requests": totals.requests, "input_tokens": totals.input_tokens,
                      "output_tokens": totals.output_tokens},
        }));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get_key(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match state.keys.get(&id).await {
        Ok(Some(rec)) => axum::Json(key_view(&state, &rec).await).into_response(),
        Ok(None) => admin_error(crate::error::Error::NotFound),
        Err(e) => admin_error(e),
    }
}

pub async fn update_key(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let change = match parse_change(&body) {
        Ok(c) => c,
        Err(e) => return admin_error(e),
    };
    let file = state.runtime.load_full();
    match state.keys.update(&id, change, &file.auth).await {
        Ok(rec) => axum::Json(key_view(&state, &rec).await).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `DELETE /admin/keys/{id}`: revoke (every replica refuses it within a second).
pub async fn revoke_key(
    State(state): State<SharedState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match state.keys.revoke(&id).await {
        Ok(rec) => {
            tracing::info!(key_id = %rec.id, "key revoked");
            axum::Json(key_view(&state, &rec).await).into_response()
        }
        Err(e) => admin_error(e),
    }
}
