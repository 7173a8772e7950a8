//! Where each call goes: a provider's URL per operation, and which operations it serves.

use super::{Kind, Op, Provider};
use crate::config::ProviderType;
use crate::error::{UpstreamError, UpstreamKind};

impl Provider {
    /// The parsed upstream URL of `op` for `model`, computed once per deployment at load.
    pub fn parsed_url(&self, op: Op, model: &str) -> Option<::http::Uri> {
        let u = self.url(op, model).ok()?;
        if u.is_empty() {
            return None;
        }
        u.parse().ok()
    }

    /// Whether this provider serves `op`: the router skips deployments that do not. Chat,
    /// embeddings and token counts are left to [`Provider::send`], which answers a clear error
    /// where the provider has no such API; the pass-through endpoints are served by OpenAI-type
    /// providers (and Azure, moderations and rerank aside); rerank by `openai` (any server with
    /// OpenAI's paths and a `/rerank` beside them, such as Jina or vLLM), `cohere`, `vllm` and
    /// `together`; the `mock` answers them all.
    pub fn serves(&self, op: Op) -> bool {
        match op {
            Op::Chat | Op::Embeddings | Op::CountTokens => true,
            // The mock answers every endpoint itself (`mock::passthrough`).
            _ if matches!(self.kind, Kind::Mock { .. }) => true,
            Op::Moderations => matches!(self.kind, Kind::OpenAi { .. }),
            Op::Completions | Op::Images | Op::Speech | Op::Transcriptions => {
                matches!(self.kind, Kind::OpenAi { .. } | Kind::Azure { .. })
            }
            Op::Rerank => matches!(
                self.ptype,
                ProviderType::Openai
                    | ProviderType::Cohere
                    | ProviderType::Vllm
                    | ProviderType::Together
            ),
        }
    }

    /// The error of an `op` this provider does not serve (the caller's: 400).
    pub(super) fn not_served(&self, op: Op) -> UpstreamError {
        let mut e = UpstreamError::new(
            &self.name,
            UpstreamKind::Status(400),
            format!(
                "this model's provider ({}) does not serve {}",
                self.type_name(),
                op.path()
            ),
        );
        e.error_type = Some("invalid_request_error".into());
        e
    }

    /// The URL of a pass-through `op` (see [`Provider::serves`]).
    pub(super) fn passthrough_url(&self, op: Op, model: &str) -> Result<String, UpstreamError> {
        let tail = match op {
            // The client's path without `/v1/`: the same under every OpenAI-compatible base URL.
            Op::Completions | Op::Images | Op::Speech | Op::Transcriptions | Op::Rerank => {
                op.path().trim_start_matches("/v1/")
            }
            _ => "",
        };
        match &self.kind {
            _ if !self.serves(op) || tail.is_empty() => Err(self.not_served(op)),
            Kind::Mock { .. } => Ok(String::new()),
            Kind::Azure { api_version } => Ok(format!(
                "{}/openai/deployments/{model}/{tail}?api-version={api_version}",
                self.base_url
            )),
            // Cohere's OpenAI-compatible API has no rerank: its own v2 API beside it does.
            _ if op == Op::Rerank && self.ptype == ProviderType::Cohere => {
                let root = self
                    .base_url
                    .strip_suffix("/compatibility/v1")
                    .unwrap_or(&self.base_url);
                Ok(format!("{root}/v2/rerank"))
            }
            _ => Ok(format!("{}/{tail}", self.base_url)),
        }
    }

    pub(super) fn url(&self, op: Op, model: &str) -> Result<String, UpstreamError> {
        Ok(match (&self.kind, op) {
            (_, Op::Completions | Op::Images | Op::Speech | Op::Transcriptions | Op::Rerank) => {
                return self.passthrough_url(op, model);
            }
            (Kind::Anthropic, Op::CountTokens) => {
                format!("{}/v1/messages/count_tokens", self.base_url)
            }
            (_, Op::CountTokens) => {
                return Err(UpstreamError::new(
                    &self.name,
                    UpstreamKind::Status(400),
                    "only Anthropic providers count tokens",
                ));
            }
            (Kind::OpenAi { .. }, Op::Chat) => format!("{}/chat/completions", self.base_url),
            (Kind::OpenAi { .. }, Op::Embeddings) => format!("{}/embeddings", self.base_url),
            (Kind::OpenAi { .. }, Op::Moderations) => format!("{}/moderations", self.base_url),
            (Kind::Gemini | Kind::Bedrock { .. }, op) => {
                return self.native_url(op, model, false);
            }
            (Kind::Azure { .. } | Kind::Anthropic, Op::Moderations) => {
                let mut e = UpstreamError::new(
                    &self.name,
                    UpstreamKind::Status(400),
                    "this model's provider has no moderations API",
                );
                e.error_type = Some("invalid_request_error".into());
                return Err(e);
            }
            (Kind::Azure { api_version }, op) => format!(
                "{}/openai/deployments/{}/{}?api-version={}",
                self.base_url,
                model,
                if op == Op::Chat {
                    "chat/completions"
                } else {
                    "embeddings"
                },
                api_version
            ),
            (Kind::Anthropic, Op::Chat) => format!("{}/v1/messages", self.base_url),
            (Kind::Anthropic, Op::Embeddings) => {
                let mut e = UpstreamError::new(
                    &self.name,
                    UpstreamKind::Status(400),
                    "this model is served by an Anthropic provider, which has no embeddings API",
                );
                e.error_type = Some("invalid_request_error".into());
                return Err(e);
            }
            (Kind::Mock { .. }, _) => String::new(),
        })
    }
}
