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
use crate::state::{REDIS_TIMEOUT, Redis};
use crate::usage::{StreamUsage, Usage};

/// The services accounting writes to.
pub struct Ledger {
    pub limiter: Limiter,
    pub spend: Spend,
}

pub struct Accounting {
    ledger: Arc<Ledger>,
    caller: Caller,
    /// The model's label (a wildcard's name for the names it serves: clients make no new label
    /// values), shared with the model.
    model: Arc<str>,
    deployment: Option<Arc<Deployment>>,
    estimated_input: u64,
    /// Token buckets taken from at admission, with what was taken.
    token_buckets: Vec<Bucket>,
    usage: Option<Usage>,
    stream: Option<StreamUsage>,
    /// A cache hit: no upstream tokens were spent.
    free: bool,
    /// The request's usage cell (access log, server span).
    report: Option<Arc<crate::record::RequestRecord>>,
}

impl Accounting {
    pub fn new(
        ledger: Arc<Ledger>,
        caller: &Caller,
        model: Arc<str>,
        estimated_input: u64,
        token_buckets: Vec<Bucket>,
    ) -> Self {
        Self {
            ledger,
            caller: caller.clone(),
            model,
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
    pub fn report_to(&mut self, cell: Option<Arc<crate::record::RequestRecord>>) {
        self.report = cell;
    }

    /// Served from the cache: give the reserved tokens back, spend nothing.
    pub fn cache_hit(&mut self) {
        self.free = true;
    }

    pub fn served_by(&mut self, d: &Arc<Deployment>) {
        self.deployment = Some(d.clone());
    }

    /// A complete answer's usage; returns its cost when the deployment has prices.
    pub fn complete(&mut self, body: &[u8]) -> Option<f64> {
        self.complete_with(crate::usage::from_body(body))
    }

    /// A complete answer whose usage was already read (`None`: it had none).
    pub fn complete_with(&mut self, usage: Option<Usage>) -> Option<f64> {
        let u = usage.unwrap_or(Usage {
            input: self.estimated_input,
            ..Usage::default()
        });
        self.usage = Some(u);
        let d = self.deployment.as_ref()?;
        u.cost(d.prices())
    }

    /// Follow a stream for its usage (feed it what the client receives).
    pub fn stream(&mut self) -> &mut StreamUsage {
        self.stream.get_or_insert_with(StreamUsage::new)
    }

    /// The answer's usage and cost, reported to the request's cell and to the metrics.
    fn account(&self) -> (Usage, Option<f64>) {
        let usage = if self.free {
            Usage::default()
        } else if let Some(s) = &self.stream {
            s.usage(self.estimated_input)
        } else {
            self.usage.unwrap_or_default()
        };
        let (provider, cost) = match (&self.deployment, self.free) {
            (Some(d), false) => (d.provider.name.as_str(), usage.cost(d.prices())),
            _ => ("", None),
        };
        if let Some(cell) = &self.report {
            cell.set_tokens(usage.input, usage.output);
            if let Some(c) = cost {
                cell.set_cost(c);
            }
        }
        if !self.free && !provider.is_empty() {
            crate::metrics::tokens(&self.model, provider, usage.input, usage.output);
            if let Some(c) = cost {
                crate::metrics::cost(&self.model, provider, self.caller.name(), c);
            }
        }
        (usage, cost)
    }

    /// Whether the key's spend is recorded for this answer.
    fn records(&self) -> bool {
        !self.free && self.deployment.is_some() && self.caller.key.is_some()
    }

    /// What is left to write once the answer is accounted; `None` when nothing is.
    fn settle(&mut self, usage: Usage, cost: Option<f64>) -> Option<Settlement> {
        let total = usage.input + usage.output;
        let corrections: Vec<(Bucket, i64)> = self
            .token_buckets
            .drain(..)
            .map(|b| {
                let delta = correction(total, &b);
                (b, delta)
            })
            .filter(|(_, d)| *d != 0)
            .collect();
        let record = self.records();
        if corrections.is_empty() && !record {
            // Nothing to write (no key, or a cache hit that reserved no tokens).
            return None;
        }
        Some(Settlement {
            ledger: self.ledger.clone(),
            caller: self.caller.clone(),
            usage,
            cost: if self.free { None } else { cost.or(Some(0.0)) },
            corrections,
            record,
        })
    }

    /// Without Redis every write is to this process's own tables: done here and now, from the
    /// answer's own fields (no task, no list of corrections, no clones: a spawned task per
    /// answer was measurable, docs/benchmarks.md, "What changed what"). False, with nothing
    /// done, when some write goes to Redis.
    fn settle_in_process(&mut self, usage: Usage, cost: Option<f64>) -> bool {
        let ledger = &self.ledger;
        if ledger.limiter.shared_redis().is_some() || ledger.spend.redis().is_some() {
            return false;
        }
        let total = usage.input + usage.output;
        for b in &self.token_buckets {
            let delta = correction(total, b);
            if delta != 0 {
                ledger.limiter.adjust_local(b, delta);
            }
        }
        self.token_buckets.clear();
        // A cache hit records nothing (`records`), so its cost needs no case of its own.
        if let Some(key) = self.caller.key.as_ref().filter(|_| self.records()) {
            ledger
                .spend
                .record_local(&key.id, key.period(), usage, cost.unwrap_or(0.0));
        }
        true
    }
}

/// A token bucket's correction from what admission took to the answer's `total` tokens.
fn correction(total: u64, b: &Bucket) -> i64 {
    i64::try_from(total).unwrap_or(i64::MAX) - i64::try_from(b.cost).unwrap_or(i64::MAX)
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
        let key = self.caller.key.as_ref().filter(|_| self.record);
        if !self.corrections.is_empty()
            && let Some(key) = key
            && let Some(redis) = self.ledger.limiter.shared_redis()
            && self
                .ledger
                .spend
                .redis()
                .is_some_and(|r| Arc::ptr_eq(r, redis))
        {
            self.apply_in_one_round_trip(key, redis).await;
            return;
        }
        for (b, delta) in &self.corrections {
            self.ledger.limiter.adjust(b, *delta).await;
        }
        if let Some(key) = key {
            self.ledger
                .spend
                .record(&key.id, key.period(), self.usage, self.cost.unwrap_or(0.0))
                .await;
        }
    }

    /// Shared limits and spend in the same Redis: the token corrections and the spend record in
    /// one pipeline (one round trip after the answer instead of two).
    async fn apply_in_one_round_trip(&self, key: &crate::auth::KeyEntry, redis: &Arc<Redis>) {
        let (ledger, cost) = (&self.ledger, self.cost.unwrap_or(0.0));
        ledger
            .spend
            .record_local(&key.id, key.period(), self.usage, cost);
        let in_process = || {
            for (b, delta) in &self.corrections {
                ledger.limiter.adjust_local(b, *delta);
            }
        };
        let Some(mut conn) = redis.conn() else {
            in_process();
            return;
        };
        let mut pipe = redis::pipe();
        for (b, delta) in &self.corrections {
            ledger.limiter.push_adjust(&mut pipe, b, *delta);
        }
        crate::limits::spend::push_record(&mut pipe, &key.id, key.period(), self.usage, cost);
        match tokio::time::timeout(REDIS_TIMEOUT * 4, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            // Redis lost its scripts (a restart, SCRIPT FLUSH): the spend commands went through
            // (a pipeline is not a transaction); the corrections again, loading the script.
            Ok(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                for (b, delta) in &self.corrections {
                    ledger.limiter.adjust(b, *delta).await;
                }
            }
            Ok(Err(e)) => {
                redis.report_error("settle", &e, e.is_io_error());
                in_process();
            }
            Err(_) => {
                redis.report_error("settle", &"timed out", true);
                in_process();
            }
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        let (usage, cost) = self.account();
        if self.settle_in_process(usage, cost) {
            return;
        }
        let Some(s) = self.settle(usage, cost) else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            crate::tasks::spawn_on(&rt, s.apply());
        }
    }
}
