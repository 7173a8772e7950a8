//! What an answer cost, recorded when it ends: tokens and cost metrics, the key's spend and
//! usage, and the correction of its token buckets from the admission estimate to the real usage.
//!
//! An [`Accounting`] is created when a request is admitted and settles when dropped, whichever way
//! the answer ended (complete, failed mid-stream, or the client went away), so a stream cut short
//! is still counted for what it sent.

use std::sync::Arc;

use crate::auth::Caller;
use crate::limits::{Bucket, Limiter, spend::Spend};
use crate::runtime::Deployment;
use crate::usage::{StreamUsage, Usage};

/// The services accounting writes to.
pub struct Ledger {
    pub limiter: Limiter,
    pub spend: Spend,
}

pub struct Accounting {
    ledger: Arc<Ledger>,
    caller: Caller,
    model: String,
    deployment: Option<Deployment>,
    estimated_input: u64,
    /// Token buckets taken from at admission, with what was taken.
    token_buckets: Vec<Bucket>,
    usage: Option<Usage>,
    stream: Option<StreamUsage>,
    /// A cache hit: no upstream tokens were spent.
    free: bool,
    /// The request's usage cell (access log, server span).
    report: Option<Arc<crate::telemetry::Usage>>,
}

impl Accounting {
    pub fn new(
        ledger: Arc<Ledger>,
        caller: &Caller,
        model: &str,
        estimated_input: u64,
        token_buckets: Vec<Bucket>,
    ) -> Self {
        Self {
            ledger,
            caller: caller.clone(),
            model: model.to_owned(),
            deployment: None,
            estimated_input,
            token_buckets,
            usage: None,
            stream: None,
            free: false,
            report: None,
        }
    }

    /// Also report tokens and cost to the request's usage cell.
    pub fn report_to(&mut self, cell: Option<Arc<crate::telemetry::Usage>>) {
        self.report = cell;
    }

    /// Served from the cache: give the reserved tokens back, spend nothing.
    pub fn cache_hit(&mut self) {
        self.free = true;
    }

    pub fn served_by(&mut self, d: &Deployment) {
        self.deployment = Some(d.clone());
    }

    /// A complete answer's usage; returns its cost when the deployment has prices.
    pub fn complete(&mut self, body: &[u8]) -> Option<f64> {
        let u = crate::usage::from_body(body).unwrap_or(Usage {
            input: self.estimated_input,
            output: 0,
            exact: false,
        });
        self.usage = Some(u);
        let d = self.deployment.as_ref()?;
        u.cost(d.input_cost_per_mtok, d.output_cost_per_mtok)
    }

    /// Follow a stream for its usage (feed it what the client receives).
    pub fn stream(&mut self) -> &mut StreamUsage {
        self.stream.get_or_insert_with(StreamUsage::new)
    }

    fn settle(&mut self) -> Option<Settlement> {
        let usage = if self.free {
            Usage::default()
        } else if let Some(s) = &self.stream {
            s.usage(self.estimated_input)
        } else {
            self.usage.unwrap_or_default()
        };
        let total = usage.input + usage.output;
        let corrections: Vec<(Bucket, i64)> = self
            .token_buckets
            .drain(..)
            .map(|b| {
                let delta = i64::try_from(total).unwrap_or(i64::MAX)
                    - i64::try_from(b.cost).unwrap_or(i64::MAX);
                (b, delta)
            })
            .filter(|(_, d)| *d != 0)
            .collect();
        let (provider, cost) = match (&self.deployment, self.free) {
            (Some(d), false) => (
                d.provider.name.clone(),
                usage.cost(d.input_cost_per_mtok, d.output_cost_per_mtok),
            ),
            _ => (String::new(), None),
        };
        if let Some(cell) = &self.report {
            cell.set_tokens(usage.input, usage.output);
            if let Some(c) = cost {
                cell.set_cost(c);
            }
        }
        if !self.free && !provider.is_empty() {
            crate::metrics::tokens(&self.model, &provider, usage.input, usage.output);
            if let Some(c) = cost {
                crate::metrics::cost(&self.model, &provider, self.caller.name(), c);
            }
        }
        Some(Settlement {
            ledger: self.ledger.clone(),
            caller: self.caller.clone(),
            usage,
            cost: if self.free { None } else { cost.or(Some(0.0)) },
            corrections,
            record: !self.free && self.deployment.is_some(),
        })
    }
}

/// The writes of one settled answer.
struct Settlement {
    ledger: Arc<Ledger>,
    caller: Caller,
    usage: Usage,
    cost: Option<f64>,
    corrections: Vec<(Bucket, i64)>,
    record: bool,
}

impl Settlement {
    async fn apply(self) {
        for (b, delta) in &self.corrections {
            self.ledger.limiter.adjust(b, *delta).await;
        }
        if self.record
            && let Some(key) = &self.caller.key
        {
            self.ledger
                .spend
                .record(&key.id, key.period(), self.usage, self.cost.unwrap_or(0.0))
                .await;
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        let Some(s) = self.settle() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(s.apply());
        }
    }
}
