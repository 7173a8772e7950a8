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
    pub model: Option<std::sync::Arc<str>>,
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

/// A name that is both an answer's header value and a label (a deployment's provider and
/// model), made once and shared by every answer it names.
#[derive(Debug, Clone)]
pub struct Name {
    pub header: HeaderValue,
    /// The name as a label; `None` when it is not visible ASCII (the header still carries it).
    pub label: Option<std::sync::Arc<str>>,
}

impl Name {
    /// `None` when `text` cannot be a header value.
    pub fn new(text: &str) -> Option<Self> {
        let header = HeaderValue::from_str(text).ok()?;
        let label = header.to_str().is_ok().then(|| text.into());
        Some(Self { header, label })
    }
}

/// A label's text, shared with where it came from rather than copied: a name known at compile
/// time or a shared name (a reference count). Written out as a string.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
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
    pub provider: Option<Name>,
    pub deployment_model: Option<Name>,
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
    pub fn set_model(&self, model: std::sync::Arc<str>) {
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
            model: labels.model.clone().map(Label::Shared),
            provider: served.and_then(|s| label_of(s.provider.as_ref())),
            deployment_model: served.and_then(|s| label_of(s.deployment_model.as_ref())),
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

fn label_of(name: Option<&Name>) -> Option<Label> {
    name?.label.clone().map(Label::Shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_header_and_a_label_when_it_is_visible_ascii() {
        let n = Name::new("openai-eu").unwrap();
        assert_eq!(n.header, "openai-eu");
        assert_eq!(n.label.as_deref(), Some("openai-eu"));
        // A header value may carry bytes above ASCII; a label is left out then (as before, when
        // labels were read back from the header as text).
        let n = Name::new("café").unwrap();
        assert_eq!(n.header.as_bytes(), "café".as_bytes());
        assert_eq!(n.label, None);
        assert!(Name::new("a\nb").is_none());
    }
}
