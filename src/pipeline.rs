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

mod admit;
mod answer;
mod cached;
mod guard;
pub mod passthrough;
mod relay;
pub mod semantic;
mod side_call;

pub use admit::counts_openai_tokens;
use admit::*;
use answer::*;
use cached::*;
pub use relay::*;

use side_call::side_call;

use std::pin::Pin;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::accounting::{Accounting, Ledger};
use crate::auth::Caller;
use crate::cache::{self, Cache, Entry, Layer, Leader, Lookup, Policy};
use crate::error::{Error, UpstreamError};
use crate::headers as hn;
use crate::providers::{ByteStream, CallCtx, Op, UpstreamBody};
use crate::record::ServedBy;
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

/// The process-wide services the pipeline uses.
pub struct Services {
    pub cache: std::sync::Arc<Cache>,
    pub ledger: std::sync::Arc<Ledger>,
    /// The semantic cache's index (`cache.semantic.enabled` at start).
    pub semantic: Option<std::sync::Arc<cache::semantic::Index>>,
}

/// `x-ratelimit-*` headers for the caller's own limits.
pub type RateHeaders = Vec<(axum::http::HeaderName, crate::headers::OwnValue)>;

/// Tokens reserved for the answer when the request does not set `max_tokens`.
pub const DEFAULT_RESERVED_OUTPUT: u64 = 256;

fn translate_err(e: translate::TranslateError) -> Error {
    Error::invalid(e.to_string())
}

/// Run a chat request (either API) and build the client's answer.
pub async fn chat(
    rt: &Runtime,
    svc: &Services,
    call: ChatCall<'_>,
    rate: &mut Option<RateHeaders>,
) -> Result<Response, Error> {
    let cache = &svc.cache;
    let model = &rt
        .model(&call.head.model)
        .ok_or_else(|| Error::ModelNotFound(call.head.model.clone()))?;
    call.caller.check_model(&call.head.model)?;
    let head = call.head;
    let body = call.body;
    let client = call.client;
    let endpoint = match client {
        Format::OpenAi => crate::wire::Endpoint::Chat(Format::OpenAi),
        Format::Anthropic => crate::wire::Endpoint::Chat(Format::Anthropic),
    };
    let input_tokens = estimate_tokens(body);
    let openai_chat = client == Format::OpenAi && speaks_openai(model);
    let mut room = true;
    let mut acct = admit(
        rt,
        svc,
        call.caller,
        &head.model,
        &model.name,
        body,
        openai_chat,
        head.prompt_tokens,
        head.max_tokens,
        rate,
        &mut room,
    )
    .await?;
    acct.report_to(call.ctx.usage.clone());
    // Guardrails before the cache and the upstream: both see the masked body.
    let (mut guard, guarded) = match &rt.guardrails {
        None => (None, None),
        // Boxed: a large future, and this one's size (copied on every request) would be its.
        Some(rails) => Box::pin(guard::check_chat(rails, rt, &call)).await?,
    };
    if let (Some((b, _)), Some(u)) = (&guarded, &call.ctx.usage) {
        u.set_guarded_body(b.clone());
    }
    let (body, head) = guarded.as_ref().map_or((body, head), |(b, h)| (b, h));
    if rt.config.telemetry.log_bodies {
        // After the guardrails: what the upstream sees, masked values never in the log.
        crate::telemetry::log_request_body(&call.ctx.request_id, body);
    }
    let plan = cache_plan(rt, model.cache, call.headers, endpoint, call.caller, body);
    let leader = match cache_lookup(
        cache,
        plan.as_ref(),
        client,
        head.stream,
        head.include_usage,
        call.deadline,
        call.ctx,
        guard.as_mut(),
    )
    .await
    {
        Ok(mut hit) => {
            acct.cache_hit();
            guardrails_header(&mut hit, guard.as_ref());
            return Ok(hit);
        }
        Err(leader) => leader,
    };
    // Semantic cache: on an exact miss, a stored answer to the same question in other words.
    let mut semantic_entry = None;
    if let (Some(index), Some((key, policy))) = (&svc.semantic, plan.as_ref())
        && let Some(probe) = Box::pin(semantic::probe(
            rt,
            client,
            call.caller,
            body,
            call.deadline,
            call.ctx,
        ))
        .await
    {
        let threshold = rt.config.cache.semantic.threshold;
        if let Some((e, similarity)) =
            semantic::lookup(cache, index, &probe, threshold, policy).await
        {
            acct.cache_hit();
            let mut hit = hit_response(
                &e,
                Layer::Semantic,
                client,
                head.stream,
                head.include_usage,
                call.ctx,
                guard.as_mut(),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{similarity:.3}")) {
                hit.headers_mut().insert(hn::X_CACHE_SIMILARITY, v);
            }
            guardrails_header(&mut hit, guard.as_ref());
            // Identical requests waiting on this one take the same answer.
            if let Some(l) = leader {
                l.complete(e);
            }
            return Ok(hit);
        }
        semantic_entry = semantic::entry(probe, *key, policy).map(|e| (index.clone(), e));
    }
    let build = move |d: &Deployment, dropped: &mut translate::Dropped| -> Result<Bytes, Error> {
        match (client, d.provider.format()) {
            // Usage is always asked for, so the accounting is exact (see `stream_usage`).
            (Format::OpenAi, Format::OpenAi) if head.stream && !head.include_usage => {
                Ok(crate::stream_usage::force_include_usage(
                    &wire::splice_model(body, &head.model_span, &d.model),
                ))
            }
            (Format::OpenAi, Format::OpenAi) | (Format::Anthropic, Format::Anthropic) => {
                Ok(wire::splice_model(body, &head.model_span, &d.model))
            }
            (Format::OpenAi, Format::Anthropic) => {
                translate::chat_request_to_messages(body, &d.model, dropped)
                    .map(Bytes::from)
                    .map_err(translate_err)
            }
            (Format::Anthropic, Format::OpenAi) => {
                translate::messages_request_to_chat(body, &d.model, dropped)
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
        input_tokens,
        max_tokens: head.max_tokens.unwrap_or(translate::DEFAULT_MAX_TOKENS),
        started: call.started,
        may_hedge: room,
        limiter: Some(&svc.ledger.limiter),
    };
    let served = router::send(rt, model, &rcall, &build).await?;
    acct.served_by(&served.deployment);
    let upstream_format = served.deployment.provider.format();
    let mut resp = match served.body {
        UpstreamBody::Full(bytes) => {
            let translated = match (upstream_format, client) {
                (a, b) if a == b => Ok(bytes),
                (Format::Anthropic, Format::OpenAi) => translate::messages_response_to_chat_json(
                    &bytes,
                    &head.model,
                    translate::json_answer_tool(body).as_deref(),
                )
                .map(Bytes::from),
                _ => translate::chat_response_to_messages(&bytes, &head.model).map(Bytes::from),
            };
            let same_format = upstream_format == client;
            let out = translated.map_err(|e| Error::Upstream {
                attempts: served.attempts,
                last: UpstreamError::new(
                    &served.deployment.provider.name,
                    crate::error::UpstreamKind::Protocol,
                    format!("unreadable answer: {e}"),
                ),
            })?;
            if let Some(plan) = &plan {
                store(cache, plan, leader, &out, &served.deployment).await;
            }
            if let Some((index, entry)) = semantic_entry {
                index.insert(entry);
            }
            // Usage as the client receives it: read with the JSON check when the bytes are the
            // upstream's own, from the translation otherwise.
            let cost = if same_format {
                acct.complete_with(served.usage)
            } else {
                acct.complete(&out)
            };
            // What the caller sees; the cache keeps the answer as the upstream gave it.
            let out = match guard.as_mut() {
                Some(g) => g.answer(out),
                None => out,
            };
            let mut r = json_response(out);
            cost_header(&mut r, cost);
            guardrails_header(&mut r, guard.as_ref());
            r
        }
        UpstreamBody::Stream(stream) => {
            let conv = Converter::new(upstream_format, client, &head.model, head.include_usage)
                .with_json_answer(body);
            let tap = plan.as_ref().map(|plan| CacheTap {
                assembler: cache::stream::Assembler::new(client),
                cache: cache.clone(),
                plan: *plan,
                leader,
                deployment: served.deployment.clone(),
                semantic: semantic_entry,
            });
            let header = guard.as_ref().and_then(guard::Guard::header_value);
            let guarded = guard.take().and_then(guard::Guard::stream);
            let mut r = sse_response(relay_guarded(
                stream,
                conv,
                call.deadline,
                tap,
                Some(acct),
                guarded,
            ));
            if let Some(v) = header {
                r.headers_mut().insert(hn::X_GATEWAY_GUARDRAILS, v);
            }
            r
        }
    };
    upstream_headers(
        &mut resp,
        call.ctx,
        plan.as_ref(),
        &served.deployment,
        served.attempts,
        served.hedged,
        &served.dropped,
    );
    Ok(resp)
}

/// Run an embeddings request: a same-format pass-through whose answers may be cached.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
pub async fn embeddings(
    rt: &Runtime,
    svc: &Services,
    caller: &Caller,
    headers: &HeaderMap,
    body: &Bytes,
    head: &wire::EmbeddingsHead,
    deadline: Instant,
    ctx: &CallCtx,
    rate: &mut Option<RateHeaders>,
) -> Result<Response, Error> {
    let head = wire::PassHead {
        model: head.model.clone(),
        model_span: head.model_span.clone(),
        multipart: false,
        stream: false,
        include_usage: false,
        max_tokens: None,
        response_format: None,
    };
    let call = passthrough::PassCall {
        op: Op::Embeddings,
        caller,
        headers,
        head: &head,
        body,
        deadline,
        ctx,
        started: Instant::now(),
        cache: Some(crate::wire::Endpoint::Embeddings),
    };
    passthrough::pass_through(rt, svc, call, rate).await
}

/// A cheap token estimate for routing and capacity: about four bytes of JSON per token.
pub fn estimate_tokens(body: &[u8]) -> u64 {
    crate::tokens::estimate(body)
}

/// Shared by handlers: the model list a caller may see.
pub fn visible_models<'a>(rt: &'a Runtime, caller: &'a Caller) -> impl Iterator<Item = &'a String> {
    rt.model_names.iter().filter(|m| caller.may_use(m))
}
