//! Upstream providers: where a deployment's request goes and how it is authenticated.
//!
//! Six kinds, one enum (no trait objects): `openai` (and any OpenAI-compatible server; the
//! presets are this kind with their quirks, `quirks.rs`), `azure` (OpenAI's wire format behind
//! Azure's URL scheme and `api-key` header), `anthropic` (its own wire format; the pipeline
//! translates), `gemini` and `bedrock` (their own formats, translated here from and to OpenAI
//! chat, `native.rs`, so to the rest of the gateway they speak OpenAI's format) and the
//! built-in `mock`. Each provider owns one pooled
//! HTTP client ([`http::Http`]: keep-alive, `TCP_NODELAY`, HTTP/2 by ALPN) shared by every
//! request to it.
//! A provider never sees the caller's gateway key: it sends its own.

pub mod aws;
mod failure;
pub mod h1;
pub mod h2c;
pub mod http;
pub mod mock;
mod native;
pub mod pool;
pub mod prices;
pub mod quirks;
mod timing;
mod urls;
use timing::IdleTimeout;
pub use timing::parse_retry_after;

use std::pin::Pin;
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::BodyExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ProviderConfig, ProviderType};
use crate::error::{UpstreamError, UpstreamKind};
use crate::translate::Dropped;
use crate::wire::Format;

/// A body of bytes arriving from upstream.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A successful upstream answer.
pub enum UpstreamBody {
    Full(Bytes),
    Stream(ByteStream),
}

pub use crate::wire::Op;

/// Per-call context forwarded upstream.
#[derive(Debug, Clone, Default)]
pub struct CallCtx {
    pub request_id: std::sync::Arc<str>,
    pub traceparent: Option<HeaderValue>,
    /// The client's `anthropic-beta` header, forwarded to Anthropic upstreams only.
    pub anthropic_beta: Option<HeaderValue>,
    /// Where the request's tokens and cost are reported for its access-log line and span.
    pub usage: Option<std::sync::Arc<crate::record::RequestRecord>>,
}

#[derive(Debug)]
enum Kind {
    OpenAi {
        quirks: &'static quirks::Quirks,
    },
    Azure {
        api_version: String,
    },
    Anthropic,
    Mock {
        latency: Duration,
    },
    Gemini,
    /// SigV4 with the configured credentials, or (`None`) a Bedrock API key as a bearer token.
    Bedrock {
        signer: Option<aws::sigv4::SigV4>,
    },
}

/// One configured provider. (`Debug` is written by hand: it never shows the key.)
pub struct Provider {
    pub name: String,
    ptype: ProviderType,
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

static CRYPTO: Once = Once::new();

/// The base URL requests to this provider start with (the configured one, or the provider
/// type's public API), without a trailing `/`.
pub fn base_url_of(cfg: &ProviderConfig) -> String {
    match (&cfg.base_url, cfg.kind, &cfg.region) {
        (Some(u), _, _) => u.trim_end_matches('/').to_owned(),
        (None, ProviderType::Bedrock, Some(region)) => aws::bedrock_base_url(region),
        (None, kind, _) => crate::config::presets::default_base_url(kind)
            .unwrap_or("")
            .to_owned(),
    }
}

/// Build the HTTP client used for one provider at `base_url` (`http2`: see [`http::Http::new`]).
pub fn http_client(
    connect_timeout: Duration,
    base_url: &str,
    http2: bool,
) -> Result<http::Http, String> {
    install_crypto();
    http::Http::new(connect_timeout, base_url, http2)
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
        let key = cfg.api_key.as_deref().filter(|k| !k.is_empty());
        let kind = match cfg.kind {
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
            ProviderType::Gemini => Kind::Gemini,
            ProviderType::Bedrock => Kind::Bedrock {
                signer: native::bedrock_signer(cfg, key)?,
            },
            other => Kind::OpenAi {
                quirks: quirks::of(other),
            },
        };
        let base_url = base_url_of(cfg);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Where the key goes: (header, value).
        let auth = match (&kind, key) {
            (Kind::OpenAi { .. } | Kind::Bedrock { signer: None }, Some(k)) => {
                Some((reqwest::header::AUTHORIZATION, format!("Bearer {k}")))
            }
            (Kind::Azure { .. }, Some(k)) => {
                Some((HeaderName::from_static("api-key"), k.to_owned()))
            }
            (Kind::Anthropic, Some(k)) => {
                Some((HeaderName::from_static("x-api-key"), k.to_owned()))
            }
            (Kind::Gemini, Some(k)) => {
                Some((HeaderName::from_static("x-goog-api-key"), k.to_owned()))
            }
            _ => None,
        };
        if let Some((name, value)) = auth {
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "providers {}: api_key has characters a header cannot carry",
                    cfg.name
                )
            })?;
            v.set_sensitive(true);
            headers.insert(name, v);
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
        let secret = match &kind {
            Kind::Bedrock { signer: Some(_) } => cfg.aws_secret_access_key.clone(),
            _ => key.map(str::to_owned),
        };
        Ok(Self {
            name: cfg.name.clone(),
            ptype: cfg.kind,
            kind,
            base_url,
            headers,
            timeout: cfg.timeout.get(),
            http,
            secret,
        })
    }

    /// The wire format the rest of the gateway exchanges with this provider (Gemini and
    /// Bedrock are translated from and to OpenAI chat inside [`Provider::send`]).
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Anthropic => Format::Anthropic,
            _ => Format::OpenAi,
        }
    }

    /// The provider type's name as in the configuration (and the GenAI `gen_ai.provider.name`).
    pub fn type_name(&self) -> &'static str {
        self.ptype.as_str()
    }

    /// The provider's configured type.
    pub fn provider_type(&self) -> ProviderType {
        self.ptype
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
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
        dropped: &mut Dropped,
    ) -> Result<UpstreamBody, UpstreamError> {
        if !self.serves(op) {
            return Err(self.not_served(op));
        }
        match &self.kind {
            // In its box: inline, the translating call (the largest branch) sized every
            // attempt's future, and so the memory a stream holds while it waits for its head.
            Kind::Gemini | Kind::Bedrock { .. } => {
                return crate::boxed::in_place(|| {
                    self.send_native(op, model, body, stream, timeout, ctx, dropped)
                })
                .await;
            }
            Kind::OpenAi { quirks } if op == Op::Chat => {
                let body = quirks.request(body, dropped);
                return self
                    .send_raw(op, model, url, body, stream, timeout, ctx, quirks)
                    .await;
            }
            _ => {}
        }
        self.send_raw(op, model, url, body, stream, timeout, ctx, &quirks::NONE)
            .await
    }

    /// One attempt in the provider's own format (after any translation).
    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's parts, each used once"
    )]
    async fn send_raw(
        &self,
        op: Op,
        model: &str,
        url: Option<&::http::Uri>,
        body: Bytes,
        stream: bool,
        timeout: Duration,
        ctx: &CallCtx,
        quirks: &'static quirks::Quirks,
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
                Op::CountTokens => self
                    .url(op, model)
                    .map(|_| UpstreamBody::Full(Bytes::new())),
                _ => {
                    if !stream && !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    mock::passthrough(op, &body, latency)
                }
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
        let mut headers = self.request_headers(ctx);
        if op == Op::Transcriptions
            && let Some(ct) = crate::wire::multipart_content_type(&body)
        {
            headers.insert(reqwest::header::CONTENT_TYPE, ct);
        }
        // Made in its box: moved into the timeout and the timeout into this future, the call
        // (several KiB) was copied twice on every request.
        let fut = crate::boxed::in_place(|| async {
            let resp = self
                .http
                .post(uri, headers, body)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            if !status.is_success() {
                // Boxed: the error path's future would size every answer's.
                return Err(Box::pin(self.status_error(resp, uri, model)).await);
            }
            if stream {
                let s = self.relay(resp.into_body(), timeout);
                Ok(UpstreamBody::Stream(quirks.stream(s)))
            } else {
                let bytes = self.collect(resp).await?;
                Ok(UpstreamBody::Full(quirks.answer(bytes)))
            }
        });
        self.bounded(timeout, fut).await
    }

    /// `fut` (one attempt up to its answer's head, or its whole answer) within `timeout`.
    /// A plain function: as an `async fn` its future held `fut` twice (the argument, and the
    /// timeout around it), and was copied whole on every request.
    fn bounded<T>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = Result<T, UpstreamError>>,
    ) -> impl Future<Output = Result<T, UpstreamError>> {
        use futures_util::FutureExt;
        tokio::time::timeout(timeout, fut).map(move |r| {
            r.unwrap_or_else(|_| {
                Err(UpstreamError::new(
                    &self.name,
                    UpstreamKind::Timeout,
                    format!("no complete answer within {}ms", timeout.as_millis()),
                ))
            })
        })
    }

    /// A whole answer's body. (Its `content-length` does not size the buffer: an upstream could
    /// declare any length and send little.)
    async fn collect(
        &self,
        resp: ::http::Response<http::UpstreamBody>,
    ) -> Result<Bytes, UpstreamError> {
        let mut body = resp.into_body();
        let mut gathered = crate::frames::Gather::default();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|e| self.body_error(&*e))?.into_data() {
                gathered.push(data, 0);
            }
        }
        Ok(gathered.finish())
    }

    /// The provider's headers and the call's own (request id, trace, Anthropic beta).
    fn request_headers(&self, ctx: &CallCtx) -> http::Outgoing<'_> {
        let mut headers = http::Outgoing::new(&self.headers);
        if let Some(id) = crate::headers::OwnValue::text(ctx.request_id.as_bytes()) {
            headers.insert(crate::headers::X_REQUEST_ID, id);
        }
        if let Some(tp) = &ctx.traceparent {
            headers.insert(crate::headers::TRACEPARENT, tp.clone());
        }
        if let (Kind::Anthropic, Some(beta)) = (&self.kind, &ctx.anthropic_beta) {
            headers.insert(crate::headers::ANTHROPIC_BETA, beta.clone());
        }
        headers
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
