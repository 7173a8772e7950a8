//! The record of one request as it is served: tokens, cost and the labels of its metrics and
//! access-log line, filled by whoever learns them and read when the answer ends.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::HeaderValue;

/// Tokens and cost of one request, filled by whoever learns them (for streams, when the stream
/// ends) and read when the request's body ended (access log, server span). `request_context`
/// puts an `Arc<RequestRecord>` in every request's extensions.
#[derive(Debug, Default)]
pub struct RequestRecord {
    input: AtomicU64,
    output: AtomicU64,
    /// Cost in USD as `f64` bits; `u64::MAX` = unknown.
    cost_bits: AtomicU64,
    set: AtomicBool,
    /// The request's labels, set once each as they become known and taken when it ends (a lock
    /// held for one assignment: no contention, and cheaper than two `OnceLock`s).
    labels: Mutex<Labels>,
}

/// The labels of a request's metrics and access-log line.
#[derive(Debug, Default)]
pub struct Labels {
    /// The configured model the request named, set by the handler.
    pub model: Option<String>,
    /// What served the answer, set with the answer's headers.
    pub served: Option<ServedBy>,
}

/// The values of an answer's `x-cache`, `x-gateway-provider`, `x-gateway-deployment-model` and
/// `x-gateway-attempts` headers, kept beside the answer for its metrics' and access log's labels
/// (cheaper than reading them back from the answer's header map; docs/benchmarks.md).
#[derive(Debug)]
pub struct ServedBy {
    pub cache: HeaderValue,
    pub provider: Option<HeaderValue>,
    pub deployment_model: Option<HeaderValue>,
    pub attempts: HeaderValue,
}

impl RequestRecord {
    pub fn new() -> Self {
        Self {
            cost_bits: AtomicU64::new(u64::MAX),
            ..Self::default()
        }
    }

    pub fn set_tokens(&self, input: u64, output: u64) {
        self.input.store(input, Ordering::Relaxed);
        self.output.store(output, Ordering::Relaxed);
        self.set.store(true, Ordering::Release);
    }

    pub fn set_cost(&self, usd: f64) {
        self.cost_bits.store(usd.to_bits(), Ordering::Relaxed);
    }

    pub fn tokens(&self) -> Option<(u64, u64)> {
        self.set.load(Ordering::Acquire).then(|| {
            (
                self.input.load(Ordering::Relaxed),
                self.output.load(Ordering::Relaxed),
            )
        })
    }

    pub fn cost(&self) -> Option<f64> {
        let b = self.cost_bits.load(Ordering::Relaxed);
        (b != u64::MAX).then(|| f64::from_bits(b))
    }

    /// Label the request with the configured model it named (the first call counts).
    pub fn set_model(&self, model: String) {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.model.get_or_insert(model);
    }

    /// Note what served the answer (the first call counts).
    pub fn set_served(&self, served: ServedBy) {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.served.get_or_insert(served);
    }

    /// The labels set so far, taken out (when the request ends).
    pub fn take_labels(&self) -> Labels {
        std::mem::take(&mut *self.labels.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
