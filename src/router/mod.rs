//! Choosing deployments and surviving their failures: the attempts × fallbacks loop.
//!
//! For a model, up to `1 + retries` attempts are made. Each picks, by the model's strategy, among
//! the deployments whose circuit admits traffic and whose `rpm`/`tpm` capacity is not used up,
//! preferring ones not yet tried for this request. Between attempts: exponential backoff with full
//! jitter, at least the upstream's `retry-after`, never past the request's deadline. A caller's
//! mistake (an upstream 4xx other than 408/409/429) ends the loop at once, is passed back and does
//! not count against the circuit. When a model's attempts are used up its `fallbacks` are tried in
//! order, each with its own strategy and attempts. A stream counts as served only once its first
//! chunk arrived, so a failure before the first byte is retried like any other; after it, a
//! failure ends the stream (the pipeline writes an error event) and counts for the circuit.

mod attempt;
pub mod capacity;
pub mod hedge;
pub mod shadow;
pub mod strategy;
pub mod trace;
mod tracked;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use self::strategy::Candidate;
use crate::clock::monotonic_ms as now_ms;
use crate::error::{Error, LimitReason, UpstreamError, UpstreamKind};
use crate::providers::{CallCtx, Op, UpstreamBody};
use crate::runtime::breaker::Admission;
use crate::runtime::{Deployment, Model, Runtime};
use crate::translate::Dropped;
use crate::usage::estimate_cost;

/// A successful upstream answer and who gave it.
pub struct Served {
    pub body: UpstreamBody,
    pub deployment: Arc<Deployment>,
    /// The model that served it (the requested one or a fallback).
    pub model: Arc<Model>,
    pub attempts: u32,
    /// The usage of a complete answer, read while checking it is JSON (`None` for a stream, or
    /// an answer without usage).
    pub usage: Option<crate::usage::Usage>,
    /// A hedge's answer (`x-gateway-hedged: true`).
    pub hedged: bool,
    /// Request fields the serving provider could not take (`x-gateway-dropped`).
    pub dropped: crate::translate::Dropped,
}

/// One request as the router sees it.
pub struct Call<'a> {
    pub op: Op,
    pub stream: bool,
    pub deadline: Instant,
    pub ctx: &'a CallCtx,
    /// Estimated prompt tokens (for `cost` routing and `tpm` capacity).
    pub input_tokens: u64,
    /// The request's `max_tokens`, or a default.
    pub max_tokens: u64,
    /// When the gateway received the request (for time to first token).
    pub started: Instant,
    /// Whether the caller's limits leave room for a hedge (none goes out when a limit that
    /// admitted this request is used up).
    pub may_hedge: bool,
    /// The limiter, for deployments' `rpm`/`tpm` counted in Redis by all replicas together.
    pub limiter: Option<&'a crate::limits::Limiter>,
}

fn outcome(r: &Result<UpstreamBody, UpstreamError>) -> &'static str {
    match r {
        Ok(_) => "success",
        Err(e) if e.is_caller_fault() => "client_error",
        Err(e) => match e.kind {
            UpstreamKind::Status(_) => "error_status",
            UpstreamKind::Timeout => "timeout",
            UpstreamKind::Connect => "connect_error",
            UpstreamKind::Protocol => "protocol_error",
        },
    }
}

/// The delay before retry `n` (0-based) of a request: full jitter, at least `retry_after`.
pub fn backoff(
    n: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let jittered = crate::backoff::delay(n, initial, max, crate::backoff::Jitter::Full);
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

/// Whether some deployment of `model` or of its fallbacks has a provider serving `op`.
pub fn serves(rt: &Runtime, model: &Model, op: Op) -> bool {
    let has = |m: &Model| m.deployments.iter().any(|d| d.provider.serves(op));
    has(model)
        || model
            .fallbacks
            .iter()
            .filter_map(|name| rt.model(name))
            .any(|m| has(&m))
}

/// The 400 for a model none of whose deployments (nor its fallbacks') serves `op`.
pub fn not_served(model: &str, op: Op) -> Error {
    let who = match op {
        Op::Rerank => "providers of type openai, cohere, vllm or together serve it",
        Op::Moderations => "OpenAI-type providers serve it",
        _ => "OpenAI-type providers and Azure serve it",
    };
    Error::invalid(format!(
        "the model \"{}\" has no deployment whose provider serves {} ({who})",
        crate::error::clip(model),
        op.path(),
    ))
}

/// Why no deployment of a model could be tried.
#[derive(Default)]
struct Blocked {
    /// Soonest a circuit may half-open, in ms.
    circuit_retry_ms: Option<u64>,
    /// Some deployment was skipped for capacity: which limit (`requests` when any deployment was
    /// at its `rpm`, `tokens` when every one skipped was at its `tpm`).
    capacity: Option<LimitReason>,
}

fn candidates(
    m: &Model,
    tried: &[usize],
    call: &Call<'_>,
    now: u64,
    blocked: &mut Blocked,
) -> Vec<Candidate> {
    let tokens = call.input_tokens + call.max_tokens;
    let shared = capacity::shared(call);
    let mut out = Vec::with_capacity(m.deployments.len());
    for (i, d) in m.deployments.iter().enumerate() {
        // A provider without this endpoint (an Anthropic deployment for `/v1/completions`).
        if !d.provider.serves(call.op) {
            continue;
        }
        if !d.state.breaker.would_admit(now) {
            let wait = d.state.breaker.retry_in_ms(now).max(1);
            blocked.circuit_retry_ms = Some(blocked.circuit_retry_ms.map_or(wait, |w| w.min(wait)));
            continue;
        }
        let full = if shared {
            d.state.full(now)
        } else {
            d.state.over_capacity(d.rpm, d.tpm, tokens, now)
        };
        if let Some(reason) = full {
            if blocked.capacity != Some(LimitReason::Requests) {
                blocked.capacity = Some(reason);
            }
            continue;
        }
        out.push(Candidate {
            index: i,
            priority: d.priority,
            weight: d.weight,
            latency_ms: d.state.latency_ms(),
            in_flight: d.state.in_flight(),
            cost: estimate_cost(
                call.input_tokens,
                call.max_tokens,
                d.input_cost_per_mtok,
                d.output_cost_per_mtok,
            ),
        });
    }
    // Prefer deployments not yet tried for this request; when all were, any may be tried again.
    if out.iter().any(|c| !tried.contains(&c.index)) {
        out.retain(|c| !tried.contains(&c.index));
    }
    out
}

/// Send `call` to `model`'s deployments, then its fallbacks. `build` makes the upstream body for
/// one deployment (it translates when the provider's format differs from the client's).
pub async fn send(
    rt: &Runtime,
    model: &Arc<Model>,
    call: &Call<'_>,
    build: &(dyn Fn(&Deployment, &mut Dropped) -> Result<Bytes, Error> + Sync),
) -> Result<Served, Error> {
    let res = &rt.config.resilience;
    let mut attempts = 0u32;
    let mut last: Option<UpstreamError> = None;
    let mut blocked = Blocked::default();
    let chain = std::iter::once(model.clone())
        .chain(model.fallbacks.iter().filter_map(|name| rt.model(name)));
    for m in chain {
        let mut tried: Vec<usize> = Vec::new();
        let mut model_attempts = 0u32;
        while model_attempts <= m.retries {
            let at = Instant::now();
            if at >= call.deadline {
                return Err(Error::Timeout);
            }
            let now = crate::clock::monotonic_ms_at(at);
            let cands = candidates(&m, &tried, call, now, &mut blocked);
            let Some(idx) = strategy::pick(m.routing, &cands, &mut rand::rng()) else {
                break;
            };
            let d = &m.deployments[idx];
            let admission = d.state.breaker.admit(now);
            if let Admission::No { .. } = admission {
                // Lost a race for the half-open probe: look again.
                tried.push(idx);
                if tried.len() > m.deployments.len() * 2 {
                    break;
                }
                continue;
            }
            if !capacity::take(call, d, call.input_tokens + call.max_tokens).await {
                // At its limit across replicas: another deployment, not an attempt.
                if admission == Admission::Probe {
                    d.state.breaker.release_probe();
                }
                if let Some(reason) = d.state.full(now_ms())
                    && blocked.capacity != Some(LimitReason::Requests)
                {
                    blocked.capacity = Some(reason);
                }
                tried.push(idx);
                if tried.len() > m.deployments.len() * 2 {
                    break;
                }
                continue;
            }
            let mut dropped = Dropped::default();
            let body = build(d, &mut dropped)?;
            model_attempts += 1;
            attempts += 1;
            tried.push(idx);
            // Pinned where it is made: the race below borrows it rather than moving a large
            // future (a copy of it cost ~1,300 instructions per request).
            let mut first = std::pin::pin!(attempt::run(
                call,
                &m,
                d.clone(),
                admission,
                body,
                dropped,
                attempts,
                0,
                cands.len(),
                at,
            ));
            let done = match &m.hedge {
                None => first.await,
                Some(h) => {
                    // Hedges found at their shared capacity when about to go: not attempts.
                    let refused = std::sync::atomic::AtomicU32::new(0);
                    let refused_ref = &refused;
                    let launch = |n: u32| {
                        let (i, body, dropped) = hedge_target(&m, &tried, call, build)?;
                        tried.push(i);
                        model_attempts += 1;
                        attempts += 1;
                        let d = m.deployments[i].clone();
                        let m = &m;
                        let number = attempts;
                        Some(async move {
                            if !capacity::take(call, &d, call.input_tokens + call.max_tokens).await
                            {
                                refused_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                return None;
                            }
                            Some(
                                attempt::run(
                                    call,
                                    m,
                                    d,
                                    Admission::Yes,
                                    body,
                                    dropped,
                                    number,
                                    n,
                                    0,
                                    Instant::now(),
                                )
                                .await,
                            )
                        })
                    };
                    let settle = |d: attempt::Done| {
                        if let Err(e) = &d.result {
                            failed(&d.d, d.guard, e);
                        }
                    };
                    let done =
                        hedge::race(first.as_mut(), h, &m.name, call.stream, at, launch, settle)
                            .await;
                    let refused = refused.into_inner();
                    attempts -= refused;
                    model_attempts -= refused;
                    done
                }
            };
            let attempt::Done {
                d,
                admission,
                guard,
                result,
                usage,
                took,
                hedge,
                dropped,
            } = done;
            match result {
                Ok(body) => {
                    d.state.record_latency(took);
                    if let Some(h) = &m.hedge {
                        h.record(call.stream, took);
                    }
                    if call.stream {
                        crate::metrics::time_to_first_token(
                            &m.name,
                            &d.provider.name,
                            call.started.elapsed(),
                        );
                    }
                    d.state.breaker.on_success();
                    let body = match body {
                        UpstreamBody::Stream(s) => {
                            UpstreamBody::Stream(tracked::track(s, d.clone(), guard, took, call.op))
                        }
                        full => full,
                    };
                    let body = shadow::tap(rt, model, call, build, &d, took, body);
                    return Ok(Served {
                        body,
                        deployment: d,
                        model: m.clone(),
                        attempts,
                        usage,
                        hedged: hedge > 0,
                        dropped,
                    });
                }
                Err(e) if e.is_caller_fault() => {
                    if admission == Admission::Probe {
                        d.state.breaker.release_probe();
                    }
                    return Err(Error::UpstreamRejected(e));
                }
                Err(e) => {
                    let retry_after = e.retry_after;
                    failed(&d, guard, &e);
                    last = Some(e);
                    if model_attempts > m.retries {
                        break;
                    }
                    let wait = backoff(
                        model_attempts - 1,
                        res.backoff_initial.get(),
                        res.backoff_max.get(),
                        retry_after,
                    );
                    if Instant::now() + wait >= call.deadline {
                        return Err(finish(attempts, last, call));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    if attempts == 0 {
        if !serves(rt, model, call.op) {
            return Err(not_served(&model.name, call.op));
        }
        if let Some(ms) = blocked.circuit_retry_ms {
            return Err(Error::Unavailable {
                message: format!(
                    "every deployment of \"{}\" and its fallbacks is failing (circuit open); retry later",
                    model.name
                ),
                retry_after: Duration::from_millis(ms),
            });
        }
        if let Some(reason) = blocked.capacity {
            let into_minute = now_ms() % 60_000;
            return Err(Error::RateLimited {
                reason,
                retry_after: Duration::from_millis(60_000 - into_minute),
            });
        }
    }
    Err(finish(attempts, last, call))
}

/// Whether the limits that admitted a request leave room for a hedge: something left in every
/// requests bucket, and at least this request's tokens in every tokens bucket.
pub fn room_left(buckets: &[crate::limits::Bucket], states: &[crate::limits::BucketState]) -> bool {
    buckets.iter().zip(states).all(|(b, st)| match b.reason {
        LimitReason::Requests => st.remaining > 0,
        LimitReason::Tokens => st.remaining >= b.cost,
    })
}

/// A failed attempt (not the caller's fault): its circuit is told.
fn failed(d: &Deployment, guard: crate::runtime::health::InFlight, e: &UpstreamError) {
    drop(guard);
    let opened = d.state.record_failure(now_ms());
    tracing::debug!(
        provider = %d.provider.name, deployment_model = %d.model, error = %e,
        circuit_opened = opened, "attempt failed"
    );
}

/// Where a hedge would go, with its body: the strategy's pick among the deployments not tried
/// yet whose circuit is closed and that have capacity; none while the caller is at a limit.
fn hedge_target(
    m: &Model,
    tried: &[usize],
    call: &Call<'_>,
    build: &(dyn Fn(&Deployment, &mut Dropped) -> Result<Bytes, Error> + Sync),
) -> Option<(usize, Bytes, Dropped)> {
    if !call.may_hedge || Instant::now() >= call.deadline {
        return None;
    }
    let mut cands = candidates(m, tried, call, now_ms(), &mut Blocked::default());
    cands.retain(|c| {
        !tried.contains(&c.index)
            && m.deployments[c.index].state.breaker.state()
                == crate::runtime::breaker::CircuitState::Closed
    });
    let i = strategy::pick(m.routing, &cands, &mut rand::rng())?;
    let mut dropped = Dropped::default();
    let body = build(&m.deployments[i], &mut dropped).ok()?;
    Some((i, body, dropped))
}

fn finish(attempts: u32, last: Option<UpstreamError>, call: &Call<'_>) -> Error {
    match last {
        Some(l) if l.kind == UpstreamKind::Timeout && Instant::now() >= call.deadline => {
            Error::Timeout
        }
        Some(last) => Error::Upstream { attempts, last },
        None => Error::Unavailable {
            message: "no deployment could serve this request".to_owned(),
            retry_after: Duration::from_secs(1),
        },
    }
}

/// A 200 whose body is not JSON is a broken answer: a failed (retryable) attempt. The one
/// parse that checks it also reads its usage.
fn valid_json(
    body: Bytes,
    provider: &str,
) -> Result<(UpstreamBody, Option<crate::usage::Usage>), UpstreamError> {
    match crate::usage::parse_body(&body) {
        Ok(usage) => Ok((UpstreamBody::Full(body), usage)),
        Err(e) => Err(UpstreamError::new(
            provider,
            UpstreamKind::Protocol,
            format!("the answer is not valid JSON ({e})"),
        )),
    }
}

/// Wait for a stream's first chunk: until then, a failure is an ordinary failed attempt.
async fn first_chunk(
    mut s: crate::providers::ByteStream,
    provider: &str,
) -> Result<UpstreamBody, UpstreamError> {
    loop {
        match s.next().await {
            Some(Ok(first)) if first.is_empty() => {}
            Some(Ok(first)) => {
                let rest = futures_util::stream::once(async move { Ok(first) }).chain(s);
                return Ok(UpstreamBody::Stream(Box::pin(rest)));
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(UpstreamError::new(
                    provider,
                    UpstreamKind::Protocol,
                    "the stream ended before its first event",
                ));
            }
        }
    }
}

/// Active health checking (`resilience.health_check_interval` > 0): every deployment whose
/// circuit is open and due for its half-open probe gets a tiny chat request instead of a user's.
/// Any answer that is not a retryable failure (a 2xx, or a 4xx such as "not a chat model")
/// shows the deployment is reachable and closes the circuit.
pub async fn probe_open_deployments(rt: &Runtime) {
    let ctx = CallCtx {
        request_id: crate::ids::random_shared_id("healthcheck_"),
        traceparent: None,
        anthropic_beta: None,
        usage: None,
    };
    let mut seen = std::collections::HashSet::new();
    for m in rt.models.values() {
        for d in &m.deployments {
            if !seen.insert(Arc::as_ptr(&d.state) as usize) {
                continue;
            }
            let now = now_ms();
            if d.state.breaker.admit(now) != Admission::Probe {
                continue;
            }
            let body = match d.provider.format() {
                crate::wire::Format::Anthropic => serde_json::json!({
                    "model": d.model, "max_tokens": 1,
                    "messages": [{"role": "user", "content": "ping"}]
                }),
                crate::wire::Format::OpenAi => serde_json::json!({
                    "model": d.model, "max_tokens": 1,
                    "messages": [{"role": "user", "content": "ping"}]
                }),
            };
            let timeout = m.timeout.unwrap_or(d.provider.timeout);
            let result = d
                .provider
                .send(
                    Op::Chat,
                    &d.model,
                    d.url(Op::Chat),
                    Bytes::from(body.to_string()),
                    false,
                    timeout,
                    &ctx,
                    &mut crate::translate::Dropped::default(),
                )
                .await;
            match result {
                Err(e) if e.is_retryable() => {
                    d.state.breaker.on_failure(now_ms());
                    tracing::debug!(provider = %d.provider.name, deployment_model = %d.model, error = %e, "health probe failed");
                }
                _ => {
                    d.state.breaker.on_success();
                    tracing::info!(provider = %d.provider.name, deployment_model = %d.model, "health probe succeeded; circuit closed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        for n in 0..40 {
            let b = backoff(n, Duration::from_millis(100), Duration::from_secs(5), None);
            assert!(b <= Duration::from_secs(5));
        }
        let b = backoff(
            0,
            Duration::from_millis(100),
            Duration::from_secs(5),
            Some(Duration::from_secs(1)),
        );
        assert!(b >= Duration::from_secs(1));
    }
}
