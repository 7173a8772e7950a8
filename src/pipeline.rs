//! The typed request path after parsing, for both chat APIs and embeddings.
//!
//! ```text
//! head (parsed) → model lookup (404) → permission (403) → router::send (attempts × fallbacks)
//!   → per deployment: same format ? splice `model` : translate request
//!   → answer: same format ? bytes as they came : translate response / stream chunk by chunk
//! ```
//! Streams are relayed frame by frame as they arrive (no buffering); a failure after the first
//! byte ends the stream with an error event in the client's format, and the whole-request
//! deadline cuts a stream the same way. A client that goes away drops the body, which drops the
//! upstream connection.

use std::pin::Pin;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::Caller;
use crate::cache::{self, Cache, Entry, Layer, Leader, Lookup, Policy};
use crate::error::{Error, UpstreamError};
use crate::providers::{ByteStream, CallCtx, Op, UpstreamBody};
use crate::router::{self, Call};
use crate::runtime::{Deployment, Runtime};
use crate::sse::SseParser;
use crate::translate;
use crate::wire::{self, ChatHead, Format};

/// Everything a chat call needs besides the runtime.
pub struct ChatCall<'a> {
    pub caller: &'a Caller,
    pub headers: &'a HeaderMap,
    pub client: Format,
    pub head: &'a ChatHead,
    pub body: &'a Bytes,
    pub deadline: Instant,
    pub ctx: &'a CallCtx,
    /// When the gateway received the request.
    pub started: Instant,
}

/// The cache key and policy for a request, or `None` to bypass the cache.
fn cache_plan(
    rt: &Runtime,
    model_cache: Option<bool>,
    headers: &HeaderMap,
    endpoint: cache::Endpoint,
    caller: &Caller,
    body: &[u8],
) -> Option<(cache::Key, Policy)> {
    let cfg = &rt.config.cache;
    let policy = cache::policy(headers, cfg, model_cache, true)?;
    let (key, value) = cache::key::key(endpoint, cache::scope(cfg, caller.name()), body)?;
    if cfg.only_deterministic && !cache::key::is_deterministic(&value) {
        return None;
    }
    Some((key, policy))
}

/// Look the request up; `Ok(response)` on a hit, else the leader (if any) for storing later.
async fn cache_lookup(
    cache: &std::sync::Arc<Cache>,
    plan: Option<&(cache::Key, Policy)>,
    format: Format,
    stream: bool,
    include_usage: bool,
    deadline: Instant,
) -> Result<Response, Option<Leader>> {
    let Some((key, policy)) = plan else {
        return Err(None);
    };
    match cache
        .lookup(*key, policy)
        .instrument(crate::telemetry::cache_span())
        .await
    {
        Lookup::Hit(e, layer) => Ok(hit_response(&e, layer, format, stream, include_usage)),
        Lookup::Wait(rx) => match Cache::wait(rx, deadline).await {
            Some(e) => Ok(hit_response(&e, Layer::L1, format, stream, include_usage)),
            None => Err(None),
        },
        Lookup::Miss(leader) => Err(Some(leader)),
    }
}

fn hit_response(
    e: &Entry,
    layer: Layer,
    format: Format,
    stream: bool,
    include_usage: bool,
) -> Response {
    let mut resp = if stream {
        let sse = cache::stream::replay(format, &e.body, include_usage).unwrap_or_default();
        sse_response(Body::from(sse))
    } else {
        json_response(e.body.clone())
    };
    let h = resp.headers_mut();
    h.insert("x-cache", HeaderValue::from_static("HIT"));
    h.insert("x-cache-layer", HeaderValue::from_static(layer.as_str()));
    if let Ok(v) = HeaderValue::from_str(&e.provider) {
        h.insert("x-gateway-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&e.deployment_model) {
        h.insert("x-gateway-deployment-model", v);
    }
    h.insert("x-gateway-attempts", HeaderValue::from(0));
    resp
}

/// Store a complete answer and hand it to the waiters.
async fn store(
    cache: &Cache,
    plan: Option<&(cache::Key, Policy)>,
    leader: Option<Leader>,
    body: Bytes,
    d: &Deployment,
) {
    let Some((key, policy)) = plan else { return };
    let entry = std::sync::Arc::new(Entry::new(body, policy.ttl, &d.provider.name, &d.model));
    if policy.write {
        cache.put(*key, entry.clone()).await;
    }
    if let Some(l) = leader {
        l.complete(entry);
    }
}

fn x_cache(resp: &mut Response, plan: Option<&(cache::Key, Policy)>) {
    let v = if plan.is_some() { "MISS" } else { "BYPASS" };
    resp.headers_mut()
        .insert("x-cache", HeaderValue::from_static(v));
}

/// What a streamed answer needs to be stored once it ended well.
pub struct CacheTap {
    assembler: cache::stream::Assembler,
    cache: std::sync::Arc<Cache>,
    plan: (cache::Key, Policy),
    leader: Option<Leader>,
    deployment: Deployment,
}

fn translate_err(e: translate::TranslateError) -> Error {
    Error::invalid(e.to_string())
}

/// Run a chat request (either API) and build the client's answer.
pub async fn chat(
    rt: &Runtime,
    cache: &std::sync::Arc<Cache>,
    call: ChatCall<'_>,
) -> Result<Response, Error> {
    let model = rt
        .models
        .get(&call.head.model)
        .ok_or_else(|| Error::ModelNotFound(call.head.model.clone()))?;
    call.caller.check_model(&call.head.model)?;
    let head = call.head;
    let body = call.body;
    let client = call.client;
    let endpoint = match client {
        Format::OpenAi => cache::Endpoint::ChatCompletions,
        Format::Anthropic => cache::Endpoint::Messages,
    };
    let plan = cache_plan(rt, model.cache, call.headers, endpoint, call.caller, body);
    let leader = match cache_lookup(
        cache,
        plan.as_ref(),
        client,
        head.stream,
        head.include_usage,
        call.deadline,
    )
    .await
    {
        Ok(hit) => return Ok(hit),
        Err(leader) => leader,
    };
    let build = move |d: &Deployment| -> Result<Bytes, Error> {
        match (client, d.provider.format()) {
            (Format::OpenAi, Format::OpenAi) | (Format::Anthropic, Format::Anthropic) => {
                Ok(wire::splice_model(body, &head.model_span, &d.model))
            }
            (Format::OpenAi, Format::Anthropic) => {
                translate::chat_request_to_messages(body, &d.model)
                    .map(Bytes::from)
                    .map_err(translate_err)
            }
            (Format::Anthropic, Format::OpenAi) => {
                translate::messages_request_to_chat(body, &d.model)
                    .map(Bytes::from)
                    .map_err(translate_err)
            }
        }
    };
    let rcall = Call {
        op: Op::Chat,
        stream: head.stream,
        deadline: call.deadline,
        ctx: call.ctx,
        input_tokens: estimate_tokens(body),
        max_tokens: head.max_tokens.unwrap_or(translate::DEFAULT_MAX_TOKENS),
        started: call.started,
    };
    let served = router::send(rt, model, &rcall, &build).await?;
    let upstream_format = served.deployment.provider.format();
    let mut resp = match served.body {
        UpstreamBody::Full(bytes) => {
            let out = match (upstream_format, client) {
                (a, b) if a == b => bytes,
                (Format::Anthropic, Format::OpenAi) => Bytes::from(
                    translate::messages_response_to_chat(&bytes, &head.model).map_err(|e| {
                        Error::Upstream {
                            attempts: served.attempts,
                            last: UpstreamError::new(
                                &served.deployment.provider.name,
                                crate::error::UpstreamKind::Protocol,
                                format!("unreadable answer: {e}"),
                            ),
                        }
                    })?,
                ),
                _ => Bytes::from(
                    translate::chat_response_to_messages(&bytes, &head.model).map_err(|e| {
                        Error::Upstream {
                            attempts: served.attempts,
                            last: UpstreamError::new(
                                &served.deployment.provider.name,
                                crate::error::UpstreamKind::Protocol,
                                format!("unreadable answer: {e}"),
                            ),
                        }
                    })?,
                ),
            };
            store(
                cache,
                plan.as_ref(),
                leader,
                out.clone(),
                &served.deployment,
            )
            .await;
            json_response(out)
        }
        UpstreamBody::Stream(stream) => {
            let conv = Converter::new(upstream_format, client, &head.model, head.include_usage);
            let tap = plan.as_ref().map(|plan| CacheTap {
                assembler: cache::stream::Assembler::new(client),
                cache: cache.clone(),
                plan: *plan,
                leader,
                deployment: served.deployment.clone(),
            });
            sse_response(relay(stream, conv, call.deadline, tap))
        }
    };
    x_cache(&mut resp, plan.as_ref());
    gateway_headers(&mut resp, &served.deployment, served.attempts);
    Ok(resp)
}

/// Run an embeddings request.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
pub async fn embeddings(
    rt: &Runtime,
    cache: &std::sync::Arc<Cache>,
    caller: &Caller,
    headers: &HeaderMap,
    body: &Bytes,
    head: &wire::EmbeddingsHead,
    deadline: Instant,
    ctx: &CallCtx,
) -> Result<Response, Error> {
    let model = rt
        .models
        .get(&head.model)
        .ok_or_else(|| Error::ModelNotFound(head.model.clone()))?;
    caller.check_model(&head.model)?;
    let plan = cache_plan(
        rt,
        model.cache,
        headers,
        cache::Endpoint::Embeddings,
        caller,
        body,
    );
    let leader =
        match cache_lookup(cache, plan.as_ref(), Format::OpenAi, false, false, deadline).await {
            Ok(hit) => return Ok(hit),
            Err(leader) => leader,
        };
    let build = |d: &Deployment| Ok(wire::splice_model(body, &head.model_span, &d.model));
    let rcall = Call {
        op: Op::Embeddings,
        stream: false,
        deadline,
        ctx,
        input_tokens: estimate_tokens(body),
        max_tokens: 0,
        started: Instant::now(),
    };
    let served = router::send(rt, model, &rcall, &build).await?;
    let mut resp = match served.body {
        UpstreamBody::Full(b) => {
            store(cache, plan.as_ref(), leader, b.clone(), &served.deployment).await;
            json_response(b)
        }
        UpstreamBody::Stream(s) => {
            // Not expected for embeddings; pass it on as it came.
            let mut r = Response::new(Body::from_stream(
                s.map(|r| r.map_err(std::io::Error::other)),
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    x_cache(&mut resp, plan.as_ref());
    gateway_headers(&mut resp, &served.deployment, served.attempts);
    Ok(resp)
}

/// A cheap token estimate for routing and capacity: about four bytes of JSON per token.
pub fn estimate_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

fn json_response(body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

fn gateway_headers(resp: &mut Response, d: &Deployment, attempts: u32) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&d.provider.name) {
        h.insert("x-gateway-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&d.model) {
        h.insert("x-gateway-deployment-model", v);
    }
    h.insert("x-gateway-attempts", HeaderValue::from(attempts));
}

/// How upstream stream bytes become client stream bytes.
pub enum Converter {
    /// Same format: bytes pass through untouched.
    Pass(Format),
    AnthropicToOpenAi(SseParser, translate::MessagesToChatStream),
    OpenAiToAnthropic(SseParser, translate::ChatToMessagesStream),
}

impl Converter {
    pub fn new(upstream: Format, client: Format, model: &str, include_usage: bool) -> Self {
        match (upstream, client) {
            (Format::Anthropic, Format::OpenAi) => Self::AnthropicToOpenAi(
                SseParser::new(),
                translate::MessagesToChatStream::new(model, include_usage),
            ),
            (Format::OpenAi, Format::Anthropic) => Self::OpenAiToAnthropic(
                SseParser::new(),
                translate::ChatToMessagesStream::new(model),
            ),
            (_, client) => Self::Pass(client),
        }
    }

    fn client_format(&self) -> Format {
        match self {
            Self::Pass(f) => *f,
            Self::AnthropicToOpenAi(..) => Format::OpenAi,
            Self::OpenAiToAnthropic(..) => Format::Anthropic,
        }
    }

    /// Convert one upstream chunk.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        match self {
            Self::Pass(_) => chunk,
            Self::AnthropicToOpenAi(parser, tr) => {
                let mut out = Vec::with_capacity(chunk.len() + 64);
                parser.push(&chunk, |ev| tr.on_event(ev.event, ev.data, &mut out));
                Bytes::from(out)
            }
            Self::OpenAiToAnthropic(parser, tr) => {
                let mut out = Vec::with_capacity(chunk.len() * 2);
                parser.push(&chunk, |ev| tr.on_data(ev.data, &mut out));
                Bytes::from(out)
            }
        }
    }

    /// The upstream ended: whatever closing frames are still owed.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Self::Pass(_) => {}
            Self::AnthropicToOpenAi(_, tr) => tr.finish(&mut out),
            Self::OpenAiToAnthropic(_, tr) => tr.finish(&mut out),
        }
        Bytes::from(out)
    }

    /// An error event in the client's format, ending the stream.
    pub fn error(&mut self, kind: &str, message: &str) -> Bytes {
        let mut out = Vec::new();
        match self.client_format() {
            Format::OpenAi => translate::openai_stream_error(kind, message, &mut out),
            Format::Anthropic => translate::anthropic_stream_error(kind, message, &mut out),
        }
        Bytes::from(out)
    }
}

struct RelayState {
    upstream: ByteStream,
    conv: Converter,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    tap: Option<CacheTap>,
}

/// The client body of a stream: upstream chunks converted as they arrive. With a cache tap, the
/// bytes sent are also assembled into the complete answer, stored when the stream ended well.
pub fn relay(
    upstream: ByteStream,
    conv: Converter,
    deadline: Instant,
    tap: Option<CacheTap>,
) -> Body {
    let state = RelayState {
        upstream,
        conv,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        done: false,
        tap,
    };
    let s = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let next = tokio::select! {
                biased;
                item = st.upstream.next() => Some(item),
                () = &mut st.deadline => None,
            };
            let out = match next {
                Some(Some(Ok(chunk))) => st.conv.feed(chunk),
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream stream failed after it started");
                    st.done = true;
                    st.tap = None;
                    st.conv.error("upstream_error", &e.message)
                }
                Some(None) => {
                    st.done = true;
                    let tail = st.conv.finish();
                    if let Some(mut tap) = st.tap.take() {
                        tap.assembler.push(&tail);
                        if let Some(full) = tap.assembler.finish() {
                            store(
                                &tap.cache,
                                Some(&tap.plan),
                                tap.leader,
                                Bytes::from(full),
                                &tap.deployment,
                            )
                            .await;
                        }
                    }
                    tail
                }
                None => {
                    st.done = true;
                    st.tap = None;
                    st.conv
                        .error("timeout", "the request did not finish within its deadline")
                }
            };
            if let Some(tap) = st.tap.as_mut()
                && !st.done
            {
                tap.assembler.push(&out);
            }
            if !out.is_empty() {
                return Some((Ok::<_, std::io::Error>(out), st));
            }
        }
    });
    Body::from_stream(s)
}

/// Shared by handlers: the model list a caller may see.
pub fn visible_models<'a>(rt: &'a Runtime, caller: &'a Caller) -> impl Iterator<Item = &'a String> {
    rt.model_names.iter().filter(|m| caller.may_use(m))
}
