//! One upstream attempt: send the body, then wait for the answer to be usable (a stream's first
//! chunk, or a whole answer checked to be JSON). An attempt dropped before it finished (a hedge
//! that lost, a client gone) is settled by its [`Unfinished`] guard: its upstream connection goes
//! with the future, its attempt is counted as `cancelled`, a half-open probe is given back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Call, first_chunk, outcome, valid_json};
use crate::clock::monotonic_ms_at;
use crate::error::UpstreamError;
use crate::providers::UpstreamBody;
use crate::runtime::breaker::Admission;
use crate::runtime::health::InFlight;
use crate::runtime::{Deployment, Model};

/// A finished attempt.
pub(super) struct Done {
    pub d: Arc<Deployment>,
    pub admission: Admission,
    pub guard: InFlight,
    pub result: Result<UpstreamBody, UpstreamError>,
    /// The usage of a complete answer, read while checking it.
    pub usage: Option<crate::usage::Usage>,
    /// Time to the first chunk (stream) or to the whole answer.
    pub took: Duration,
    /// 0 for a round's first request, 1.. for its hedges.
    pub hedge: u32,
    /// Request fields the serving provider could not take (`x-gateway-dropped`).
    pub dropped: crate::translate::Dropped,
}

/// Settles an attempt whose future was dropped before it finished.
struct Unfinished {
    d: Option<Arc<Deployment>>,
    probe: bool,
    /// Record the time so far as a latency sample (a hedged round's loser: a lower bound of a
    /// slow deployment's latency, which keeps `latency` routing from favouring it).
    sample: bool,
    started: Instant,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(d) = self.d.take() else { return };
        let took = self.started.elapsed();
        crate::metrics::attempt(&d.provider.name, &d.model, "cancelled", took);
        if self.sample {
            d.state.record_latency(took);
        }
        if self.probe {
            d.state.breaker.release_probe();
        }
    }
}

/// Send `body` to `d` as attempt number `n` (`dropped`: what building `body` left out; the
/// provider adds what it refuses) of the request (`hedge`: see [`Done::hedge`]), going out at
/// `started` (the router's clock reading as it picked `d`: one read less per attempt).
#[expect(
    clippy::too_many_arguments,
    reason = "one attempt's parts, each used once"
)]
pub(super) async fn run(
    call: &Call<'_>,
    m: &Model,
    d: Arc<Deployment>,
    admission: Admission,
    body: Bytes,
    mut dropped: crate::translate::Dropped,
    n: u32,
    hedge: u32,
    candidates: usize,
    started: Instant,
) -> Done {
    tracing::debug!(
        model = %m.name, strategy = ?m.routing, provider = %d.provider.name,
        deployment_model = %d.model, attempt = n, candidates, hedge,
        probe = admission == Admission::Probe, "upstream attempt"
    );
    d.state.reserve(
        call.input_tokens + call.max_tokens,
        monotonic_ms_at(started),
    );
    let guard = d.state.start();
    let mut unfinished = Unfinished {
        d: Some(d.clone()),
        probe: admission == Admission::Probe,
        sample: m.hedge.is_some(),
        started,
    };
    let per_attempt = m.timeout.unwrap_or(d.provider.timeout);
    let timeout = per_attempt.min(call.deadline.saturating_duration_since(started));
    let span = crate::router::trace::attempt_span(call.op, &m.name, &d, n);
    let ctx = crate::router::trace::attempt_ctx(&span, call.ctx);
    // Made in its box, and the box instrumented: moved into this future's state, the call was
    // copied whole twice, and once more into its span's wrapper (2.8 KiB then; 560 bytes since
    // `Provider::send` boxes its Gemini/Bedrock branch, docs/benchmarks.md "What changed what").
    let send = crate::boxed::in_place(|| {
        d.provider.send(
            call.op,
            &d.model,
            d.url(call.op),
            body,
            call.stream,
            timeout,
            &ctx,
            &mut dropped,
        )
    });
    let result = send.instrument(span.clone()).await;
    let mut usage = None;
    let result = match result {
        Ok(UpstreamBody::Stream(s)) => first_chunk(s, &d.provider.name).await,
        Ok(UpstreamBody::Full(b)) if call.op.answers_json() => {
            valid_json(b, &d.provider.name).map(|(b, u)| {
                usage = u;
                b
            })
        }
        other => other,
    };
    unfinished.d = None;
    let took = started.elapsed();
    // A served stream's attempt is counted when the stream ends, with its outcome.
    if !matches!(result, Ok(UpstreamBody::Stream(_))) {
        crate::metrics::attempt(&d.provider.name, &d.model, outcome(&result), took);
    }
    crate::router::trace::attempt_end(&span, &d, outcome(&result), &result);
    Done {
        d,
        admission,
        guard,
        result,
        usage,
        took,
        hedge,
        dropped,
    }
}
