//! Streams and the cache: assembling a complete answer from a client-format SSE stream (so a
//! streamed answer can be stored), and replaying a stored complete answer as SSE in the format
//! asked for. Only a stream that ended well (OpenAI `[DONE]` after a finish reason, Anthropic
//! `message_stop`) yields an answer: a partial stream is never stored.

use serde_json::{Map, Value, json};

use crate::sse::SseParser;
use crate::wire::Format;

#[derive(Default)]
struct ToolAcc {
    id: Option<String>,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct ChoiceAcc {
    content: Option<String>,
    refusal: Option<String>,
    tools: std::collections::BTreeMap<u64, ToolAcc>,
    finish_reason: Option<Value>,
}

#[derive(Default)]
struct BlockAcc {
    kind: String,
    text: String,
    id: String,
    name: String,
    json: String,
    start: Map<String, Value>,
}

/// Rebuilds the complete answer from the stream a client received.
pub struct Assembler {
    format: Format,
    parser: SseParser,
    // OpenAI
    head: Map<String, Value>,
    choices: std::collections::BTreeMap<u64, ChoiceAcc>,
    usage: Option<Value>,
    done: bool,
    // Anthropic
    message: Option<Map<String, Value>>,
    blocks: std::collections::BTreeMap<u64, BlockAcc>,
    broken: bool,
}

impl Assembler {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            parser: SseParser::new(),
            head: Map::new(),
            choices: std::collections::BTreeMap::new(),
            usage: None,
            done: false,
            message: None,
            blocks: std::collections::BTreeMap::new(),
            broken: false,
        }
    }

    /// Feed bytes as sent to the client.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        let mut events: Vec<(String, String)> = Vec::new();
        self.parser.push(bytes, |ev| {
            events.push((ev.event.to_owned(), ev.data.to_owned()))
        });
        for (event, data) in events {
            match self.format {
                Format::OpenAi => self.openai(&data),
                Format::Anthropic => self.anthropic(&event, &data),
            }
        }
        if self.parser.buffered() > 8 * 1024 * 1024 {
            self.broken = true;
        }
    }

    fn openai(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else {
            self.broken = true;
            return;
        };
        if chunk.contains_key("error") {
            self.broken = true;
            return;
        }
        for k in [
            "id",
            "created",
            "model",
            "system_fingerprint",
            "service_tier",
        ] {
            if let Some(v) = chunk.get(k)
                && !v.is_null()
            {
                self.head.insert(k.to_owned(), v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(idx).or_default();
            if let Some(d) = c.get("delta") {
                if let Some(s) = d.get("content").and_then(Value::as_str) {
                    acc.content.get_or_insert_with(String::new).push_str(s);
                }
                if let Some(s) = d.get("refusal").and_then(Value::as_str) {
                    acc.refusal.get_or_insert_with(String::new).push_str(s);
                }
                for t in d
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ti = t.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let tacc = acc.tools.entry(ti).or_default();
                    if let Some(id) = t.get("id").and_then(Value::as_str) {
                        tacc.id = Some(id.to_owned());
                    }
                    if let Some(f) = t.get("function") {
                        if let Some(n) = f.get("name").and_then(Value::as_str) {
                            tacc.name.push_str(n);
                        }
                        if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                            tacc.arguments.push_str(a);
                        }
                    }
                }
            }
            if let Some(fr) = c.get("finish_reason").filter(|f| !f.is_null()) {
                acc.finish_reason = Some(fr.clone());
            }
        }
    }

    fn anthropic(&mut self, event: &str, data: &str) {
        let Ok(Value::Object(ev)) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let ty = if event.is_empty() {
            ev.get("type").and_then(Value::as_str).unwrap_or("")
        } else {
            event
        };
        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "message_start" => {
                if let Some(Value::Object(m)) = ev.get("message") {
                    self.message = Some(m.clone());
                }
            }
            "content_block_start" => {
                let Some(Value::Object(b)) = ev.get("content_block") else {
                    return;
                };
                let acc = BlockAcc {
                    kind: b
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    text: b
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    id: b.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
                    name: b
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    json: String::new(),
                    start: b.clone(),
                };
                self.blocks.insert(index, acc);
            }
            "content_block_delta" => {
                let (Some(acc), Some(d)) = (self.blocks.get_mut(&index), ev.get("delta")) else {
                    return;
                };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        acc.text
                            .push_str(d.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("input_json_delta") => {
                        acc.json
                            .push_str(d.get("partial_json").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("thinking_delta") => {
                        acc.text
                            .push_str(d.get("thinking").and_then(Value::as_str).unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(m) = self.message.as_mut() {
                    if let Some(Value::Object(d)) = ev.get("delta") {
                        for (k, v) in d {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    if let Some(Value::Object(u)) = ev.get("usage") {
                        let usage = m
                            .entry("usage".to_owned())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(um) = usage {
                            for (k, v) in u {
                                um.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
            }
            "message_stop" => self.done = true,
            "error" => self.broken = true,
            _ => {}
        }
    }

    /// The complete answer as a non-streamed response body, if the stream ended well.
    pub fn finish(self) -> Option<Vec<u8>> {
        if self.broken || !self.done {
            return None;
        }
        match self.format {
            Format::OpenAi => {
                if self.choices.is_empty()
                    || self.choices.values().any(|c| c.finish_reason.is_none())
                {
                    return None;
                }
                let mut out = self.head;
                out.insert("object".into(), json!("chat.completion"));
                let choices: Vec<Value> = self
                    .choices
                    .into_iter()
                    .map(|(i, c)| {
                        let mut msg = Map::new();
                        msg.insert("role".into(), json!("assistant"));
                        msg.insert(
                            "content".into(),
                            c.content.map_or(Value::Null, Value::String),
                        );
                        msg.insert(
                            "refusal".into(),
                            c.refusal.map_or(Value::Null, Value::String),
                        );
                        if !c.tools.is_empty() {
                            let calls: Vec<Value> = c
                                .tools
                                .into_values()
                                .map(|t| {
                                    json!({"id": t.id, "type": "function",
                                    "function": {"name": t.name, "arguments": t.arguments}})
                                })
                                .collect();
                            msg.insert("tool_calls".into(), Value::Array(calls));
                        }
                        json!({"index": i, "message": msg, "logprobs": null,
                               "finish_reason": c.finish_reason})
                    })
                    .collect();
                out.insert("choices".into(), Value::Array(choices));
                if let Some(u) = self.usage {
                    out.insert("usage".into(), u);
                }
                serde_json::to_vec(&Value::Object(out)).ok()
            }
            Format::Anthropic => {
                let mut m = self.message?;
                let content: Vec<Value> = self
                    .blocks
                    .into_values()
                    .filter_map(|b| match b.kind.as_str() {
                        "text" => Some(json!({"type": "text", "text": b.text})),
                        "tool_use" | "server_tool_use" => {
                            let input: Value = if b.json.trim().is_empty() {
                                json!({})
                            } else {
                                serde_json::from_str(&b.json).ok()?
                            };
                            Some(
                                json!({"type": b.kind, "id": b.id, "name": b.name, "input": input}),
                            )
                        }
                        "thinking" => {
                            let mut start = b.start;
                            start.insert("thinking".into(), Value::String(b.text));
                            Some(Value::Object(start))
                        }
                        _ => Some(Value::Object(b.start)),
                    })
                    .collect();
                m.insert("content".into(), Value::Array(content));
                serde_json::to_vec(&Value::Object(m)).ok()
            }
        }
    }
}

fn frame(out: &mut Vec<u8>, event: Option<&str>, data: &Value) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if let Ok(v) = serde_json::to_vec(data) {
        out.extend_from_slice(&v);
    }
    out.extend_from_slice(b"\n\n");
}

/// Replay a stored complete answer as the SSE stream of `format`.
pub fn replay(format: Format, body: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len() * 2);
    match format {
        Format::OpenAi => {
            let base = |choices: Value| {
                json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"),
                       "model": v.get("model"), "system_fingerprint": v.get("system_fingerprint"),
                       "choices": choices})
            };
            for c in v
                .get("choices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let idx = c.get("index").cloned().unwrap_or(json!(0));
                let msg = c.get("message").cloned().unwrap_or(json!({}));
                let mut delta = Map::new();
                delta.insert("role".into(), json!("assistant"));
                delta.insert(
                    "content".into(),
                    msg.get("content").cloned().unwrap_or(Value::Null),
                );
                if let Some(r) = msg.get("refusal").filter(|r| !r.is_null()) {
                    delta.insert("refusal".into(), r.clone());
                }
                if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            json!({"index": i, "id": t.get("id"), "type": "function",
                                              "function": t.get("function")})
                        })
                        .collect();
                    delta.insert("tool_calls".into(), Value::Array(calls));
                }
                frame(
                    &mut out,
                    None,
                    &base(
                        json!([{"index": idx, "delta": delta, "logprobs": null, "finish_reason": null}]),
                    ),
                );
                frame(
                    &mut out,
                    None,
                    &base(json!([{"index": idx, "delta": {}, "logprobs": null,
                    "finish_reason": c.get("finish_reason")}])),
                );
            }
            if include_usage && let Some(u) = v.get("usage") {
                let mut last = base(json!([]));
                last["usage"] = u.clone();
                frame(&mut out, None, &last);
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        Format::Anthropic => {
            let usage = v.get("usage").cloned().unwrap_or(json!({}));
            let mut start_usage = usage.clone();
            start_usage["output_tokens"] = json!(0);
            let message = json!({"id": v.get("id"), "type": "message", "role": "assistant",
                "model": v.get("model"), "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": start_usage});
            frame(
                &mut out,
                Some("message_start"),
                &json!({"type": "message_start", "message": message}),
            );
            for (i, b) in v
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
                let (start, delta) = match ty {
                    "text" => (
                        json!({"type": "text", "text": ""}),
                        Some(json!({"type": "text_delta", "text": b.get("text")})),
                    ),
                    "tool_use" | "server_tool_use" => (
                        json!({"type": ty, "id": b.get("id"), "name": b.get("name"), "input": {}}),
                        Some(json!({"type": "input_json_delta",
                                    "partial_json": b.get("input").map(Value::to_string).unwrap_or_default()})),
                    ),
                    "thinking" => (
                        json!({"type": "thinking", "thinking": ""}),
                        Some(json!({"type": "thinking_delta", "thinking": b.get("thinking")})),
                    ),
                    _ => (b.clone(), None),
                };
                frame(
                    &mut out,
                    Some("content_block_start"),
                    &json!({"type": "content_block_start", "index": i, "content_block": start}),
                );
                if let Some(d) = delta {
                    frame(
                        &mut out,
                        Some("content_block_delta"),
                        &json!({"type": "content_block_delta", "index": i, "delta": d}),
                    );
                }
                frame(
                    &mut out,
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": i}),
                );
            }
            frame(
                &mut out,
                Some("message_delta"),
                &json!({"type": "message_delta",
                "delta": {"stop_reason": v.get("stop_reason"), "stop_sequence": v.get("stop_sequence")},
                "usage": {"output_tokens": usage.get("output_tokens").cloned().unwrap_or(json!(0))}}),
            );
            frame(
                &mut out,
                Some("message_stop"),
                &json!({"type": "message_stop"}),
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(format: Format, full: &Value) -> Value {
        let sse = replay(format, full.to_string().as_bytes(), true).unwrap();
        let mut a = Assembler::new(format);
        // Feed in awkward pieces, as a network would.
        for piece in sse.chunks(7) {
            a.push(piece);
        }
        serde_json::from_slice(&a.finish().expect("complete")).unwrap()
    }

    #[test]
    fn openai_answers_replay_and_reassemble() {
        let full = json!({"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi there","refusal":null,
              "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
              "logprobs":null,"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}});
        let back = round_trip(Format::OpenAi, &full);
        assert_eq!(back["choices"][0]["message"]["content"], "hi there");
        assert_eq!(
            back["choices"][0]["message"]["tool_calls"],
            full["choices"][0]["message"]["tool_calls"]
        );
        assert_eq!(back["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(back["usage"], full["usage"]);
        assert_eq!(back["id"], "chatcmpl-1");
    }

    #[test]
    fn anthropic_answers_replay_and_reassemble() {
        let full = json!({"id":"msg_1","type":"message","role":"assistant","model":"m",
            "content":[{"type":"text","text":"hello"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"x":[1,2]}}],
            "stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":4}});
        let back = round_trip(Format::Anthropic, &full);
        assert_eq!(back["content"], full["content"]);
        assert_eq!(back["stop_reason"], "tool_use");
        assert_eq!(back["usage"]["output_tokens"], 4);
        assert_eq!(back["usage"]["input_tokens"], 7);
    }

    #[test]
    fn partial_streams_are_not_stored() {
        let mut a = Assembler::new(Format::OpenAi);
        a.push(b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n");
        assert!(a.finish().is_none());
        let mut b = Assembler::new(Format::Anthropic);
        b.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\n");
        assert!(b.finish().is_none());
    }
}
