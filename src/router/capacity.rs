//! Deployments' `rpm`/`tpm` counted in Redis, so that every replica together respects a
//! provider's quota. With `state.redis_url` (and `rate_limits.shared`, the default), a request
//! takes from the deployment's two GCRA buckets (`aigw:rl:d:<provider>:<model>:rpm|tpm`, the same
//! Lua script as the keys' limits) before it goes out; a deployment found at its limit is skipped
//! by every request of this process until the bucket says it has room again, without asking
//! Redis. While Redis cannot answer, each process counts its own requests in its one-minute
//! window, as it does without Redis.

use std::sync::Arc;

use super::Call;
use crate::clock::monotonic_ms as now_ms;
use crate::error::LimitReason;
use crate::limits::Bucket;
use crate::runtime::Deployment;

/// Whether this request counts deployments' capacity in Redis (else in this process).
pub fn shared(call: &Call<'_>) -> bool {
    call.limiter
        .is_some_and(|l| l.shared_redis().is_some_and(|r| r.is_healthy()))
}

/// Take one request of `tokens` from `d`'s shared capacity: `true` when it may go out. At its
/// limit, the deployment is marked full (for [`DeploymentState::full`]) and `false` returned;
/// when Redis fails, the local window decides.
///
/// [`DeploymentState::full`]: crate::runtime::health::DeploymentState::full
pub async fn take(call: &Call<'_>, d: &Deployment, tokens: u64) -> bool {
    if d.rpm.is_none() && d.tpm.is_none() {
        return true;
    }
    let Some(limiter) = call.limiter.filter(|_| shared(call)) else {
        return true;
    };
    let (rpm_key, tpm_key) = d.state.bucket_keys(&d.provider.name, &d.model);
    let mut buckets = Vec::with_capacity(2);
    if let Some(rpm) = d.rpm {
        buckets.push(Bucket {
            key: Arc::clone(rpm_key),
            limit: rpm,
            cost: 1,
            reason: LimitReason::Requests,
        });
    }
    if let Some(tpm) = d.tpm {
        buckets.push(Bucket {
            key: Arc::clone(tpm_key),
            limit: tpm,
            cost: tokens.min(tpm),
            reason: LimitReason::Tokens,
        });
    }
    match limiter.check_shared(&buckets).await {
        Some(v) if v.allowed => true,
        Some(v) => {
            let reason = v
                .denied
                .and_then(|i| buckets.get(i))
                .map_or(LimitReason::Requests, |b| b.reason);
            d.state
                .mark_full(now_ms() + v.retry_after_ms.max(1), reason);
            tracing::debug!(
                provider = %d.provider.name, deployment_model = %d.model,
                retry_after_ms = v.retry_after_ms, "deployment at its shared capacity"
            );
            false
        }
        None => d
            .state
            .over_capacity(d.rpm, d.tpm, tokens, now_ms())
            .is_none(),
    }
}
