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

mod cached;
mod guard;
pub mod passthrough;
mod relay;
pub mod semantic;
mod side_call;

use cached::*;
pub use relay::*;

use side_call::side_call;

use std::pin::Pin;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::accounting::{Accounting, Ledger};
use crate::auth::Caller;
use crate::cache::{self, Cache, Entry, Layer, Leader, Lookup, Policy};
use crate::error::LimitReason;
use crate::error::{Error, UpstreamError};
use crate::headers as hn;
use crate::limits::Bucket;
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
pub type RateHeaders = Vec<(axum::http::HeaderName, HeaderValue)>;

/// Tokens reserved for the answer when the request does not set `max_tokens`.
pub const DEFAULT_RESERVED_OUTPUT: u64 = 256;

/// Whether the caller's or the model's limits count tokens (a `tpm`).
fn needs_tokens(rt: &Runtime, caller: &Caller, model: &str) -> bool {
    caller.key.as_ref().is_some_and(|k| k.tpm.is_some())
        || rt
            .config
            .rate_limits
            .models
            .get(model)
            .is_some_and(|m| m.tpm.is_some())
}

/// Whether an OpenAI-format chat request for `model` has its prompt's tokens counted: a `tpm`
/// limit applies and the model's first deployment speaks OpenAI's format (the tokenizer is
/// OpenAI's); others are estimated.
pub fn counts_openai_tokens(rt: &Runtime, caller: &Caller, model: &str) -> bool {
    needs_tokens(rt, caller, model) && rt.model(model).is_some_and(|m| speaks_openai(&m))
}

/// Whether the model's first deployment speaks OpenAI's format (whose tokenizer we have).
fn speaks_openai(model: &crate::runtime::Model) -> bool {
    model
        .deployments
        .first()
        .is_some_and(|d| d.provider.format() == Format::OpenAi)
}

/// Check the caller's and the model's limits and the caller's budget; take from the buckets.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
async fn admit(
    rt: &Runtime,
    svc: &Services,
    caller: &Caller,
    model: &str,
    body: &[u8],
    openai_chat: bool,
    counted: Option<u64>,
    max_tokens: Option<u64>,
    rate: &mut Option<RateHeaders>,
    room: &mut bool,
) -> Result<Accounting, Error> {
    // A count from the head parse was made under the same condition (`counts_openai_tokens`).
    let input_tokens = counted
        .or_else(|| {
            (openai_chat && needs_tokens(rt, caller, model))
                .then(|| crate::tokens::count_openai_chat(body))
                .flatten()
        })
        .unwrap_or_else(|| estimate_tokens(body));
    let tokens = input_tokens + max_tokens.unwrap_or(DEFAULT_RESERVED_OUTPUT);
    let mut buckets = Vec::with_capacity(4);
    let mut own = (None, None);
    if let Some(k) = &caller.key {
        if let Some(rpm) = k.rpm {
            own.0 = Some(buckets.len());
            buckets.push(Bucket {
                key: k.rpm_bucket.clone(),
                limit: rpm,
                cost: 1,
                reason: LimitReason::Requests,
            });
        }
        if let Some(tpm) = k.tpm {
            own.1 = Some(buckets.len());
            buckets.push(Bucket {
                key: k.tpm_bucket.clone(),
                limit: tpm,
                cost: tokens,
                reason: LimitReason::Tokens,
            });
        }
    }
    if let Some(ml) = rt.config.rate_limits.models.get(model) {
        if let Some(rpm) = ml.rpm {
            buckets.push(Bucket {
                key: format!("m:{model}:rpm").into(),
                limit: rpm,
                cost: 1,
                reason: LimitReason::Requests,
            });
        }
        if let Some(tpm) = ml.tpm {
            buckets.push(Bucket {
                key: format!("m:{model}:tpm").into(),
                limit: tpm,
                cost: tokens,
                reason: LimitReason::Tokens,
            });
        }
    }
    let budget = caller.key.as_ref().and_then(|k| {
        k.budget_usd.map(|b| {
            let period = k.period();
            (
                crate::limits::spend::redis_key(&k.id, period),
                b,
                svc.ledger.spend.local_totals(&k.id, period).spend_usd,
            )
        })
    });
    let token_buckets: Vec<Bucket> = buckets
        .iter()
        .filter(|b| b.reason == LimitReason::Tokens)
        .cloned()
        .collect();
    if buckets.is_empty() && budget.is_none() {
        return Ok(Accounting::new(
            svc.ledger.clone(),
            caller,
            model,
            input_tokens,
            token_buckets,
        ));
    }
    let verdict = svc
        .ledger
        .limiter
        .check(
            &buckets,
            budget.as_ref().map(|(k, b, s)| (k.as_str(), *b, *s)),
        )
        .await?;
    if verdict.budget_exceeded {
        metrics::counter!(crate::metrics::RATE_LIMITED, "reason" => "budget").increment(1);
        let period = caller
            .key
            .as_ref()
            .map(|k| k.period())
            .unwrap_or(crate::config::DEFAULT_BUDGET_PERIOD);
        return Err(Error::BudgetExceeded {
            retry_after: std::time::Duration::from_millis(crate::limits::spend::until_period_end(
                period,
            )),
        });
    }
    let mut headers = RateHeaders::with_capacity(6);
    let limit = |v: &Option<HeaderValue>| v.clone().unwrap_or(HeaderValue::from_static("0"));
    if let (Some(i), Some(k)) = (own.0, caller.key.as_ref()) {
        let st = verdict.states.get(i).copied().unwrap_or_default();
        headers.push((hn::X_RATELIMIT_LIMIT_REQUESTS, limit(&k.rpm_header)));
        headers.push((hn::X_RATELIMIT_REMAINING_REQUESTS, hn::number(st.remaining)));
        headers.push((
            hn::X_RATELIMIT_RESET_REQUESTS,
            crate::limits::openai_duration_header(st.reset_ms),
        ));
    }
    if let (Some(i), Some(k)) = (own.1, caller.key.as_ref()) {
        let st = verdict.states.get(i).copied().unwrap_or_default();
        headers.push((hn::X_RATELIMIT_LIMIT_TOKENS, limit(&k.tpm_header)));
        headers.push((hn::X_RATELIMIT_REMAINING_TOKENS, hn::number(st.remaining)));
        headers.push((
            hn::X_RATELIMIT_RESET_TOKENS,
            crate::limits::openai_duration_header(st.reset_ms),
        ));
    }
    if !headers.is_empty() {
        *rate = Some(headers);
    }
    *room = router::room_left(&buckets, &verdict.states);
    if !verdict.allowed {
        let reason = verdict
            .denied
            .and_then(|i| buckets.get(i))
            .map_or(LimitReason::Requests, |b| b.reason);
        let label = match reason {
            LimitReason::Requests => "requests",
            LimitReason::Tokens => "tokens",
        };
        metrics::counter!(crate::metrics::RATE_LIMITED, "reason" => label).increment(1);
        if reason == LimitReason::Tokens
            && verdict
                .denied
                .and_then(|i| buckets.get(i))
                .is_some_and(|b| b.cost > b.limit)
        {
            return Err(Error::invalid(format!(
                "this request needs about {tokens} tokens, more than the tokens-per-minute limit allows; send a smaller request or lower max_tokens"
            )));
        }
        return Err(Error::RateLimited {
            reason,
            retry_after: std::time::Duration::from_millis(verdict.retry_after_ms.max(1)),
        });
    }
    Ok(Accounting::new(
        svc.ledger.clone(),
        caller,
        model,
        input_tokens,
        token_buckets,
    ))
}

/// `x-gateway-guardrails`, when guardrails applied.
fn guardrails_header(resp: &mut Response, guard: Option<&guard::Guard>) {
    if let Some(v) = guard.and_then(guard::Guard::header_value) {
        resp.headers_mut().insert(hn::X_GATEWAY_GUARDRAILS, v);
    }
}

/// The `x-cache` and `x-gateway-*` headers of an answer from a deployment.
fn upstream_headers(
    resp: &mut Response,
    ctx: &CallCtx,
    plan: Option<&(cache::Key, Policy)>,
    d: &Deployment,
    attempts: u32,
) {
    let cache = if plan.is_some() { "MISS" } else { "BYPASS" };
    served_headers(
        resp,
        ctx,
        ServedBy {
            cache: HeaderValue::from_static(cache),
            provider: d.headers.provider.clone(),
            deployment_model: d.headers.model.clone(),
            attempts: attempts_header(attempts),
        },
    );
}

/// Put what served the answer in its headers, and beside it for the request's metrics and
/// access log (`record::RequestRecord`, when the request has one).
fn served_headers(resp: &mut Response, ctx: &CallCtx, served: ServedBy) {
    let h = resp.headers_mut();
    h.insert(hn::X_CACHE, served.cache.clone());
    if let Some(v) = &served.provider {
        h.insert(hn::X_GATEWAY_PROVIDER, v.clone());
    }
    if let Some(v) = &served.deployment_model {
        h.insert(hn::X_GATEWAY_DEPLOYMENT_MODEL, v.clone());
    }
    h.insert(hn::X_GATEWAY_ATTEMPTS, served.attempts.clone());
    if let Some(u) = &ctx.usage {
        u.set_served(served);
    }
}

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
        Some(rails) => guard::check_chat(rails, rt, &call).await?,
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
        && let Some(probe) =
            semantic::probe(rt, client, call.caller, body, call.deadline, call.ctx).await
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
            store(
                cache,
                plan.as_ref(),
                leader,
                out.clone(),
                &served.deployment,
            )
            .await;
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
    );
    if served.hedged {
        resp.headers_mut()
            .insert(hn::X_GATEWAY_HEDGED, HeaderValue::from_static("true"));
    }
    served.dropped.set_header(resp.headers_mut());
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

fn cost_header(resp: &mut Response, cost: Option<f64>) {
    if let Some(c) = cost
        && let Ok(v) = HeaderValue::from_str(&format!("{c:.8}"))
    {
        resp.headers_mut().insert(hn::X_GATEWAY_COST_USD, v);
    }
}

/// Room for every header an answer gets (content type, request id, cache, provider, deployment,
/// attempts, cost, six `x-ratelimit-*`): the map is made once instead of grown twice.
const ANSWER_HEADERS: usize = 16;

fn json_response(body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    *r.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(hn::X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    r
}

/// `x-gateway-attempts` (the small counts without formatting a number each time).
fn attempts_header(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(attempts as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(attempts),
    }
}

/// Shared by handlers: the model list a caller may see.
pub fn visible_models<'a>(rt: &'a Runtime, caller: &'a Caller) -> impl Iterator<Item = &'a String> {
    rt.model_names.iter().filter(|m| caller.may_use(m))
}
