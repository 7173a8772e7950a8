//! Providers with their own wire formats, Gemini and Bedrock: the request is translated from
//! OpenAI chat (or embeddings) to the provider's format here, sent (Bedrock's SigV4-signed), and
//! the answer translated back, so the router and pipeline see an OpenAI-format provider.
//! Streams are converted chunk by chunk as they arrive (Gemini's SSE, Bedrock's binary
//! event-stream frames); an error the upstream reports in the stream, a corrupt frame or a body
//! that ends before the answer did becomes an error item (a failed attempt before the first byte,
//! the client's in-stream error event after it), never a panic.
//!
//! Also here: the upstream 404 on the path itself (a misconfigured `base_url`), for every kind.

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderName, HeaderValue};

use super::aws::ConverseStreamToChat;
use super::aws::sigv4::SigV4;
use super::{ByteStream, CallCtx, Kind, Op, Provider, UpstreamBody};
use crate::config::ProviderConfig;
use crate::error::{UpstreamError, UpstreamKind};
use crate::sse::SseParser;
use crate::translate::{self, Dropped, StreamFault};

/// The signer of a Bedrock provider, or `None` when it has an `api_key` (a Bedrock API key,
/// sent as a bearer token instead of signing).
pub(super) fn bedrock_signer(
    cfg: &ProviderConfig,
    api_key: Option<&str>,
) -> Result<Option<SigV4>, String> {
    if api_key.is_some() {
        return Ok(None);
    }
    let need = |v: &Option<String>, key: &str| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("providers {}: {key} is required for type bedrock", cfg.name))
    };
    let region = need(&cfg.region, "region")?;
    let id = need(&cfg.aws_access_key_id, "aws_access_key_id")?;
    let secret = need(&cfg.aws_secret_access_key, "aws_secret_access_key")?;
    Ok(Some(SigV4::bedrock(
        &region,
        &id,
        &secret,
        cfg.aws_session_token.as_deref(),
    )))
}

/// Whether an OpenAI chat request asks for the usage chunk (`stream_options.include_usage`).
fn wants_usage(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        stream_options: Option<Opts>,
    }
    #[derive(serde::Deserialize)]
    struct Opts {
        include_usage: Option<bool>,
    }
    memchr::memmem::find(body, b"\"include_usage\"").is_some()
        && serde_json::from_slice::<Head>(body)
            .ok()
            .and_then(|h| h.stream_options)
            .and_then(|o| o.include_usage)
            == Some(true)
}

/// The HTTP status an in-stream error stands for, where its type says (the rest are retryable
/// protocol errors).
fn status_of(error_type: &str) -> Option<u16> {
    Some(match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "rate_limit_error" => 429,
        _ => return None,
    })
}

fn fault_error(provider: &str, f: StreamFault) -> UpstreamError {
    let kind = status_of(f.error_type).map_or(UpstreamKind::Protocol, UpstreamKind::Status);
    let mut e = UpstreamError::new(provider, kind, f.message);
    if f.error_type != "upstream_error" {
        e.error_type = Some(f.error_type.to_owned());
    }
    e
}

/// A native stream's converter.
enum Native {
    Gemini(SseParser, translate::GeminiToChatStream),
    Bedrock(ConverseStreamToChat),
}

impl Native {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), StreamFault> {
        match self {
            Native::Gemini(parser, conv) => {
                let mut fault = None;
                parser.push(chunk, |ev| {
                    if fault.is_none()
                        && let Err(f) = conv.on_data_checked(ev.data, out)
                    {
                        fault = Some(f);
                    }
                });
                fault.map_or(Ok(()), Err)
            }
            Native::Bedrock(conv) => conv.on_bytes_checked(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        match self {
            Native::Gemini(_, conv) => conv.finish_checked(out),
            Native::Bedrock(conv) => conv.finish_checked(out),
        }
    }
}

struct Converting {
    inner: ByteStream,
    native: Native,
    provider: String,
    /// An error to yield after the bytes converted before it.
    pending: Option<UpstreamError>,
    done: bool,
}

impl Converting {
    /// The bytes converted and, on a fault, the error after them.
    fn step(
        &mut self,
        out: Vec<u8>,
        r: Result<(), StreamFault>,
    ) -> Option<Result<Bytes, UpstreamError>> {
        if let Err(f) = r {
            self.done = true;
            let e = fault_error(&self.provider, f);
            if out.is_empty() {
                return Some(Err(e));
            }
            self.pending = Some(e);
        }
        (!out.is_empty()).then(|| Ok(Bytes::from(out)))
    }
}

/// OpenAI chunks from a native stream, as its bytes arrive.
fn convert(inner: ByteStream, native: Native, provider: &str) -> ByteStream {
    let st = Converting {
        inner,
        native,
        provider: provider.to_owned(),
        pending: None,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            let item = match st.inner.next().await {
                Some(Ok(chunk)) => {
                    out.reserve(chunk.len() + 128);
                    let r = st.native.feed(&chunk, &mut out);
                    st.step(out, r)
                }
                Some(Err(e)) => {
                    st.done = true;
                    Some(Err(e))
                }
                None => {
                    st.done = true;
                    let r = st.native.finish(&mut out);
                    st.step(out, r)
                }
            };
            if let Some(item) = item {
                return Some((item, st));
            }
        }
    }))
}

impl Provider {
    /// A 400 for a request this provider cannot take (passed back to the caller as is).
    fn refused(&self, message: String) -> UpstreamError {
        let mut e = UpstreamError::new(&self.name, UpstreamKind::Status(400), message);
        e.error_type = Some("invalid_request_error".into());
        e
    }

    /// The URL of `op` for `model` on Gemini or Bedrock.
    pub(super) fn native_url(
        &self,
        op: Op,
        model: &str,
        stream: bool,
    ) -> Result<String, UpstreamError> {
        if op == Op::Moderations {
            return Err(self.refused("this model's provider has no moderations API".to_owned()));
        }
        match (&self.kind, op) {
            (Kind::Gemini, op) => {
                let model = model.strip_prefix("models/").unwrap_or(model);
                // A base URL that already names the API version is taken as it is.
                let base = &self.base_url;
                let version = if base.ends_with("/v1beta") || base.ends_with("/v1") {
                    ""
                } else {
                    "/v1beta"
                };
                let method = match (op, stream) {
                    (Op::Embeddings, _) => ":batchEmbedContents",
                    (_, false) => ":generateContent",
                    (_, true) => ":streamGenerateContent?alt=sse",
                };
                Ok(format!("{base}{version}/models/{model}{method}"))
            }
            (Kind::Bedrock { .. }, Op::Chat) => {
                Ok(super::aws::bedrock_url(&self.base_url, model, stream))
            }
            (Kind::Bedrock { .. }, Op::Embeddings) => Err(self.refused(
                "this model is served by a Bedrock provider: the gateway calls Bedrock's Converse API, which has no embeddings"
                    .to_owned(),
            )),
            _ => Ok(String::new()),
        }
    }

    /// One attempt to Gemini or Bedrock: `body` is an OpenAI chat (or embeddings) request with
    /// the upstream model set; the answer comes back in OpenAI's format.
    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's parts, each used once"
    )]
    pub(super) async fn send_native(
        &self,
        op: Op,
        model: &str,
        body: Bytes,
        stream: bool,
        timeout: std::time::Duration,
        ctx: &CallCtx,
        dropped: &mut Dropped,
    ) -> Result<UpstreamBody, UpstreamError> {
        let bedrock = matches!(self.kind, Kind::Bedrock { .. });
        let url = self.native_url(op, model, stream)?;
        let native = match (bedrock, op) {
            // (`native_url` above refused moderations.)
            (false, Op::Embeddings) => {
                translate::embeddings_request_to_gemini(&body, model, dropped)
            }
            (false, _) => translate::chat_request_to_gemini(&body, model, dropped),
            (true, _) => translate::chat_request_to_bedrock(&body, model, dropped),
        }
        .map_err(|e| self.refused(e.to_string()))?;
        let uri: ::http::Uri = url.parse().map_err(|e| {
            UpstreamError::new(
                &self.name,
                UpstreamKind::Connect,
                format!("the upstream URL {url} is not valid: {e}"),
            )
        })?;
        let mut headers = self.request_headers(ctx);
        if bedrock && stream {
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/vnd.amazon.eventstream"),
            );
        }
        if let Kind::Bedrock {
            signer: Some(signer),
        } = &self.kind
        {
            let signed = signer
                .sign(
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    &native,
                    SystemTime::now(),
                )
                .map_err(|e| {
                    UpstreamError::new(&self.name, UpstreamKind::Connect, e.to_string())
                })?;
            for (name, value) in signed {
                let cannot = || {
                    UpstreamError::new(
                        &self.name,
                        UpstreamKind::Connect,
                        "a signed header cannot be sent",
                    )
                };
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| cannot())?;
                let mut v = HeaderValue::from_str(&value).map_err(|_| cannot())?;
                v.set_sensitive(true);
                headers.insert(name, v);
            }
        }
        let include_usage = stream && wants_usage(&body);
        let base64 = op == Op::Embeddings && translate::embeddings_encoding_is_base64(&body);
        let fut = async {
            let resp = self
                .http
                .post(&uri, headers, Bytes::from(native))
                .await
                .map_err(|e| self.transport_error(&e))?;
            if !resp.status().is_success() {
                return Err(Box::pin(self.status_error(resp, &uri, model)).await);
            }
            if stream {
                let s = self.relay(resp.into_body(), timeout);
                let native = if bedrock {
                    Native::Bedrock(ConverseStreamToChat::new(
                        translate::BedrockToChatStream::new(model, include_usage),
                    ))
                } else {
                    Native::Gemini(
                        SseParser::new(),
                        translate::GeminiToChatStream::new(model, include_usage),
                    )
                };
                return Ok(UpstreamBody::Stream(convert(s, native, &self.name)));
            }
            let bytes = self.collect(resp).await?;
            let out = match (bedrock, op) {
                (false, Op::Embeddings) => translate::gemini_embeddings_to_openai(
                    &bytes,
                    model,
                    base64,
                    crate::tokens::estimate(&body),
                ),
                (false, _) => translate::gemini_response_to_chat(&bytes, model),
                (true, _) => translate::bedrock_response_to_chat(&bytes, model),
            }
            .map_err(|e| {
                UpstreamError::new(
                    &self.name,
                    UpstreamKind::Protocol,
                    format!("unreadable answer: {e}"),
                )
            })?;
            Ok(UpstreamBody::Full(Bytes::from(out)))
        };
        self.bounded(timeout, fut).await
    }

    /// The error of an upstream 404 on the path itself: the URL called and the likely fix.
    pub(super) fn path_not_found(&self, uri: &::http::Uri) -> UpstreamError {
        let url = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or(""),
            uri.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + uri.path();
        let base = self.base_url.trim_end_matches('/');
        let hint = match &self.kind {
            Kind::OpenAi { .. } if !ends_in_version(base) => format!(
                "an OpenAI-compatible server's base_url usually ends in its API version, e.g. \"{}/v1\"",
                safe_url(base)
            ),
            Kind::Anthropic if base.ends_with("/v1") => format!(
                "an Anthropic base_url is the host without /v1 (the gateway adds /v1/messages), e.g. \"{}\"",
                safe_url(base.trim_end_matches("/v1"))
            ),
            Kind::Azure { .. } if base.contains("/openai") => format!(
                "an Azure base_url is the resource's endpoint without /openai (the gateway adds /openai/deployments/…), e.g. \"{}\"",
                safe_url(base.split("/openai").next().unwrap_or(base))
            ),
            _ => "check the provider's base_url (and, for Azure, that the deployment name is the deployment's model)".to_owned(),
        };
        let mut e = UpstreamError::new(
            &self.name,
            UpstreamKind::Status(404),
            format!(
                "{} answered 404 Not Found for POST {url}: the path does not exist there, so the provider's base_url is likely wrong; {hint}",
                self.name
            ),
        );
        e.misconfigured = true;
        e
    }
}

/// Whether a base URL's last segment names an API version (`v1`, `v4`, `v1beta`, `v2`…).
fn ends_in_version(base: &str) -> bool {
    let last = base.rsplit('/').next().unwrap_or("");
    last.len() >= 2
        && last.starts_with('v')
        && last[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// A URL without credentials (`user:pass@`) or query.
fn safe_url(u: &str) -> String {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = match rest.split_once('/') {
        Some((auth, path)) => format!("{}/{path}", auth.rsplit('@').next().unwrap_or(auth)),
        None => rest.rsplit('@').next().unwrap_or(rest).to_owned(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Whether a 404 is about the path rather than the model: a body that is not an error the
/// provider's API writes (HTML, `404 page not found`, FastAPI's `{"detail":"Not Found"}`),
/// OpenAI's `Invalid URL (POST /v1/…)`, AWS's `UnknownOperationException`, or an error whose
/// message does not name the upstream `model` (a missing model's message names it: OpenAI's,
/// vLLM's, Ollama's, Gemini's), unless the provider says the resource is what it did not find
/// (Bedrock's `ResourceNotFoundException`, Google's `NOT_FOUND`).
pub(super) fn path_not_found(body: &[u8], parsed: Option<&(String, String)>, model: &str) -> bool {
    let Some((ty, msg)) = parsed else {
        return true;
    };
    if ty.contains("UnknownOperation")
        || msg.starts_with("Invalid URL")
        || msg.starts_with("Unrecognized request URL")
        || msg.eq_ignore_ascii_case("not found")
        || (msg.is_empty() && !body.starts_with(b"{"))
    {
        return true;
    }
    ty != "not_found_error" && !model.is_empty() && !msg.contains(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_404s_are_told_from_model_404s() {
        assert!(path_not_found(b"<html>404</html>", None, "m"));
        assert!(path_not_found(b"404 page not found", None, "m"));
        let openai = (
            "invalid_request_error".to_owned(),
            "Invalid URL (POST /v1/chat/completion)".to_owned(),
        );
        assert!(path_not_found(b"{}", Some(&openai), "gpt-5o"));
        let model = (
            "invalid_request_error".to_owned(),
            "The model `gpt-5o` does not exist or you do not have access to it.".to_owned(),
        );
        assert!(!path_not_found(b"{}", Some(&model), "gpt-5o"));
        let bedrock = (
            "not_found_error".to_owned(),
            "Could not resolve the foundation model".to_owned(),
        );
        assert!(!path_not_found(b"{}", Some(&bedrock), "x.y-v1:0"));
    }

    #[test]
    fn versions_and_urls() {
        for (u, v) in [
            ("http://h/v1", true),
            ("https://open.bigmodel.cn/api/paas/v4", true),
            ("http://h/v1beta", true),
            ("http://h", false),
            ("http://h/api", false),
            ("http://h/video", false),
        ] {
            assert_eq!(ends_in_version(u), v, "{u}");
        }
        assert_eq!(safe_url("http://u:p@h:1/x?k=s"), "http://h:1/x");
        assert_eq!(safe_url("http://h:1"), "http://h:1");
    }

    #[test]
    fn stream_faults_keep_their_status() {
        let e = fault_error(
            "p",
            StreamFault {
                error_type: "rate_limit_error",
                message: "slow down".into(),
            },
        );
        assert_eq!(e.kind, UpstreamKind::Status(429));
        assert!(e.is_retryable());
        let e = fault_error("p", StreamFault::truncated());
        assert_eq!(e.kind, UpstreamKind::Protocol);
        assert_eq!(e.error_type, None);
    }

    #[test]
    fn usage_wish() {
        assert!(wants_usage(
            br#"{"stream":true,"stream_options":{"include_usage":true}}"#
        ));
        assert!(!wants_usage(br#"{"stream":true}"#));
        assert!(!wants_usage(
            br#"{"stream_options":{"include_usage":false}}"#
        ));
    }
}
