//! Upstream providers: where a deployment's request goes and how it is authenticated.
//!
//! Four types, one enum (no trait objects): `openai` (and any OpenAI-compatible server), `azure`
//! (OpenAI's wire format behind Azure's URL scheme and `api-key` header), `anthropic` (its own
//! wire format; the pipeline translates) and the built-in `mock`. Each provider owns one pooled
//! HTTP client ([`http::Http`]: keep-alive, `TCP_NODELAY`, HTTP/2 by ALPN) shared by every
//! request to it.
//! A provider never sees the caller's gateway key: it sends its own.

pub mod aws;
pub mod http;
pub mod mock;
pub mod pool;

use std::pin::Pin;
use std::sync::Once;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ProviderConfig, ProviderType};
use crate::error::{UpstreamError, UpstreamKind};
use crate::translate;
use crate::wire::Format;

/// A body of bytes arriving from upstream.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A successful upstream answer.
pub enum UpstreamBody {
    Full(Bytes),
    Stream(ByteStream),
}

/// What is being asked of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
    /// `/v1/moderations` (OpenAI-type providers; what moderation guardrails call).
    Moderations,
}

/// Per-call context forwarded upstream.
#[derive(Debug, Clone, Default)]
pub struct CallCtx {
    pub request_id: String,
    pub traceparent: Option<HeaderValue>,
    /// The client's `anthropic-beta` header, forwarded to Anthropic upstreams only.
    pub anthropic_beta: Option<HeaderValue>,
    /// Where the request's tokens and cost are reported for its access-log line and span.
    pub usage: Option<std::sync::Arc<crate::telemetry::Usage>>,
}

#[derive(Debug, Clone)]
enum Kind {
    OpenAi,
    Azure { api_version: String },
    Anthropic,
    Mock { latency: Duration },
}

/// One configured provider. (`Debug` is written by hand: it never shows the key.)
pub struct Provider {
    pub name: String,
    kind: Kind,
    base_url: String,
    headers: HeaderMap,
    pub timeout: Duration,
    http: http::Http,
    /// The provider's key, only to remove it from upstream error messages.
    secret: Option<String>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

pub use crate::clock::unix_secs as now_unix;

static CRYPTO: Once = Once::new();

/// The base URL requests to this provider start with (the configured one, or the provider
/// type's public API), without a trailing `/`.
pub fn base_url_of(cfg: &ProviderConfig) -> String {
    let default_base = match cfg.kind {
        ProviderType::Openai => "https://api.openai.com/v1",
        ProviderType::Anthropic => "https://api.anthropic.com",
        ProviderType::Azure | ProviderType::Mock => "",
    };
    cfg.base_url
        .as_deref()
        .unwrap_or(default_base)
        .trim_end_matches('/')
        .to_owned()
}

/// Build the HTTP client used for one provider at `base_url`.
pub fn http_client(connect_timeout: Duration, base_url: &str) -> Result<http::Http, String> {
    install_crypto();
    http::Http::new(connect_timeout, base_url)
}

/// Install rustls's crypto provider (ring) for the process, once.
pub fn install_crypto() {
    CRYPTO.call_once(|| {
        // Ignored when a provider was already installed by another caller.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Provider {
    pub fn new(cfg: &ProviderConfig, http: http::Http) -> Result<Self, String> {
        let kind = match cfg.kind {
            ProviderType::Openai => Kind::OpenAi,
            ProviderType::Azure => Kind::Azure {
                api_version: cfg
                    .api_version
                    .clone()
                    .unwrap_or_else(|| "2024-10-21".to_owned()),
            },
            ProviderType::Anthropic => Kind::Anthropic,
            ProviderType::Mock => Kind::Mock {
                latency: cfg.latency.map(|d| d.get()).unwrap_or_default(),
            },
        };
        let base_url = base_url_of(cfg);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let key = cfg.api_key.as_deref().filter(|k| !k.is_empty());
        match (&kind, key) {
            (Kind::OpenAi, Some(k)) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    format!(
                        "providers {}: api_key has characters a header cannot carry",
                        cfg.name
                    )
                })?;
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            (Kind::Azure { .. }, Some(k)) => {
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    format!(
                        "providers {}: api_key has characters a header cannot carry",
                        cfg.name
                    )
                })?;
                v.set_sensitive(true);
                headers.insert("api-key", v);
            }
            (Kind::Anthropic, Some(k)) => {
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    format!(
                        "providers {}: api_key has characters a header cannot carry",
                        cfg.name
                    )
                })?;
                v.set_sensitive(true);
                headers.insert("x-api-key", v);
            }
            _ => {}
        }
        if matches!(kind, Kind::Anthropic) {
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                format!(
                    "providers {}: headers: \"{k}\" is not a header name",
                    cfg.name
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                format!(
                    "providers {}: headers.{k}: not a valid header value",
                    cfg.name
                )
            })?;
            headers.insert(name, value);
        }
        Ok(Self {
            name: cfg.name.clone(),
            kind,
            base_url,
            headers,
            timeout: cfg.timeout.get(),
            http,
            secret: key.map(str::to_owned),
        })
    }

    /// The wire format this provider speaks.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Anthropic => Format::Anthropic,
            _ => Format::OpenAi,
        }
    }

    /// The provider type's name as in the configuration (and the GenAI `gen_ai.provider.name`).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::OpenAi => "openai",
            Kind::Azure { .. } => "azure",
            Kind::Anthropic => "anthropic",
            Kind::Mock { .. } => "mock",
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The parsed upstream URL of `op` for `model`, computed once per deployment at load.
    pub fn parsed_url(&self, op: Op, model: &str) -> Option<::http::Uri> {
        let u = self.url(op, model).ok()?;
        if u.is_empty() {
            return None;
        }
        u.parse().ok()
    }

    fn url(&self, op: Op, model: &str) -> Result<String, UpstreamError> {
        Ok(match (&self.kind, op) {
            (Kind::OpenAi, Op::Chat) => format!("{}/chat/completions", self.base_url),
            (Kind::OpenAi, Op::Embeddings) => format!("{}/embeddings", self.base_url),
            (Kind::OpenAi, Op::Moderations) => format!("{}/moderations", self.base_url),
            (Kind::Azure { .. } | Kind::Anthropic, Op::Moderations) => {
                let mut e = UpstreamError::new(
                    &self.name,
                    UpstreamKind::Status(400),
                    "this model's provider has no moderations API",
                );
                e.error_type = Some("invalid_request_error".into());
                return Err(e);
            }
            (Kind::Azure { api_version }, op) => format!(
                "{}/openai/deployments/{}/{}?api-version={}",
                self.base_url,
                model,
                if op == Op::Chat {
                    "chat/completions"
                } else {
                    "embeddings"
                },
                api_version
            ),
            (Kind::Anthropic, Op::Chat) => format!("{}/v1/messages", self.base_url),
            (Kind::Anthropic, Op::Embeddings) => {
                let mut e = UpstreamError::new(
                    &self.name,
                    UpstreamKind::Status(400),
                    "this model is served by an Anthropic provider, which has no embeddings API",
                );
                e.error_type = Some("invalid_request_error".into());
                return Err(e);
            }
            (Kind::Mock { .. }, _) => String::new(),
        })
    }

    /// Send one attempt. `body` is already in this provider's format with the upstream model set.
    /// `timeout` bounds a non-streamed answer to its last byte, and a streamed one to its headers
    /// and then each gap between chunks.
    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's parts, each used once"
    )]
    pub async fn send(
        &self,
        op: Op,
        model: &str,
        url: Option<&::http::Uri>,
        body: Bytes,
        stream: bool,
        timeout: Duration,
        ctx: &CallCtx,
    ) -> Result<UpstreamBody, UpstreamError> {
        if let Kind::Mock { latency } = self.kind {
            return match op {
                Op::Chat => {
                    if !stream && !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    mock::chat(&body, latency)
                }
                Op::Embeddings => {
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    mock::embeddings(&body)
                }
                Op::Moderations => Ok(mock::moderations()),
            };
        }
        let parsed;
        let uri = match url {
            Some(u) => u,
            None => {
                let u = self.url(op, model)?;
                parsed = u.parse::<::http::Uri>().map_err(|e| {
                    UpstreamError::new(
                        &self.name,
                        UpstreamKind::Connect,
                        format!("the upstream URL {u} is not valid: {e}"),
                    )
                })?;
                &parsed
            }
        };
        let mut headers = self.headers.clone();
        if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
            headers.insert(crate::headers::X_REQUEST_ID, id);
        }
        if let Some(tp) = &ctx.traceparent {
            headers.insert(crate::headers::TRACEPARENT, tp.clone());
        }
        if let (Kind::Anthropic, Some(beta)) = (&self.kind, &ctx.anthropic_beta) {
            headers.insert(crate::headers::ANTHROPIC_BETA, beta.clone());
        }
        let fut = async {
            let resp = self
                .http
                .post(uri, headers, body)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(self.status_error(resp).await);
            }
            if stream {
                Ok(UpstreamBody::Stream(self.relay(resp.into_body(), timeout)))
            } else {
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| self.body_error(&*e))?
                    .to_bytes();
                Ok(UpstreamBody::Full(bytes))
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::new(
                &self.name,
                UpstreamKind::Timeout,
                format!("no complete answer within {}ms", timeout.as_millis()),
            )),
        }
    }

    fn relay(&self, body: http::UpstreamBody, idle: Duration) -> ByteStream {
        let name = self.name.clone();
        let name2 = self.name.clone();
        let inner = http_body_util::BodyDataStream::new(body).map_err(move |e| {
            UpstreamError::new(
                &name,
                UpstreamKind::Protocol,
                format!("the stream broke: {}", crate::error::error_chain(&*e)),
            )
        });
        Box::pin(IdleTimeout::new(inner, idle, name2))
    }

    fn transport_error(&self, e: &http::SendError) -> UpstreamError {
        let kind = if e.connect {
            UpstreamKind::Connect
        } else {
            UpstreamKind::Protocol
        };
        UpstreamError::new(&self.name, kind, e.message.clone())
    }

    fn body_error(&self, e: &(dyn std::error::Error + Send + Sync)) -> UpstreamError {
        UpstreamError::new(
            &self.name,
            UpstreamKind::Protocol,
            format!("the answer broke off: {}", crate::error::error_chain(e)),
        )
    }

    async fn status_error(&self, resp: ::http::Response<http::UpstreamBody>) -> UpstreamError {
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers());
        // Bounded read of the error body.
        let mut body = Vec::new();
        let mut s = http_body_util::BodyDataStream::new(resp.into_body());
        while let Some(Ok(chunk)) = s.next().await {
            body.extend_from_slice(&chunk);
            if body.len() > 64 * 1024 {
                break;
            }
        }
        let parsed = match self.format() {
            Format::Anthropic => translate::error_from_anthropic(&body),
            Format::OpenAi => translate::error_from_openai(&body),
        };
        let (ty, msg) = parsed.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            (
                String::new(),
                if text.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    text
                },
            )
        });
        let msg = match &self.secret {
            Some(k) if k.len() >= 4 => msg.replace(k.as_str(), "[redacted]"),
            _ => msg,
        };
        let mut e = UpstreamError::new(
            &self.name,
            UpstreamKind::Status(status),
            format!("{} answered {status}: {msg}", self.name),
        );
        e.retry_after = retry_after;
        if !ty.is_empty() {
            e.error_type = Some(ty);
        }
        e
    }
}

/// `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub fn parse_retry_after(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

pin_project_lite::pin_project! {
    /// Ends a stream with a timeout error when no item arrives within `idle`.
    struct IdleTimeout<S> {
        #[pin]
        inner: S,
        #[pin]
        sleep: tokio::time::Sleep,
        idle: Duration,
        provider: String,
        done: bool,
    }
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration, provider: String) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
            provider,
            done: false,
        }
    }
}

impl<S: Stream<Item = Result<Bytes, UpstreamError>>> Stream for IdleTimeout<S> {
    type Item = Result<Bytes, UpstreamError>;
    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(item) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.sleep.as_mut().reset(deadline);
                if item.is_none() {
                    *this.done = true;
                }
                Poll::Ready(item)
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => {
                    *this.done = true;
                    Poll::Ready(Some(Err(UpstreamError::new(
                        this.provider,
                        UpstreamKind::Timeout,
                        format!("no data for {}ms mid-stream", this.idle.as_millis()),
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
