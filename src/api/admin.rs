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
