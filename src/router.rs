//! Choosing deployments and surviving their failures: the attempts × fallbacks loop.
//!
//! For a model, up to `1 + retries` attempts are made, each on the next deployment in routing
//! order (wrapping around), with exponential backoff and full jitter between them, honouring an
//! upstream `retry-after` and never sleeping past the request's deadline. A caller's mistake
//! (an upstream 4xx other than 408/409/429) ends the loop at once and is passed back. When every
//! attempt on a model failed, its `fallbacks` are tried in order, each with its own attempts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{Error, UpstreamError, UpstreamKind};
use crate::providers::{CallCtx, Op, UpstreamBody};
use crate::runtime::{Deployment, Model, Runtime};

/// A successful upstream answer and who gave it.
pub struct Served {
    pub body: UpstreamBody,
    pub deployment: Deployment,
    /// The model that served it (the requested one or a fallback).
    pub model: Arc<Model>,
    pub attempts: u32,
}

/// One request as the router sees it.
pub struct Call<'a> {
    pub op: Op,
    pub stream: bool,
    pub deadline: Instant,
    pub ctx: &'a CallCtx,
}

/// Full-jitter exponential backoff for retry number `n` (0-based), at least `retry_after`.
pub fn backoff(
    n: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = initial
        .checked_mul(1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let jittered = exp.mul_f64(rand::random::<f64>());
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

/// Send `call` to `model`'s deployments, then its fallbacks. `build` makes the upstream body for
/// one deployment (it translates when the provider's format differs from the client's).
pub async fn send(
    rt: &Runtime,
    model: &Arc<Model>,
    call: &Call<'_>,
    build: &(dyn Fn(&Deployment) -> Result<Bytes, Error> + Sync),
) -> Result<Served, Error> {
    let res = &rt.config.resilience;
    let mut attempts = 0u32;
    let mut last: Option<UpstreamError> = None;
    let chain = std::iter::once(model.clone()).chain(
        model
            .fallbacks
            .iter()
            .filter_map(|name| rt.models.get(name).cloned()),
    );
    'models: for m in chain {
        if m.deployments.is_empty() {
            continue;
        }
        for i in 0..=m.retries {
            let d = &m.deployments[i as usize % m.deployments.len()];
            let now = Instant::now();
            if now >= call.deadline {
                return Err(Error::Timeout);
            }
            let per_attempt = m.timeout.unwrap_or(d.provider.timeout);
            let timeout = per_attempt.min(call.deadline - now);
            let body = build(d)?;
            attempts += 1;
            tracing::debug!(
                model = %m.name, provider = %d.provider.name, deployment_model = %d.model,
                attempt = attempts, "upstream attempt"
            );
            match d
                .provider
                .send(call.op, &d.model, body, call.stream, timeout, call.ctx)
                .await
            {
                Ok(body) => {
                    return Ok(Served {
                        body,
                        deployment: d.clone(),
                        model: m.clone(),
                        attempts,
                    });
                }
                Err(e) if e.is_caller_fault() => return Err(Error::UpstreamRejected(e)),
                Err(e) => {
                    tracing::debug!(provider = %d.provider.name, error = %e, "attempt failed");
                    let retry_after = e.retry_after;
                    last = Some(e);
                    if i == m.retries {
                        continue 'models;
                    }
                    let wait = backoff(
                        i,
                        res.backoff_initial.get(),
                        res.backoff_max.get(),
                        retry_after,
                    );
                    if Instant::now() + wait >= call.deadline {
                        break 'models;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    match last {
        Some(last) if last.kind == UpstreamKind::Timeout && Instant::now() >= call.deadline => {
            Err(Error::Timeout)
        }
        Some(last) => Err(Error::Upstream { attempts, last }),
        None => Err(Error::Unavailable {
            message: format!("model \"{}\" has no deployment that can serve", model.name),
            retry_after: Duration::from_secs(1),
        }),
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
