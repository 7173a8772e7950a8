//! Admission: the caller's and the model's rate limits and the caller's budget, checked (and
//! taken from) before a call goes anywhere; the prompt's tokens counted when a `tpm` needs them.

use super::{DEFAULT_RESERVED_OUTPUT, RateHeaders, Services, estimate_tokens};
use crate::accounting::Accounting;
use crate::auth::Caller;
use crate::error::{Error, LimitReason};
use crate::headers as hn;
use crate::limits::Bucket;
use crate::router;
use crate::runtime::Runtime;
use crate::wire::Format;

/// Whether the caller's or the model's limits count tokens (a `tpm`).
pub(super) fn needs_tokens(rt: &Runtime, caller: &Caller, model: &str) -> bool {
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
pub(super) fn speaks_openai(model: &crate::runtime::Model) -> bool {
    model
        .deployments
        .first()
        .is_some_and(|d| d.provider.format() == Format::OpenAi)
}

/// Check the caller's and the model's limits and the caller's budget; take from the buckets.
/// `model` is the name requested (per-model limits are looked up by it), `label` the model's
/// label, which the answer's token and cost metrics carry (a wildcard's name for the names it
/// serves).
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
pub(super) async fn admit(
    rt: &Runtime,
    svc: &Services,
    caller: &Caller,
    model: &str,
    label: &std::sync::Arc<str>,
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
            label.clone(),
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
    let limit = |v: &Option<hn::OwnValue>| v.clone().unwrap_or_else(|| hn::number(0));
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
        label.clone(),
        input_tokens,
        token_buckets,
    ))
}
