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
    /// The body as the guardrails left it, when they changed it (for the request log).
    pub guarded_body: Option<bytes::Bytes>,
}

/// The labels of a request, read (not taken) for its request-log entry.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub model: Option<Label>,
    pub provider: Option<Label>,
    pub deployment_model: Option<Label>,
    pub attempts: Option<u32>,
    pub cache: Option<Label>,
    pub guarded_body: Option<bytes::Bytes>,
}

/// A label's text, shared with where it came from rather than copied: a deployment's header
/// value (a reference count), a name known at compile time, or a string of its own. Written
/// out as a string.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Static(&'static str),
    /// Checked to be text when made ([`Label::header`]).
    Header(HeaderValue),
    Shared(std::sync::Arc<str>),
    Owned(String),
}

impl Label {
    /// The header value's text, shared; `None` when it is not visible ASCII.
    pub fn header(v: &HeaderValue) -> Option<Self> {
        v.to_str().is_ok().then(|| Self::Header(v.clone()))
    }
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Owned(s) => s,
            Self::Shared(s) => s,
            // Visible ASCII, checked when made: UTF-8's own check (word at a time) is cheaper
            // than the header value's byte by byte.
            Self::Header(v) => std::str::from_utf8(v.as_bytes()).unwrap_or_default(),
        }
    }
}

impl serde::Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

/// The values of an answer's `x-cache`, `x-gateway-provider`, `x-gateway-deployment-model` and
/// `x-gateway-attempts` headers, kept beside the answer for its metrics' and access log's labels
/// (cheaper than reading them back from the answer's header map; docs/benchmarks.md).
#[derive(Debug)]
pub struct ServedBy {
    /// `HIT`, `MISS` or `BYPASS`.
    pub cache: &'static str,
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

    /// Note the body the guardrails made (the first call counts).
    pub fn set_guarded_body(&self, body: bytes::Bytes) {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.guarded_body.get_or_insert(body);
    }

    /// The labels set so far, copied (the request log reads them before the access log takes
    /// them).
    pub fn snapshot(&self) -> Snapshot {
        let labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        let served = labels.served.as_ref();
        Snapshot {
            model: labels.model.clone().map(Label::Owned),
            provider: served
                .and_then(|s| s.provider.as_ref())
                .and_then(Label::header),
            deployment_model: served
                .and_then(|s| s.deployment_model.as_ref())
                .and_then(Label::header),
            attempts: served.and_then(|s| s.attempts.to_str().ok()?.parse().ok()),
            cache: served.map(|s| Label::Static(s.cache)),
            guarded_body: labels.guarded_body.clone(),
        }
    }

    /// The labels set so far, taken out (when the request ends).
    pub fn take_labels(&self) -> Labels {
        std::mem::take(&mut *self.labels.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
