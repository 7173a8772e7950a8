//! Gemini's `GenerateContentResponse` (a whole answer, or one chunk of a stream) as borrowed
//! structs, and its usage in OpenAI's terms.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::json::JStr;
use super::super::pivot::answer::Usage;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenResponse<'a> {
    #[serde(borrow)]
    pub(super) candidates: Option<Vec<Candidate<'a>>>,
    #[serde(borrow)]
    pub(super) prompt_feedback: Option<PromptFeedback<'a>>,
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(borrow)]
    pub(super) response_id: Option<Cow<'a, str>>,
    /// An error object inside a stream.
    #[serde(borrow)]
    pub(super) error: Option<GError<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate<'a> {
    #[serde(borrow)]
    pub(super) content: Option<Content<'a>>,
    #[serde(borrow)]
    pub(super) finish_reason: Option<Cow<'a, str>>,
    pub(super) index: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct Content<'a> {
    #[serde(borrow, default)]
    pub(super) parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part<'a> {
    #[serde(borrow)]
    pub(super) text: Option<JStr<'a>>,
    pub(super) thought: Option<bool>,
    #[serde(borrow)]
    pub(super) thought_signature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) function_call: Option<FunctionCall<'a>>,
}

impl Part<'_> {
    pub(super) fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }
}

#[derive(Deserialize)]
pub(super) struct FunctionCall<'a> {
    #[serde(borrow)]
    pub(super) name: JStr<'a>,
    #[serde(borrow)]
    pub(super) args: Option<&'a RawValue>,
}

impl FunctionCall<'_> {
    /// The arguments' JSON text (`{}` when Gemini sent none).
    pub(super) fn args(&self) -> &str {
        self.args.map_or("{}", |a| a.get())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback<'a> {
    #[serde(borrow)]
    pub(super) block_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// OpenAI usage: prompt = prompt + tool-use prompt tokens (cached ones included, as
    /// Gemini counts them); completion = candidates + thoughts (Gemini counts thoughts apart,
    /// OpenAI within).
    pub(super) fn to_openai(self) -> Usage {
        let thoughts = self.thoughts_token_count;
        Usage::new(
            self.prompt_token_count
                .unwrap_or(0)
                .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
            self.candidates_token_count
                .unwrap_or(0)
                .saturating_add(thoughts.unwrap_or(0)),
            self.cached_content_token_count,
            thoughts,
        )
    }
}

#[derive(Deserialize)]
pub(super) struct GError<'a> {
    #[serde(borrow)]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) details: Vec<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail<'a> {
    #[serde(borrow)]
    pub(super) reason: Option<Cow<'a, str>>,
}

impl GError<'_> {
    /// The error type a client sees: Google answers a bad API key with `INVALID_ARGUMENT`
    /// and the reason `API_KEY_INVALID`, which is an authentication error.
    pub(super) fn client_type(&self) -> &'static str {
        if self
            .details
            .iter()
            .any(|d| d.reason.as_deref() == Some("API_KEY_INVALID"))
        {
            return "authentication_error";
        }
        super::error_type(self.status.as_deref().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_thoughts_as_completion() {
        let u: UsageMetadata = serde_json::from_str(
            r#"{"promptTokenCount":100,"candidatesTokenCount":20,"thoughtsTokenCount":30,
                "cachedContentTokenCount":60,"toolUsePromptTokenCount":5,"totalTokenCount":155}"#,
        )
        .expect("parses");
        assert_eq!(u.to_openai(), Usage::new(105, 50, Some(60), Some(30)));
        assert_eq!(
            UsageMetadata::default().to_openai(),
            Usage::new(0, 0, None, None)
        );
    }
}
