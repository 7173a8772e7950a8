//! Shadow traffic (`models[].shadow`): a sampled fraction of a model's chat requests is sent
//! again, once the caller's answer is complete, to another model; the two answers are compared
//! into metrics and a debug log line. The shadow's answer is never shown to the caller, never
//! cached, never counted against the caller's limits or budget (it counts for its deployment's
//! breaker, latency and capacity, like any upstream request).
//!
//! The shadow request's body is made with the caller's request when the primary answer is
//! chosen (one deployment of the shadow model, picked by its strategy; no retries, no hedges).
//! At most [`MAX_PENDING`] shadow requests are out per process: past that a sampled request is
//! dropped and counted (`outcome="dropped"`), so a slow shadow never queues work.

pub mod compare;

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{Blocked, Call, candidates, strategy};
use crate::cache::stream::Assembler;
use crate::clock::monotonic_ms as now_ms;
use crate::error::{Error, UpstreamError};
use crate::metrics::{
    SHADOW_COST, SHADOW_LATENCY_RATIO, SHADOW_MATCHES, SHADOW_REQUESTS, SHADOW_TOKENS,
};
use crate::providers::{ByteStream, CallCtx, Op, UpstreamBody};
use crate::runtime::breaker::Admission;
use crate::runtime::policy::Shadow;
use crate::runtime::{Deployment, Model, Runtime};
use crate::translate::Dropped;

/// Shadow requests out at once, per process.
pub const MAX_PENDING: usize = 32;
/// A shadow request's own deadline (its model's or provider's timeout applies within it).
const SHADOW_DEADLINE: Duration = Duration::from_secs(600);

fn pending() -> &'static Arc<Semaphore> {
    static P: OnceLock<Arc<Semaphore>> = OnceLock::new();
    P.get_or_init(|| Arc::new(Semaphore::new(MAX_PENDING)))
}

/// A shadow request ready to go once the primary answer is complete.
struct Job {
    model: Arc<str>,
    shadow: Arc<Model>,
    d: Arc<Deployment>,
    body: Bytes,
    stream: bool,
    input_tokens: u64,
    max_tokens: u64,
    ctx: CallCtx,
    primary: Arc<Deployment>,
    /// When the primary's attempt started.
    primary_started: Instant,
}

/// When `model` has a shadow and this request is sampled: the served `body` wrapped so that,
/// once complete, the shadow request goes out.
pub(super) fn tap(
    rt: &Runtime,
    model: &Model,
    call: &Call<'_>,
    build: &(dyn Fn(&Deployment, &mut Dropped) -> Result<Bytes, Error> + Sync),
    primary: &Arc<Deployment>,
    took: Duration,
    body: UpstreamBody,
) -> UpstreamBody {
    let Some(s) = &model.shadow else { return body };
    if call.op != Op::Chat || !s.sampled() {
        return body;
    }
    let Some(job) = job(rt, model, s, call, build, primary, took) else {
        count(&model.name, &s.model, "dropped");
        return body;
    };
    match body {
        UpstreamBody::Full(b) => {
            job.start(b.clone());
            UpstreamBody::Full(b)
        }
        UpstreamBody::Stream(inner) => UpstreamBody::Stream(Box::pin(Tap {
            inner,
            assembler: Some(Assembler::new(primary.provider.format())),
            job: Some(job),
        })),
    }
}

fn job(
    rt: &Runtime,
    model: &Model,
    s: &Shadow,
    call: &Call<'_>,
    build: &(dyn Fn(&Deployment, &mut Dropped) -> Result<Bytes, Error> + Sync),
    primary: &Arc<Deployment>,
    took: Duration,
) -> Option<Job> {
    let shadow = &rt.model(&s.model)?;
    let cands = candidates(shadow, &[], call, now_ms(), &mut Blocked::default());
    let i = strategy::pick(shadow.routing, &cands, &mut rand::rng())?;
    let d = shadow.deployments.get(i)?;
    // The shadow's own dropped fields are not the client's answer's: not reported.
    let body = build(d, &mut Dropped::default()).ok()?;
    Some(Job {
        model: model.name.clone(),
        shadow: shadow.clone(),
        d: d.clone(),
        body,
        stream: call.stream,
        input_tokens: call.input_tokens,
        max_tokens: call.max_tokens,
        ctx: CallCtx {
            request_id: call.ctx.request_id.clone(),
            traceparent: None,
            anthropic_beta: call.ctx.anthropic_beta.clone(),
            usage: None,
        },
        primary: primary.clone(),
        primary_started: Instant::now()
            .checked_sub(took)
            .unwrap_or_else(Instant::now),
    })
}

fn count(model: &str, shadow: &str, outcome: &'static str) {
    metrics::counter!(SHADOW_REQUESTS, "model" => model.to_owned(),
        "shadow_model" => shadow.to_owned(), "outcome" => outcome)
    .increment(1);
}

impl Job {
    /// The primary answer is complete (`answer`, in its deployment's format): send the shadow
    /// request unless too many are out already.
    fn start(self, answer: Bytes) {
        let primary_took = self.primary_started.elapsed();
        let Ok(permit) = pending().clone().try_acquire_owned() else {
            count(&self.model, &self.shadow.name, "dropped");
            return;
        };
        crate::tasks::spawn(async move {
            self.run(answer, primary_took).await;
            drop(permit);
        });
    }

    async fn run(self, answer: Bytes, primary_took: Duration) {
        let started = Instant::now();
        let call = Call {
            op: Op::Chat,
            stream: self.stream,
            deadline: started + SHADOW_DEADLINE,
            ctx: &self.ctx,
            input_tokens: self.input_tokens,
            max_tokens: self.max_tokens,
            started,
            may_hedge: false,
            limiter: None,
        };
        let result = self.send(&call).await;
        let took = started.elapsed();
        let (name, shadow_name) = (&self.model, &self.shadow.name);
        let body = match result {
            Ok(b) => b,
            Err(e) => {
                count(name, shadow_name, "error");
                tracing::debug!(
                    request_id = %self.ctx.request_id, model = %name, shadow_model = %shadow_name,
                    error = %e, "shadow request failed"
                );
                return;
            }
        };
        let (Some(p), Some(s)) = (
            compare::read(self.primary.provider.format(), &answer),
            compare::read(self.d.provider.format(), &body),
        ) else {
            count(name, shadow_name, "error");
            return;
        };
        count(name, shadow_name, "ok");
        let ratio = took.as_secs_f64() / primary_took.as_secs_f64().max(1e-6);
        metrics::histogram!(SHADOW_LATENCY_RATIO, "model" => name.clone(),
            "shadow_model" => shadow_name.clone())
        .record(ratio);
        let v = compare::compare(&p, &s);
        let checks = [
            ("text_exact", Some(v.text_exact)),
            ("text_normalised", Some(v.text_normalised)),
            ("finish_reason", Some(v.finish_reason)),
            ("tool_calls", v.tool_calls),
        ];
        for (check, same) in checks {
            if let Some(same) = same {
                metrics::counter!(SHADOW_MATCHES, "model" => name.clone(),
                    "shadow_model" => shadow_name.clone(), "check" => check,
                    "result" => if same { "match" } else { "mismatch" })
                .increment(1);
            }
        }
        let cost = |a: &compare::Answer, d: &Deployment| {
            crate::usage::Usage {
                input: a.input_tokens,
                output: a.output_tokens,
                cached: 0,
                exact: true,
            }
            .cost(d.prices())
        };
        let (p_cost, s_cost) = (cost(&p, &self.primary), cost(&s, &self.d));
        for (side, a, c) in [("primary", &p, p_cost), ("shadow", &s, s_cost)] {
            for (kind, n) in [("input", a.input_tokens), ("output", a.output_tokens)] {
                metrics::counter!(SHADOW_TOKENS, "model" => name.clone(),
                    "shadow_model" => shadow_name.clone(), "side" => side, "type" => kind)
                .increment(n);
            }
            if let Some(c) = c.filter(|c| c.is_finite() && *c > 0.0) {
                metrics::gauge!(SHADOW_COST, "model" => name.clone(),
                    "shadow_model" => shadow_name.clone(), "side" => side)
                .increment(c);
            }
        }
        tracing::debug!(
            request_id = %self.ctx.request_id, model = %name, shadow_model = %shadow_name,
            shadow_provider = %self.d.provider.name, latency_ratio = ratio,
            primary_ms = primary_took.as_millis() as u64, shadow_ms = took.as_millis() as u64,
            primary_input_tokens = p.input_tokens, primary_output_tokens = p.output_tokens,
            shadow_input_tokens = s.input_tokens, shadow_output_tokens = s.output_tokens,
            primary_cost_usd = p_cost.unwrap_or(0.0), shadow_cost_usd = s_cost.unwrap_or(0.0),
            primary_finish = %p.finish, shadow_finish = %s.finish,
            text_exact = v.text_exact, text_normalised = v.text_normalised,
            finish_reason_match = v.finish_reason,
            tool_calls_match = ?v.tool_calls,
            "shadow compared"
        );
    }

    /// One attempt to the shadow deployment; a stream is read to its end and assembled.
    async fn send(&self, call: &Call<'_>) -> Result<Bytes, UpstreamError> {
        let d = &self.d;
        let admission = d.state.breaker.admit(now_ms());
        if admission != Admission::Yes {
            if admission == Admission::Probe {
                d.state.breaker.release_probe();
            }
            return Err(UpstreamError::new(
                &d.provider.name,
                crate::error::UpstreamKind::Connect,
                "the shadow deployment's circuit is open",
            ));
        }
        let done = super::attempt::run(
            call,
            &self.shadow,
            d.clone(),
            admission,
            self.body.clone(),
            Dropped::default(),
            1,
            0,
            1,
            Instant::now(),
        )
        .await;
        match done.result {
            Ok(UpstreamBody::Full(b)) => {
                d.state.record_latency(done.took);
                d.state.breaker.on_success();
                Ok(b)
            }
            Ok(UpstreamBody::Stream(s)) => {
                d.state.record_latency(done.took);
                d.state.breaker.on_success();
                let mut s = super::tracked::track(s, d.clone(), done.guard, done.took, Op::Chat);
                let mut asm = Assembler::new(d.provider.format());
                while let Some(chunk) = s.next().await {
                    asm.push(&chunk?);
                }
                asm.finish().map(Bytes::from).ok_or_else(|| {
                    UpstreamError::new(
                        &d.provider.name,
                        crate::error::UpstreamKind::Protocol,
                        "the shadow stream did not end well",
                    )
                })
            }
            Err(e) => {
                if !e.is_caller_fault() {
                    super::failed(d, done.guard, &e);
                }
                Err(e)
            }
        }
    }
}

/// A served stream that assembles its answer as it goes and sends the shadow request when it
/// ends well (a stream that fails or is abandoned sends none).
struct Tap {
    inner: ByteStream,
    assembler: Option<Assembler>,
    job: Option<Job>,
}

impl Stream for Tap {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(a) = this.assembler.as_mut() {
                    a.push(chunk);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.assembler = None;
                this.job = None;
            }
            Poll::Ready(None) => {
                if let (Some(a), Some(job)) = (this.assembler.take(), this.job.take()) {
                    // An answer that cannot be assembled is not compared.
                    if let Some(full) = a.finish() {
                        job.start(Bytes::from(full));
                    }
                }
            }
            Poll::Pending => {}
        }
        next
    }
}
