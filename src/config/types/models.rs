//! `models:`: a model's routing strategy and its deployments.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    #[default]
    Priority,
    Weighted,
    Latency,
    Cost,
    LeastBusy,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What clients put in `"model"`; `prefix/*` serves every name with that prefix.
    #[schemars(example = &"gpt-4o-mini")]
    pub name: String,
    #[serde(default)]
    /// How a deployment is picked among the healthy ones.
    pub routing: RoutingStrategy,
    /// Where the model is served: a provider and its model name.
    pub deployments: Vec<DeploymentConfig>,
    #[serde(default)]
    /// Other model names, tried in order when every deployment failed.
    #[schemars(example = ["claude-haiku"])]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    /// Overrides `resilience.retries` for this model.
    #[schemars(example = 1)]
    pub retries: Option<u32>,
    #[serde(default)]
    /// Overrides the provider's timeout for this model.
    #[schemars(example = &"30s")]
    pub timeout: Option<Dur>,
    #[serde(default)]
    /// Overrides `cache.enabled` for this model.
    #[schemars(example = false)]
    pub cache: Option<bool>,
    /// Names from `guardrails:`, applied in addition to the global ones.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// `hedge:` send the request to a second deployment when the first is slow.
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
    /// `shadow:` mirror a sample of requests to another model, never affecting the answer.
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// A provider name from `providers`.
    #[schemars(example = &"openai")]
    pub provider: String,
    /// The upstream's model name (Azure: the deployment name; `"*"` under a wildcard model name `prefix/*`).
    #[schemars(example = &"gpt-4o-mini")]
    pub model: String,
    #[serde(default)]
    /// USD per million input tokens; used by `cost` routing and spend.
    #[schemars(example = 0.15)]
    pub input_cost_per_mtok: Option<f64>,
    #[serde(default)]
    /// USD per million output tokens.
    #[schemars(example = 0.6)]
    pub output_cost_per_mtok: Option<f64>,
    #[serde(default = "one")]
    /// Share of requests under `weighted` routing.
    pub weight: u32,
    #[serde(default)]
    /// Order under `priority` routing: lower first.
    pub priority: i32,
    /// Upstream requests per minute this deployment takes; the router avoids it at its limit.
    #[serde(default)]
    #[schemars(example = 5000)]
    pub rpm: Option<u64>,
    /// Upstream tokens per minute this deployment takes.
    #[serde(default)]
    #[schemars(example = 2000000)]
    pub tpm: Option<u64>,
}
