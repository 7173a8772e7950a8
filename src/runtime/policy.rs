//! A model's routing policies as configured, held by the runtime and read by the router: its
//! hedging (with the latency sketches kept across reloads) and its shadow.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::sketch::Sketch;
use crate::config::{HedgeAfter, HedgeConfig, ShadowConfig};

/// A model's hedging, as the router uses it.
#[derive(Debug)]
pub struct Hedge {
    after: HedgeAfter,
    pub max: u32,
    /// Recent latencies when `after` is a percentile: `[whole answers, streams' first chunks]`.
    sketches: Option<Arc<[Sketch; 2]>>,
}

/// Sketches kept across reloads, by model name and percentile.
pub type Sketches = HashMap<(String, u64), Arc<[Sketch; 2]>>;

impl Hedge {
    pub fn new(cfg: &HedgeConfig, model: &str, kept: &mut Sketches) -> Self {
        let sketches = match cfg.after {
            HedgeAfter::Fixed(_) => None,
            HedgeAfter::Percentile(q) => Some(
                kept.entry((model.to_owned(), q.to_bits()))
                    .or_insert_with(|| Arc::new([Sketch::new(q), Sketch::new(q)]))
                    .clone(),
            ),
        };
        Self {
            after: cfg.after,
            max: cfg.max,
            sketches,
        }
    }

    /// How long the first request may take before a hedge goes out (`None`: not yet known).
    pub fn after(&self, stream: bool) -> Option<Duration> {
        match (self.after, &self.sketches) {
            (HedgeAfter::Fixed(d), _) => Some(d.get()),
            (HedgeAfter::Percentile(_), Some(s)) => s[usize::from(stream)].quantile(),
            (HedgeAfter::Percentile(_), None) => None,
        }
    }

    /// A completed attempt's latency (to its first chunk for a stream).
    #[inline]
    pub fn record(&self, stream: bool, took: Duration) {
        if let Some(s) = &self.sketches {
            s[usize::from(stream)].record(took);
        }
    }
}

/// A model's shadow, as the router uses it.
#[derive(Debug)]
pub struct Shadow {
    pub model: String,
    pub sample: f64,
}

impl Shadow {
    pub fn new(cfg: &ShadowConfig) -> Self {
        Self {
            model: cfg.model.clone(),
            sample: cfg.sample,
        }
    }

    pub fn sampled(&self) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && rand::random::<f64>() < self.sample)
    }
}
