//! `/admin/*` (master key only): configuration reload for now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::SharedState;

/// `POST /admin/reload`: re-read the file; an invalid one is refused with its errors.
pub async fn reload(State(state): State<SharedState>) -> Response {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.reload()).await {
        Ok(Ok(())) => axum::Json(json!({"status": "reloaded"})).into_response(),
        Ok(Err(errors)) => {
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
        Err(_) => crate::error::Error::Internal("reload task failed".into())
            .into_response_for(crate::error::Flavor::OpenAi),
    }
}

/// `GET /admin/deployments`: each model's deployments with their circuit state, latency EWMA,
/// error rate, in-flight and request counts.
pub async fn deployments(State(state): State<SharedState>) -> Response {
    let rt = state.runtime.load();
    let now = crate::router::state::now_ms();
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
            json!({"model": m.name, "routing": m.routing, "fallbacks": m.fallbacks, "retries": m.retries, "deployments": deployments})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": models})).into_response()
}
