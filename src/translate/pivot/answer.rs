//! The pivot answer: an OpenAI `chat.completion` (and its `usage`) built from another format's
//! answer. Text is copied as raw JSON where the source gave one string, and joined otherwise.

use std::borrow::Cow;

use serde::Serialize;

use super::super::TranslateError;
use super::super::json::{AsJsonString, JStr, Txt};

/// OpenAI `usage`. `prompt_tokens` counts every input token (cached ones too) and
/// `completion_tokens` every output token (reasoning ones too), as OpenAI's do.
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PromptDetails {
    pub(crate) cached_tokens: u64,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletionDetails {
    pub(crate) reasoning_tokens: u64,
}

impl Usage {
    /// `total_tokens` is the sum; the details are left out when not known.
    pub(crate) fn new(
        prompt: u64,
        completion: u64,
        cached: Option<u64>,
        reasoning: Option<u64>,
    ) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: cached.map(|cached_tokens| PromptDetails { cached_tokens }),
            completion_tokens_details: reasoning
                .map(|reasoning_tokens| CompletionDetails { reasoning_tokens }),
        }
    }
}

/// Texts gathered from an answer's parts: one kept raw, several joined.
#[derive(Default)]
pub(crate) struct Texts<'a>(Vec<JStr<'a>>);

impl<'a> Texts<'a> {
    pub(crate) fn push(&mut self, t: JStr<'a>) {
        if !t.is_empty() {
            self.0.push(t);
        }
    }

    pub(crate) fn into_txt(self) -> Option<Txt<'a>> {
        match self.0.as_slice() {
            [] => None,
            [one] => Some(Txt::Raw(*one)),
            many => Some(Txt::Owned(many.iter().map(|t| t.decode()).collect())),
        }
    }
}

/// One tool call of an answer; `arguments` is the source text of a JSON object.
#[derive(Serialize)]
pub(crate) struct ToolCallOut<'b> {
    pub(crate) id: Cow<'b, str>,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: FnCallOut<'b>,
}

#[derive(Serialize)]
pub(crate) struct FnCallOut<'b> {
    pub(crate) name: JStr<'b>,
    pub(crate) arguments: AsJsonString<'b>,
}

impl<'b> ToolCallOut<'b> {
    pub(crate) fn new(id: Cow<'b, str>, name: JStr<'b>, arguments: &'b str) -> Self {
        ToolCallOut {
            id,
            kind: "function",
            function: FnCallOut {
                name,
                arguments: AsJsonString(arguments),
            },
        }
    }
}

/// One choice of an answer.
pub(crate) struct Choice<'b> {
    pub(crate) index: u32,
    pub(crate) content: Option<Txt<'b>>,
    pub(crate) reasoning: Option<Txt<'b>>,
    pub(crate) tool_calls: Vec<ToolCallOut<'b>>,
    pub(crate) finish_reason: &'static str,
}

#[derive(Serialize)]
struct CompletionOut<'b> {
    id: &'b str,
    object: &'static str,
    created: u64,
    model: &'b str,
    choices: Vec<ChoiceOut<'b>>,
    usage: Usage,
}

#[derive(Serialize)]
struct ChoiceOut<'b> {
    index: u32,
    message: MessageOut<'b>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'b> {
    role: &'static str,
    content: Option<Txt<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Txt<'b>>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'b>>,
}

/// Write a `chat.completion`.
pub(crate) fn write_completion(
    id: &str,
    created: u64,
    model: &str,
    choices: Vec<Choice<'_>>,
    usage: Usage,
) -> Result<Vec<u8>, TranslateError> {
    let out = CompletionOut {
        id,
        object: "chat.completion",
        created,
        model,
        choices: choices
            .into_iter()
            .map(|c| ChoiceOut {
                index: c.index,
                message: MessageOut {
                    role: "assistant",
                    content: c.content,
                    reasoning_content: c.reasoning,
                    refusal: None,
                    tool_calls: c.tool_calls,
                },
                logprobs: None,
                finish_reason: c.finish_reason,
            })
            .collect(),
        usage,
    };
    serde_json::to_vec(&out)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_details_only_when_known() {
        let u = serde_json::to_value(Usage::new(10, 5, None, None)).expect("json");
        assert_eq!(
            u,
            serde_json::json!({"prompt_tokens":10,"completion_tokens":5,"total_tokens":15})
        );
        let u = serde_json::to_value(Usage::new(10, 5, Some(4), Some(2))).expect("json");
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 2);
    }
}
