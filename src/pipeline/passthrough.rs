//! Same-format pass-through calls: embeddings and the endpoints served only by OpenAI-type
//! deployments (`/v1/completions`, `/v1/images/generations`, `/v1/audio/speech`,
//! `/v1/audio/transcriptions`, `/v1/moderations`, `/v1/rerank`). One path for all of them:
//!
//! ```text
//! head (parsed) → model lookup (404) → permission (403) → a deployment serves the op? (400)
//!   → limits and budget (429) → cache (embeddings only) → router::send (attempts × fallbacks,
//!   deployments whose provider lacks the op skipped) → body with `model` spliced
//!   → answer: bytes as they came (JSON, text, audio; streams relayed chunk by chunk)
//! ```
//!
//! Accounting: the answer's `usage` when it has one (completions, embeddings, gpt-image and
//! gpt-4o-transcribe answers, streamed completions, for which usage is always asked of the
//! upstream and taken out again when the client did not ask); otherwise the admission estimate
//! of the input at the deployment's prices, and no output tokens (audio, DALL·E images, rerank).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{
    Converter, RateHeaders, Services, admit, cache_lookup, cache_plan, cost_header,
    estimate_tokens, json_response, relay, sse_response, store, upstream_headers,
};
use crate::auth::Caller;
use crate::error::Error;
use crate::providers::{ByteStream, CallCtx, Op, UpstreamBody};
use crate::router::{self, Call};
use crate::runtime::{Deployment, Runtime};
use crate::wire::{self, Format, PassHead};

/// One pass-through call.
pub struct PassCall<'a> {
    pub op: Op,
    pub caller: &'a Caller,
    pub headers: &'a HeaderMap,
    pub head: &'a PassHead,
    pub body: &'a Bytes,
    pub deadline: Instant,
    pub ctx: &'a CallCtx,
    /// When the gateway received the request.
    pub started: Instant,
    /// The cache endpoint, where answers of this op are cached (embeddings).
    pub cache: Option<crate::wire::Endpoint>,
}

/// Run a pass-through call and build the client's answer.
pub async fn pass_through(
    rt: &Runtime,
    svc: &Services,
    call: PassCall<'_>,
    rate: &mut Option<RateHeaders>,
) -> Result<Response, Error> {
    let PassCall {
        op,
        caller,
        head,
        body,
        ctx,
        deadline,
        ..
    } = call;
    let model = &rt
        .model(&head.model)
        .ok_or_else(|| Error::ModelNotFound(head.model.clone()))?;
    caller.check_model(&head.model)?;
    if !router::serves(rt, model, op) {
        return Err(router::not_served(&head.model, op));
    }
    // An upload's bytes are audio, not tokens.
    let input_tokens = if head.multipart {
        0
    } else {
        estimate_tokens(body)
    };
    let completions = op == Op::Completions;
    let max_tokens = if completions {
        head.max_tokens
    } else {
        Some(0)
    };
    let mut room = true;
    let mut acct = admit(
        rt,
        svc,
        caller,
        &head.model,
        &model.name,
        body,
        false,
        Some(input_tokens),
        max_tokens,
        rate,
        &mut room,
    )
    .await?;
    acct.report_to(ctx.usage.clone());
    let plan = call
        .cache
        .and_then(|endpoint| cache_plan(rt, model.cache, call.headers, endpoint, caller, body));
    let leader = match cache_lookup(
        &svc.cache,
        plan.as_ref(),
        Format::OpenAi,
        false,
        false,
        deadline,
        ctx,
        None,
    )
    .await
    {
        Ok(hit) => {
            acct.cache_hit();
            return Ok(hit);
        }
        Err(leader) => leader,
    };
    let build = |d: &Deployment, _: &mut crate::translate::Dropped| -> Result<Bytes, Error> {
        let spliced = wire::splice_pass_model(body, head, &d.model);
        // Usage is always asked for, so the accounting is exact (see `stream_usage`).
        Ok(if completions && head.stream && !head.include_usage {
            crate::stream_usage::force_include_usage(&spliced)
        } else {
            spliced
        })
    };
    let rcall = Call {
        op,
        // Audio is relayed as it arrives.
        stream: head.stream || op == Op::Speech,
        deadline,
        ctx,
        input_tokens,
        max_tokens: max_tokens.unwrap_or(super::DEFAULT_RESERVED_OUTPUT),
        started: call.started,
        may_hedge: room,
        limiter: Some(&svc.ledger.limiter),
    };
    let served = router::send(rt, model, &rcall, &build).await?;
    acct.served_by(&served.deployment);
    let mut resp = match served.body {
        UpstreamBody::Full(b) => {
            if let Some(plan) = &plan {
                store(&svc.cache, plan, leader, &b, &served.deployment).await;
            }
            let usage = served.usage.or_else(|| {
                (!op.answers_json())
                    .then(|| crate::usage::from_body(&b))
                    .flatten()
            });
            let cost = acct.complete_with(usage);
            let mut r = json_response(b);
            if let Some(ct) = head.content_type(op) {
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            cost_header(&mut r, cost);
            r
        }
        UpstreamBody::Stream(s) if op == Op::Speech && !head.stream => {
            // No usage in audio: the input estimate, settled now.
            let cost = acct.complete_with(None);
            drop(acct);
            let mut r = Response::new(binary_relay(s, deadline));
            *r.headers_mut() = HeaderMap::with_capacity(16);
            let audio = head.content_type(op).unwrap_or("audio/mpeg");
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(audio));
            cost_header(&mut r, cost);
            r
        }
        UpstreamBody::Stream(s) => {
            let conv = Converter::new(Format::OpenAi, Format::OpenAi, &head.model, {
                // Only a completions stream was asked for usage the client may not want.
                !completions || head.include_usage
            });
            sse_response(relay(s, conv, deadline, None, Some(acct)))
        }
    };
    upstream_headers(
        &mut resp,
        ctx,
        plan.as_ref(),
        &served.deployment,
        served.attempts,
        served.hedged,
        &served.dropped,
    );
    Ok(resp)
}

/// A binary answer relayed as it arrives, cut at the request's deadline. A failure (or the
/// deadline) mid-answer ends the body with an error, so the client's HTTP read fails rather
/// than taking a truncated file for a whole one.
fn binary_relay(upstream: ByteStream, deadline: Instant) -> Body {
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    let s = futures_util::stream::unfold(
        (upstream, sleep, false),
        |(mut up, mut sleep, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                item = up.next() => match item {
                    Some(Ok(b)) => Some((Ok(b), (up, sleep, false))),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "upstream audio failed after it started");
                        Some((Err(std::io::Error::other(e.message)), (up, sleep, true)))
                    }
                    None => None,
                },
                () = &mut sleep => Some((
                    Err(std::io::Error::other("the request did not finish within its deadline")),
                    (up, sleep, true),
                )),
            }
        },
    );
    Body::from_stream(s)
}
