//! What the semantic cache takes from a request: the text to embed (the last user message's
//! text) and the partition (everything else), for the three request shapes it understands.
//!
//! The partition key is the exact cache's key (`cache::key`: canonical JSON, the fields that do
//! not change the answer left out, the scope) of the body with the last user message's text
//! parts emptied, hashed with the shape and the embedding model. So two requests can match only
//! when they differ in nothing but that text: same model, same system prompt and history, same
//! parameters (temperature, tools, response format…), same non-text parts of the message
//! (images, files, tool results), same scope.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::index::PartitionKey;
use crate::cache::key;
use crate::wire::Endpoint;

/// The request bodies the semantic cache understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OpenAI `POST /v1/chat/completions`: `messages[]`, content a string or parts
    /// (`{"type":"text","text":…}`).
    ChatCompletions,
    /// Anthropic `POST /v1/messages`: `messages[]`, content a string or blocks
    /// (`{"type":"text","text":…}`).
    Messages,
    /// OpenAI `POST /v1/responses`: `input` a string, or items whose user messages have content
    /// a string or parts (`{"type":"input_text","text":…}`).
    Responses,
}

impl Shape {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::ChatCompletions => b"chat",
            Self::Messages => b"messages",
            Self::Responses => b"responses",
        }
    }
}

/// A request prepared for the semantic cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub partition: PartitionKey,
    /// The last user message's text parts, joined by newlines: what is embedded.
    pub text: String,
}

/// The text to embed and the partition of `body`, or `None` when it has no user text (nothing
/// to match on). `scope` is the exact cache's scope (the key's id under `scope: key`, empty
/// under `global`); `embedding_model` the configured embedding model (vectors of two models are
/// never compared).
pub fn prepare(shape: Shape, scope: &str, embedding_model: &str, body: &Value) -> Option<Prepared> {
    let mut rest = body.clone();
    let text = take_last_user_text(shape, &mut rest)?;
    if text.trim().is_empty() {
        return None;
    }
    let bytes = serde_json::to_vec(&rest).ok()?;
    let endpoint = match shape {
        Shape::Messages => Endpoint::Chat(crate::wire::Format::Anthropic),
        // The shape's own tag below tells Responses from chat.
        Shape::ChatCompletions | Shape::Responses => Endpoint::Chat(crate::wire::Format::OpenAi),
    };
    let (inner, _) = key::key(endpoint, scope, &bytes)?;
    let mut h = Sha256::new();
    h.update(b"aigw-semantic-v1\0");
    h.update(shape.tag());
    h.update(b"\0");
    h.update(embedding_model.as_bytes());
    h.update(b"\0");
    h.update(inner);
    Some(Prepared {
        partition: h.finalize().into(),
        text,
    })
}

/// Remove the last user message's text from `body` (emptied in place, so that the rest keeps
/// its shape) and return it.
fn take_last_user_text(shape: Shape, body: &mut Value) -> Option<String> {
    let (list, part_type) = match shape {
        Shape::ChatCompletions => ("messages", "text"),
        Shape::Messages => ("messages", "text"),
        Shape::Responses => {
            if let Some(s) = body.get_mut("input").filter(|v| v.is_string()) {
                return Some(take_string(s));
            }
            ("input", "input_text")
        }
    };
    let message = body
        .get_mut(list)?
        .as_array_mut()?
        .iter_mut()
        .rev()
        .find(|m| is_user_message(shape, m))?;
    let content = message.get_mut("content")?;
    if content.is_string() {
        return Some(take_string(content));
    }
    let mut texts = Vec::new();
    for part in content.as_array_mut()? {
        let is_text = part
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == part_type || t == "text");
        if is_text && let Some(t) = part.get_mut("text").filter(|t| t.is_string()) {
            texts.push(take_string(t));
        }
    }
    (!texts.is_empty()).then(|| texts.join("\n"))
}

fn is_user_message(shape: Shape, m: &Value) -> bool {
    let user = m.get("role").and_then(Value::as_str) == Some("user");
    match shape {
        // A Responses item without a type is a message; other item types carry no role.
        Shape::Responses => {
            user && m
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "message")
        }
        Shape::ChatCompletions | Shape::Messages => user,
    }
}

fn take_string(v: &mut Value) -> String {
    match std::mem::replace(v, Value::String(String::new())) {
        Value::String(s) => s,
        other => {
            *v = other;
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prep(shape: Shape, body: &Value) -> Prepared {
        prepare(shape, "key-1", "emb", body).unwrap()
    }

    #[test]
    fn chat_the_last_user_message_is_the_text_and_the_rest_the_partition() {
        let a = json!({"model":"m","temperature":0.2,"messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":"first question"},
            {"role":"assistant","content":"first answer"},
            {"role":"user","content":"What is the capital of France?"}]});
        let mut b = a.clone();
        b["messages"][3]["content"] = json!([{"type":"text","text":"Capital of France?"}]);
        b["stream"] = json!(true);
        let (pa, pb) = (
            prep(Shape::ChatCompletions, &a),
            prep(Shape::ChatCompletions, &b),
        );
        assert_eq!(pa.text, "What is the capital of France?");
        assert_eq!(pb.text, "Capital of France?");
        // A string and a one-text-part content are different JSON: different partitions.
        assert_ne!(pa.partition, pb.partition);
        let mut c = a.clone();
        c["messages"][3]["content"] = json!("Tell me France's capital");
        assert_eq!(prep(Shape::ChatCompletions, &c).partition, pa.partition);
        // Anything else differing separates them.
        for (path, v) in [
            ("temperature", json!(0.3)),
            ("model", json!("other")),
            ("max_tokens", json!(5)),
        ] {
            let mut d = c.clone();
            d[path] = v;
            assert_ne!(
                prep(Shape::ChatCompletions, &d).partition,
                pa.partition,
                "{path}"
            );
        }
        let mut d = c.clone();
        d["messages"][0]["content"] = json!("Be verbose.");
        assert_ne!(prep(Shape::ChatCompletions, &d).partition, pa.partition);
        let other_scope = prepare(Shape::ChatCompletions, "key-2", "emb", &c).unwrap();
        assert_ne!(other_scope.partition, pa.partition);
        let other_model = prepare(Shape::ChatCompletions, "key-1", "emb2", &c).unwrap();
        assert_ne!(other_model.partition, pa.partition);
    }

    #[test]
    fn chat_images_stay_in_the_partition_and_text_parts_are_joined() {
        let body = |img: &str, text: &str| {
            json!({"model":"m","messages":[{"role":"user","content":[
                {"type":"text","text":text},
                {"type":"image_url","image_url":{"url":img}},
                {"type":"text","text":"in one word"}]}]})
        };
        let a = prep(
            Shape::ChatCompletions,
            &body("https://x/1.png", "What is this?"),
        );
        assert_eq!(a.text, "What is this?\nin one word");
        let b = prep(
            Shape::ChatCompletions,
            &body("https://x/1.png", "What's that?"),
        );
        assert_eq!(a.partition, b.partition);
        let c = prep(
            Shape::ChatCompletions,
            &body("https://x/2.png", "What is this?"),
        );
        assert_ne!(a.partition, c.partition);
    }

    #[test]
    fn anthropic_messages_keep_system_and_tool_results_in_the_partition() {
        let a = json!({"model":"claude","max_tokens":100,"system":"You are terse.","messages":[
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t1","content":"42"},
                {"type":"text","text":"So what is the answer?"}]}]});
        let pa = prep(Shape::Messages, &a);
        assert_eq!(pa.text, "So what is the answer?");
        let mut b = a.clone();
        b["messages"][0]["content"][1]["text"] = json!("What's the answer then?");
        assert_eq!(prep(Shape::Messages, &b).partition, pa.partition);
        let mut c = b.clone();
        c["messages"][0]["content"][0]["content"] = json!("43");
        assert_ne!(prep(Shape::Messages, &c).partition, pa.partition);
        let mut d = b.clone();
        d["system"] = json!("You are chatty.");
        assert_ne!(prep(Shape::Messages, &d).partition, pa.partition);
        // The same body as a chat request is another partition.
        assert_ne!(prep(Shape::ChatCompletions, &a).partition, pa.partition);
    }

    #[test]
    fn responses_input_string_or_items() {
        let a = json!({"model":"m","instructions":"Be brief.","input":"How tall is Everest?"});
        let pa = prep(Shape::Responses, &a);
        assert_eq!(pa.text, "How tall is Everest?");
        let b = json!({"model":"m","instructions":"Be brief.","input":"Everest height?"});
        assert_eq!(prep(Shape::Responses, &b).partition, pa.partition);
        let items = json!({"model":"m","input":[
            {"role":"user","content":"older"},
            {"type":"function_call_output","call_id":"c","output":"{}"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"How tall is Everest?"}]}]});
        let pi = prep(Shape::Responses, &items);
        assert_eq!(pi.text, "How tall is Everest?");
        assert_ne!(pi.partition, pa.partition);
        let mut other = a.clone();
        other["instructions"] = json!("Be long.");
        assert_ne!(prep(Shape::Responses, &other).partition, pa.partition);
    }

    #[test]
    fn nothing_to_embed_is_none() {
        for (shape, body) in [
            (
                Shape::ChatCompletions,
                json!({"model":"m","messages":[{"role":"system","content":"x"}]}),
            ),
            (
                Shape::ChatCompletions,
                json!({"model":"m","messages":[{"role":"user","content":"  "}]}),
            ),
            (
                Shape::ChatCompletions,
                json!({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}),
            ),
            (
                Shape::Messages,
                json!({"model":"m","messages":"not a list"}),
            ),
            (
                Shape::Responses,
                json!({"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"x"}]}),
            ),
            (Shape::Responses, json!(["not an object"])),
        ] {
            assert!(prepare(shape, "", "emb", &body).is_none(), "{body}");
        }
    }
}
