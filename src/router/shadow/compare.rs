//! What a shadow comparison reads of a complete answer (OpenAI chat completion or Anthropic
//! message), and how two answers compare.

use serde::Deserialize;
use serde_json::Value;

use crate::wire::Format;

/// The parts of an answer a comparison looks at.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub text: String,
    /// In OpenAI's words: stop, length, tool_calls, content_filter (Anthropic's mapped).
    pub finish: String,
    /// (function name, arguments as JSON).
    pub tools: Vec<(String, Value)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    #[serde(default)]
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: Option<OpenAiMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Vec<OpenAiToolCall>,
}

#[derive(Deserialize)]
struct OpenAiToolCall {
    function: OpenAiFunction,
}

#[derive(Deserialize)]
struct OpenAiFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct AnthropicAnswer {
    #[serde(default)]
    content: Vec<AnthropicBlock>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Read an answer of `format`; `None` when it is not one.
pub fn read(format: Format, body: &[u8]) -> Option<Answer> {
    match format {
        Format::OpenAi => {
            let a: OpenAiAnswer = serde_json::from_slice(body).ok()?;
            let choice = a.choices.into_iter().next()?;
            let (text, tools) = match choice.message {
                Some(m) => (
                    content_text(m.content.as_ref()),
                    m.tool_calls
                        .into_iter()
                        .map(|t| {
                            let args = serde_json::from_str(&t.function.arguments)
                                .unwrap_or(Value::String(t.function.arguments));
                            (t.function.name, args)
                        })
                        .collect(),
                ),
                None => (String::new(), Vec::new()),
            };
            let usage = a.usage.unwrap_or(OpenAiUsage {
                prompt_tokens: 0,
                completion_tokens: 0,
            });
            Some(Answer {
                text,
                finish: choice.finish_reason.unwrap_or_default(),
                tools,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
            })
        }
        Format::Anthropic => {
            let a: AnthropicAnswer = serde_json::from_slice(body).ok()?;
            let mut text = String::new();
            let mut tools = Vec::new();
            for b in a.content {
                match b.kind.as_str() {
                    "text" => text.push_str(&b.text),
                    "tool_use" => tools.push((b.name, b.input)),
                    _ => {}
                }
            }
            let finish = match a.stop_reason.as_deref() {
                Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
                Some("max_tokens") => "length",
                Some("tool_use") => "tool_calls",
                Some("refusal") => "content_filter",
                Some(other) => other,
                None => "",
            }
            .to_owned();
            let usage = a.usage.unwrap_or(AnthropicUsage {
                input_tokens: 0,
                output_tokens: 0,
            });
            Some(Answer {
                text,
                finish,
                tools,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
            })
        }
    }
}

fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Text for the normalised comparison: lower case, punctuation dropped, runs of white space made
/// one space, trimmed.
pub fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        let w: String = word
            .chars()
            .filter(|c| !c.is_ascii_punctuation())
            .flat_map(char::to_lowercase)
            .collect();
        if w.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w);
    }
    out
}

/// How two answers compare.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub text_exact: bool,
    pub text_normalised: bool,
    pub finish_reason: bool,
    /// `None` when neither answer called a tool.
    pub tool_calls: Option<bool>,
}

pub fn compare(primary: &Answer, shadow: &Answer) -> Verdict {
    Verdict {
        text_exact: primary.text == shadow.text,
        text_normalised: normalise(&primary.text) == normalise(&shadow.text),
        finish_reason: primary.finish == shadow.finish,
        tool_calls: (!primary.tools.is_empty() || !shadow.tools.is_empty())
            .then(|| primary.tools == shadow.tools),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_alike() {
        let o = br#"{"choices":[{"message":{"role":"assistant","content":"Hello, World!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#;
        let a = br#"{"content":[{"type":"text","text":"hello world"}],"stop_reason":"end_turn","usage":{"input_tokens":6,"output_tokens":2}}"#;
        let o = read(Format::OpenAi, o).unwrap();
        let a = read(Format::Anthropic, a).unwrap();
        assert_eq!((o.input_tokens, o.output_tokens), (5, 3));
        assert_eq!(a.finish, "stop");
        let v = compare(&o, &a);
        assert!(!v.text_exact);
        assert!(v.text_normalised);
        assert!(v.finish_reason);
        assert_eq!(v.tool_calls, None);
    }

    #[test]
    fn tool_calls_compare_name_and_parsed_arguments() {
        let o = br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"get","arguments":"{\"a\": 1, \"b\": [2]}"}}]},"finish_reason":"tool_calls"}]}"#;
        let a = br#"{"content":[{"type":"tool_use","id":"t","name":"get","input":{"b":[2],"a":1}}],"stop_reason":"tool_use"}"#;
        let other = br#"{"content":[{"type":"tool_use","id":"t","name":"get","input":{"a":2}}],"stop_reason":"tool_use"}"#;
        let o = read(Format::OpenAi, o).unwrap();
        let a = read(Format::Anthropic, a).unwrap();
        let other = read(Format::Anthropic, other).unwrap();
        assert_eq!(compare(&o, &a).tool_calls, Some(true));
        assert!(compare(&o, &a).finish_reason);
        assert_eq!(compare(&o, &other).tool_calls, Some(false));
        assert_eq!(read(Format::OpenAi, b"not json"), None);
    }

    #[test]
    fn normalising() {
        assert_eq!(normalise("  Hello,\n  WORLD!  "), "hello world");
        assert_eq!(normalise("... !"), "");
    }
}
