//! `guardrails:` entries.

use super::*;

/// One entry of `guardrails:`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    /// Named by `models[].guardrails` and `auth.keys[].guardrails`.
    #[schemars(example = &"pii")]
    pub name: String,
    /// What it checks.
    #[serde(rename = "type")]
    pub kind: GuardrailType,
    /// `type: pii`: the entities looked for (default: all six).
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    /// `type: regex`: the patterns (Rust `regex` syntax), checked at load.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// `type: moderation`: a model from `models:` serving `/v1/moderations`.
    #[serde(default)]
    pub model: Option<String>,
    /// Default: `mask` for pii, `block` for regex and moderation.
    #[serde(default)]
    pub action: Option<GuardrailAction>,
    /// Default: `[input, output]` for pii and regex, `[input]` for moderation.
    #[serde(default)]
    pub apply_to: Option<Vec<GuardrailSide>>,
    /// Globs over model names this guardrail applies to on its own; empty: only where a
    /// model or a key names it.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// `type: moderation`: what a failed moderation call means.
    #[serde(default)]
    pub on_error: ModerationOnError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailType {
    Pii,
    Regex,
    Moderation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailAction {
    Mask,
    Redact,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailSide {
    Input,
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModerationOnError {
    Allow,
    #[default]
    Block,
}

impl GuardrailConfig {
    pub fn action(&self) -> GuardrailAction {
        self.action.unwrap_or(match self.kind {
            GuardrailType::Pii => GuardrailAction::Mask,
            GuardrailType::Regex | GuardrailType::Moderation => GuardrailAction::Block,
        })
    }

    /// Whether it applies to the request (`input`) and to the answer (`output`).
    pub fn sides(&self) -> (bool, bool) {
        match &self.apply_to {
            Some(s) => (
                s.contains(&GuardrailSide::Input),
                s.contains(&GuardrailSide::Output),
            ),
            None => (true, self.kind != GuardrailType::Moderation),
        }
    }
}
