//! `ai-gateway mock-server`: the built-in `mock` provider over HTTP, speaking OpenAI's
//! (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, the pass-through endpoints
//! `/v1/completions`, `/v1/images/generations`, `/v1/audio/speech`, `/v1/audio/transcriptions`,
//! `/v1/moderations`, `/v1/rerank`, Azure's `/openai/deployments/{d}/…`), Anthropic's
//! (`/v1/messages`), Google Gemini's (`/v1beta/models/{model}:generateContent`,
//! `…:streamGenerateContent?alt=sse`, `…:batchEmbedContents`, in `gemini.rs`) and AWS Bedrock's
//! (`/model/{model}/converse`, `…/converse-stream`, in `bedrock.rs`) wire formats. A fast,
//! offline upstream for benchmarks and for users' own tests. The `/v1` prefix of OpenAI's and
//! Anthropic's paths is optional.
//!
//! Every format answers alike (`providers::mock::Echo`): the last user message echoed, streamed
//! one word per event, the same token counts. Keys and signatures are not checked (a SigV4-signed
//! request is taken like any other).

mod bedrock;
mod gemini;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::pipeline::{Converter, relay};
use crate::providers::{Op, UpstreamBody, mock};
use crate::translate;
use crate::wire::{self, Format};

#[derive(Clone, Copy)]
struct Mock {
    latency: Duration,
}

impl Mock {
    /// The configured latency, before an answer's first byte.
    async fn wait(self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// A 200 with this body and content type; a stream's chunks are sent as they come.
fn ok(body: UpstreamBody, content_type: &'static str) -> Response {
    let mut r = match body {
        UpstreamBody::Full(b) => Response::new(axum::body::Body::from(b)),
        UpstreamBody::Stream(s) => Response::new(relay(
            s,
            Converter::Pass(Format::OpenAi),
            far_deadline(),
            None,
            None,
        )),
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer(
    body: Result<UpstreamBody, crate::error::UpstreamError>,
    conv: Converter,
    anthropic: bool,
) -> Response {
    match body {
        Ok(UpstreamBody::Full(b)) => ok(UpstreamBody::Full(b), "application/json"),
        Ok(UpstreamBody::Stream(s)) => {
            let mut r = Response::new(relay(s, conv, far_deadline(), None, None));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
        Err(e) => {
            let body = if anthropic {
                json!({"type":"error","error":{"type":"invalid_request_error","message":e.message}})
            } else {
                json!({"error":{"message":e.message,"type":"invalid_request_error","param":null,"code":null}})
            };
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}

async fn chat(State(m): State<Mock>, body: Bytes) -> Response {
    m.wait().await;
    answer(
        mock::chat(&body, m.latency),
        Converter::Pass(Format::OpenAi),
        false,
    )
}

async fn embeddings(State(m): State<Mock>, body: Bytes) -> Response {
    m.wait().await;
    answer(
        mock::embeddings(&body),
        Converter::Pass(Format::OpenAi),
        false,
    )
}

async fn messages(State(m): State<Mock>, body: Bytes) -> Response {
    m.wait().await;
    let model = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let req = match translate::messages_request_to_chat(&body, &model, &mut Default::default()) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"type":"error","error":{"type":"invalid_request_error","message":e.to_string()}})),
            )
                .into_response();
        }
    };
    match mock::chat(&req, m.latency) {
        Ok(UpstreamBody::Full(b)) => match translate::chat_response_to_messages(&b, &model) {
            Ok(out) => ok(UpstreamBody::Full(Bytes::from(out)), "application/json"),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        other => answer(
            other,
            Converter::new(Format::OpenAi, Format::Anthropic, &model, true),
            true,
        ),
    }
}

/// A pass-through endpoint: the request read as the gateway reads it (a transcription's form
/// from its first boundary line), answered by `mock::passthrough` with its content type.
async fn pass(m: Mock, op: Op, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = if op == Op::Transcriptions {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        wire::parse_multipart(content_type, &body)
    } else {
        wire::parse_passthrough(&body, &[]).map(|h| (h, body))
    };
    let (head, body) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return answer(
                Err(invalid(e.to_string())),
                Converter::Pass(Format::OpenAi),
                false,
            );
        }
    };
    let answer = match mock::passthrough(op, &body, m.latency) {
        Ok(UpstreamBody::Full(b)) => {
            if !m.latency.is_zero() {
                tokio::time::sleep(m.latency).await;
            }
            Response::new(axum::body::Body::from(b))
        }
        Ok(UpstreamBody::Stream(s)) => Response::new(axum::body::Body::from_stream(s)),
        Err(e) => return answer(Err(e), Converter::Pass(Format::OpenAi), false),
    };
    let content_type = match head.content_type(op) {
        _ if head.stream => "text/event-stream",
        Some(ct) => ct,
        None => "application/json",
    };
    let mut answer = answer;
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

fn invalid(message: String) -> crate::error::UpstreamError {
    crate::error::UpstreamError::new("mock", crate::error::UpstreamKind::Status(400), message)
}

async fn models() -> Response {
    axum::Json(json!({"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"ai-gateway"}]})).into_response()
}

/// The mock server's routes.
pub fn router(latency: Duration) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/openai/deployments/{d}/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/openai/deployments/{d}/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/messages", post(messages))
        .merge(passthrough_routes())
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1beta/models/{*call}", post(gemini::call))
        .route("/v1/models/{*call}", post(gemini::call))
        .route("/model/{model}/converse", post(bedrock::converse))
        .route(
            "/model/{model}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route("/health", get(|| async { "ok" }))
        // OpenAI takes uploads of 25 MB; axum's default limit is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
        .with_state(Mock { latency })
}

/// The pass-through endpoints, at `/v1/…`, without `/v1` and at Azure's deployment paths.
fn passthrough_routes() -> Router<Mock> {
    let mut r = Router::new();
    for op in [
        Op::Completions,
        Op::Images,
        Op::Speech,
        Op::Transcriptions,
        Op::Moderations,
        Op::Rerank,
    ] {
        let tail = op.path().trim_start_matches("/v1/");
        let handler = move |State(m): State<Mock>, headers: HeaderMap, body: Bytes| {
            pass(m, op, headers, body)
        };
        for path in [
            format!("/v1/{tail}"),
            format!("/{tail}"),
            format!("/openai/deployments/{{d}}/{tail}"),
        ] {
            r = r.route(&path, post(handler));
        }
    }
    r
}

/// Serve the mock on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, latency: Duration) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "mock server ready");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(latency)).await
}
