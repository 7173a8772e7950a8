//! `models[].hedge` and `models[].shadow`.

use super::*;

/// `models[].hedge`: a second request when the first has no first byte after `after`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    pub after: HedgeAfter,
    #[serde(default = "one")]
    pub max: u32,
}

/// When a hedge goes out: a fixed delay, or a percentile (1-99) of the model's recent latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    Fixed(Dur),
    Percentile(f64),
}

impl Serialize for HedgeAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(d) => d.serialize(s),
            Self::Percentile(p) => s.collect_str(&format_args!("p{}", (p * 100.0).round())),
        }
    }
}

impl JsonSchema for HedgeAfter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HedgeAfter".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration (800ms, 2s) or a percentile of the model's recent latency (p50 .. p99)",
            "examples": ["800ms", "p95"]
        })
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if let Some(p) = t.strip_prefix('p') {
            return match p.parse::<u8>() {
                Ok(n @ 1..=99) => Ok(Self::Percentile(f64::from(n) / 100.0)),
                _ => Err(serde::de::Error::custom(format!(
                    "\"{t}\" is not a percentile; write p50, p90, p95 or p99 (or a duration such as 800ms)"
                ))),
            };
        }
        t.parse::<Dur>()
            .map(Self::Fixed)
            .map_err(serde::de::Error::custom)
    }
}

/// `models[].shadow`: a sampled share of requests also sent, after the answer, to another model.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub model: String,
    pub sample: f64,
}
