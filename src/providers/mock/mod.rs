//! The built-in `mock` provider: offline, deterministic, OpenAI-shaped.
//!
//! - Chat: echoes the last user message's text. When the request forces a tool
//!   (`tool_choice: "required"` or a named function) it answers with one call to that tool (the
//!   first tool for `required`) whose arguments are `{"input": <echo>}`.
//! - Streaming: one chunk per word (role chunk first, finish chunk, a usage chunk when
//!   `stream_options.include_usage`, then `data: [DONE]`), `latency` before the first chunk and
//!   between words.
//! - Usage: tokens approximated as whitespace-separated words.
//! - Embeddings: a deterministic unit vector per input (SHA-256 based), `dimensions` long
//!   (default 64), float or base64.
//! - The pass-through endpoints (completions, images, speech, transcriptions, moderations,
//!   rerank): small deterministic answers in their real shapes (`endpoints.rs`).
//!
//! It is used by the quick start, demos, tests and benchmarks (`ai-gateway mock-server`).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod endpoints;
pub use endpoints::passthrough;

use super::UpstreamBody;
use crate::clock::unix_secs;
use crate::error::{UpstreamError, UpstreamKind};

#[derive(Deserialize)]
struct ChatReq {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    n: Option<u32>,
}

/// The text of a message's `content`: a string, or its parts' `text`s joined by spaces.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Tokens of a text, approximated as its whitespace-separated words (at least 1).
pub fn words(s: &str) -> u64 {
    s.split_whitespace().count().max(1) as u64
}

/// What the mock answers, whatever the wire format it speaks (OpenAI here; Anthropic, Gemini
/// and Bedrock in `ai-gateway mock-server`): the last user message's text echoed (or one call
/// of the tool the request forces, with `{"input": <echo>}`), and the token counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    pub reply: String,
    /// The tool the request forces, if any.
    pub tool: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Echo {
    /// From a conversation's turns in order, `(is the user's, text)`: the reply is the last
    /// user turn's text; each turn counts its words (at least 1) as prompt tokens.
    pub fn new(turns: impl IntoIterator<Item = (bool, String)>, tool: Option<String>) -> Self {
        let mut reply = String::new();
        let mut prompt_tokens = 0;
        for (user, text) in turns {
            prompt_tokens += words(&text);
            if user {
                reply = text;
            }
        }
        let completion_tokens = words(&reply);
        Echo {
            reply,
            tool,
            prompt_tokens,
            completion_tokens,
        }
    }

    /// The streamed text, one piece per word: the reply split at each space, every piece but
    /// the last keeping its space (an empty reply is one empty piece).
    pub fn pieces(&self) -> impl Iterator<Item = &str> {
        let mut rest = Some(self.reply.as_str());
        std::iter::from_fn(move || {
            let r = rest?;
            match r.find(' ') {
                Some(i) => {
                    rest = Some(&r[i + 1..]);
                    Some(&r[..=i])
                }
                None => {
                    rest = None;
                    Some(r)
                }
            }
        })
    }

    /// The forced tool call's arguments, `{"input": <echo>}`, as JSON text.
    pub fn arguments(&self) -> String {
        json!({"input": self.reply}).to_string()
    }

    /// The arguments' two halves (split at a character boundary), as a stream sends them.
    pub fn argument_halves(args: &str) -> [&str; 2] {
        let mid = args.len() / 2;
        let mid = (0..=mid)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        [&args[..mid], &args[mid..]]
    }
}

/// A streamed answer: `frames` sent one by one, `latency` before each.
pub fn paced(frames: Vec<Bytes>, latency: Duration) -> UpstreamBody {
    let stream = futures_util::stream::iter(frames).then(move |f| async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        Ok::<_, UpstreamError>(f)
    });
    UpstreamBody::Stream(Box::pin(stream))
}

fn forced_tool(req: &ChatReq) -> Option<String> {
    let tools = req.tools.as_ref()?;
    match req.tool_choice.as_ref()? {
        Value::String(s) if s == "required" => tools
            .first()?
            .pointer("/function/name")?
            .as_str()
            .map(str::to_owned),
        Value::Object(o) => o.get("function")?.get("name")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Answer a chat completions request as an OpenAI server would.
pub fn chat(body: &[u8], latency: Duration) -> Result<UpstreamBody, UpstreamError> {
    let req: ChatReq = serde_json::from_slice(body).map_err(|e| invalid(&e))?;
    let echo = Echo::new(
        req.messages.iter().map(|m| {
            (
                m.get("role").and_then(Value::as_str) == Some("user"),
                m.get("content").map(text_of).unwrap_or_default(),
            )
        }),
        forced_tool(&req),
    );
    let id = format!("chatcmpl-mock{:016x}", rand::random::<u64>());
    let created = unix_secs();
    let model = req.model.clone();
    let usage = json!({
        "prompt_tokens": echo.prompt_tokens,
        "completion_tokens": echo.completion_tokens,
        "total_tokens": echo.prompt_tokens + echo.completion_tokens,
    });

    if !req.stream {
        let n = req.n.unwrap_or(1).clamp(1, 16);
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                let message = match &echo.tool {
                    Some(name) => json!({"role":"assistant","content":null,"tool_calls":[{
                        "id": format!("call_mock{i}"), "type":"function",
                        "function":{"name":name,"arguments":echo.arguments()}}]}),
                    None => json!({"role":"assistant","content":echo.reply,"refusal":null}),
                };
                json!({"index":i,"message":message,"logprobs":null,
                       "finish_reason": if echo.tool.is_some() {"tool_calls"} else {"stop"}})
            })
            .collect();
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage, "system_fingerprint": "fp_mock",
        });
        return Ok(UpstreamBody::Full(Bytes::from(body.to_string())));
    }

    let include_usage = include_usage(req.stream_options.as_ref());
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
            "system_fingerprint":"fp_mock",
            "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
        sse(&c)
    };
    let mut frames: Vec<Bytes> = Vec::new();
    frames.push(chunk(json!({"role":"assistant","content":""}), Value::Null));
    match &echo.tool {
        Some(name) => {
            frames.push(chunk(
                json!({"tool_calls":[{"index":0,"id":"call_mock0","type":"function",
                    "function":{"name":name,"arguments":""}}]}),
                Value::Null,
            ));
            let args = echo.arguments();
            for part in Echo::argument_halves(&args) {
                frames.push(chunk(
                    json!({"tool_calls":[{"index":0,"function":{"arguments":part}}]}),
                    Value::Null,
                ));
            }
            frames.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for piece in echo.pieces() {
                frames.push(chunk(json!({"content": piece}), Value::Null));
            }
            frames.push(chunk(json!({}), json!("stop")));
        }
    }
    if include_usage {
        let c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
            "choices":[],"usage":usage});
        frames.push(sse(&c));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(paced(frames, latency))
}

/// Whether `stream_options` asks for a usage chunk.
fn include_usage(stream_options: Option<&Value>) -> bool {
    stream_options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A mock's refusal of a body it cannot read: 400 `invalid_request_error`.
fn invalid(e: &dyn std::fmt::Display) -> UpstreamError {
    let mut err = UpstreamError::new("mock", UpstreamKind::Status(400), format!("mock: {e}"));
    err.error_type = Some("invalid_request_error".into());
    err
}

/// A text in streamed pieces: word by word, each but the last with its space.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}

/// One `data:` event of a JSON value.
fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

#[derive(Deserialize)]
struct EmbReq {
    #[serde(default)]
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// A deterministic unit vector for `text`.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(dims);
    let mut counter = 0u32;
    while v.len() < dims {
        let mut h = Sha256::new();
        h.update(counter.to_le_bytes());
        h.update(text.as_bytes());
        for pair in h.finalize().chunks(2) {
            if v.len() == dims {
                break;
            }
            let x = u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            v.push(f32::from(x) / 32767.5 - 1.0);
        }
        counter += 1;
    }
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Answer an embeddings request as an OpenAI server would.
pub fn embeddings(body: &[u8]) -> Result<UpstreamBody, UpstreamError> {
    let req: EmbReq = serde_json::from_slice(body).map_err(|e| invalid(&e))?;
    let inputs: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        other => vec![other.to_string()],
    };
    let dims = req.dimensions.unwrap_or(64).clamp(1, 4096);
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += words(text);
            let v = embedding(text, dims);
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":emb})
        })
        .collect();
    let body = json!({"object":"list","data":data,"model":req.model,
        "usage":{"prompt_tokens":tokens,"total_tokens":tokens}});
    Ok(UpstreamBody::Full(Bytes::from(body.to_string())))
}

/// A one-line summary of the mock's behaviour, for `describe`.
pub fn describe(latency: Duration) -> String {
    let mut s = String::from("offline echo");
    if !latency.is_zero() {
        let _ = write!(s, ", {}ms latency", latency.as_millis());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 64);
        assert_eq!(a, embedding("hello", 64));
        assert_ne!(a, embedding("hello!", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn echo_pieces_are_the_words_with_their_spaces() {
        let e = Echo::new(
            [
                (false, "be brief".to_owned()),
                (true, "one  two ".to_owned()),
            ],
            None,
        );
        assert_eq!(e.pieces().collect::<Vec<_>>(), ["one ", " ", "two ", ""]);
        assert_eq!(e.pieces().collect::<String>(), e.reply);
        assert_eq!((e.prompt_tokens, e.completion_tokens), (4, 2));
        let empty = Echo::new([], None);
        assert_eq!(empty.pieces().collect::<Vec<_>>(), [""]);
        assert_eq!(Echo::argument_halves("aéb"), ["a", "éb"]);
    }

    #[test]
    fn echoes_last_user_message() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"one"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"two words"}]}]}"#;
        let UpstreamBody::Full(b) = chat(body, Duration::ZERO).unwrap() else {
            panic!("expected full body")
        };
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "two words");
        assert_eq!(v["usage"]["completion_tokens"], 2);
    }
}
