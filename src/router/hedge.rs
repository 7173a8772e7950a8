//! Hedged requests (`models[].hedge`): when a round's first request has not answered after
//! `after` (a duration, or a percentile of the model's recent latency), the same request goes to
//! the next deployment the strategy picks — never one already tried, never one whose circuit is not
//! closed or that is at its capacity, and not at all while the caller's limits are used up. Up to
//! `max` hedges go out, `after` apart. The first usable answer wins (a stream's first chunk, or a
//! whole checked answer); the other requests are dropped, and their upstream connections with
//! them. A failure does not end the race while another request is still out.

use std::future::Future;
use std::pin::{Pin, pin};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::attempt::Done;
use crate::metrics::{HEDGE_COST, HEDGES};
use crate::providers::UpstreamBody;
use crate::runtime::policy::Hedge;

/// Race `first` (sent at `started`) against hedges from `launch` (which picks, builds and counts
/// a hedge, or says there is none to send). `on_failure` settles a failed request while others are still out.
/// Returns the winner, or the last failure when every request failed.
///
/// What a race costs while no hedge goes out is its timer: the set of hedges is made with the
/// first hedge, and `first` is borrowed, not moved (docs/benchmarks.md, "Hedging and shadow
/// traffic").
pub(super) async fn race<F, H>(
    mut first: Pin<&mut F>,
    hedge: &Hedge,
    model: &str,
    stream: bool,
    started: Instant,
    mut launch: impl FnMut(u32) -> Option<H>,
    mut on_failure: impl FnMut(Done),
) -> Done
where
    F: Future<Output = Done>,
    H: Future<Output = Option<Done>>,
{
    let Some(after) = hedge.after(stream) else {
        return first.await;
    };
    let mut first_out = true;
    let mut hedges: Option<FuturesUnordered<H>> = None;
    let mut timer = pin!(tokio::time::sleep_until(started + after));
    let mut timing = true;
    let mut sent = 0u32;
    // The last failure, held back while requests are still out (it is the answer if none wins).
    let mut last_failure: Option<Done> = None;
    let out = |h: &Option<FuturesUnordered<H>>| h.as_ref().is_some_and(|h| !h.is_empty());
    loop {
        let hedges_out = out(&hedges);
        let done = tokio::select! {
            // The first request first: an answer ready when the timer is too wins without a hedge.
            biased;
            d = first.as_mut(), if first_out => {
                first_out = false;
                d
            }
            Some(d) = next(&mut hedges), if hedges_out => match d {
                Some(d) => d,
                // Not sent after all (its deployment at its shared capacity).
                None => {
                    sent -= 1;
                    if !first_out && !out(&hedges) && let Some(f) = last_failure.take() {
                        return f;
                    }
                    continue;
                }
            },
            () = &mut timer, if timing => {
                if let Some(f) = launch(sent + 1) {
                    sent += 1;
                    hedges.get_or_insert_with(FuturesUnordered::new).push(f);
                }
                if sent < hedge.max && (first_out || out(&hedges)) {
                    timer.as_mut().reset(Instant::now() + after);
                } else {
                    timing = false;
                }
                continue;
            }
        };
        let still_out = first_out || out(&hedges);
        if done.result.is_err()
            && still_out
            && !done.result.as_ref().is_err_and(|e| e.is_caller_fault())
        {
            if let Some(f) = last_failure.replace(done) {
                on_failure(f);
            }
            continue;
        }
        if let Some(f) = last_failure.take() {
            on_failure(f);
        }
        // The end: a usable answer, a caller's mistake, or the last failure.
        if sent > 0 {
            for n in 1..=sent {
                let outcome = if done.result.is_ok() && done.hedge == n {
                    "won"
                } else {
                    "lost"
                };
                metrics::counter!(HEDGES, "model" => model.to_owned(), "outcome" => outcome)
                    .increment(1);
            }
        }
        // Requests that finished in the same instant are losers too: count what they cost.
        if first_out && let Some(d) = first.as_mut().now_or_never() {
            loser(d, model);
        }
        if let Some(h) = hedges.as_mut() {
            while let Some(Some(d)) = h.next().now_or_never() {
                if let Some(d) = d {
                    loser(d, model);
                }
            }
        }
        return done;
    }
}

/// The next hedge to finish (never, before the first goes out).
async fn next<H: Future>(hedges: &mut Option<FuturesUnordered<H>>) -> Option<H::Output> {
    match hedges {
        Some(h) => h.next().await,
        None => std::future::pending().await,
    }
}

/// A request that answered but lost: its circuit and latency count, its cost goes to the
/// gateway-wide hedge cost (never to the caller).
fn loser(d: Done, model: &str) {
    match &d.result {
        Ok(body) => {
            d.d.state.record_latency(d.took);
            d.d.state.breaker.on_success();
            if let UpstreamBody::Full(_) = body
                && let Some(cost) = d.usage.and_then(|u| u.cost(d.d.prices()))
            {
                lost_cost(model, &d.d.provider.name, cost);
            }
        }
        Err(e) if e.is_caller_fault() => {
            if d.admission == crate::runtime::breaker::Admission::Probe {
                d.d.state.breaker.release_probe();
            }
        }
        Err(_) => {
            d.d.state.record_failure(crate::clock::monotonic_ms());
        }
    }
}

/// Add `usd` to the hedge cost of a model and provider.
pub fn lost_cost(model: &str, provider: &str, usd: f64) {
    if usd.is_finite() && usd > 0.0 {
        metrics::gauge!(HEDGE_COST, "model" => model.to_owned(), "provider" => provider.to_owned())
            .increment(usd);
    }
}
