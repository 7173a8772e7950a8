//! Property: translating an OpenAI request to Anthropic and back keeps what both formats can say:
//! the messages' text, their roles once consecutive same-role messages are merged (tool results
//! counting as user turns), tool calls and results, tools, tool_choice, stop, max_tokens,
//! temperature and top_p.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

#[derive(Debug, Clone)]
enum Item {
    User(String),
    Assistant(String),
    /// An assistant message with tool calls (and maybe text), followed by one tool message per
    /// call.
    Tools(Option<String>, Vec<(String, String, Value, String)>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?\"\\\\\n\té😀]{1,24}"
}

fn args() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        "[a-z_]{1,8}",
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            text().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        text().prop_map(Item::User),
        text().prop_map(Item::Assistant),
        (
            proptest::option::of(text()),
            proptest::collection::vec(
                (
                    // OpenAI's ids, Mistral's, Kimi's (with characters Anthropic refuses).
                    "call_[a-zA-Z0-9]{6,12}|[a-zA-Z0-9]{9}|functions\\.[a-z_]{1,8}:[0-9]",
                    "[a-z_]{1,12}",
                    args(),
                    text()
                ),
                1..3
            )
        )
            .prop_map(|(t, calls)| Item::Tools(t, calls)),
    ]
}

#[derive(Debug, Clone)]
struct Req {
    system: Vec<String>,
    items: Vec<Item>,
    tools: Vec<(String, Option<String>, Value)>,
    tool_choice: Option<Value>,
    parallel: Option<bool>,
    stop: Option<Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    string_content: bool,
}

fn req() -> impl Strategy<Value = Req> {
    let tools =
        proptest::collection::vec(("[a-z_]{1,12}", proptest::option::of(text()), args()), 0..3)
            .prop_map(|v| {
                v.into_iter()
                    .map(|(n, d, props)| (n, d, json!({"type": "object", "properties": props})))
                    .collect::<Vec<_>>()
            });
    let stop = proptest::option::of(prop_oneof![
        "[a-zA-Z#]{1,6}".prop_map(Value::from),
        proptest::collection::vec("[a-zA-Z#]{1,6}", 1..4).prop_map(|v| json!(v)),
    ]);
    let choice = proptest::option::of(prop_oneof![
        Just(json!("auto")),
        Just(json!("none")),
        Just(json!("required")),
        Just(json!({"type": "function", "function": {"name": "named_tool"}})),
    ]);
    (
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec(item(), 1..8),
        tools,
        (choice, proptest::option::of(any::<bool>())),
        stop,
        (
            proptest::option::of(1u64..100_000),
            proptest::option::of(1u64..100_000),
        ),
        (
            proptest::option::of(0u32..=200),
            proptest::option::of(1u32..=100),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(system, items, tools, (tool_choice, parallel), stop, (mt, mct), (t, p), sc)| Req {
                system,
                items,
                tools,
                tool_choice,
                parallel,
                stop,
                max_tokens: mt,
                max_completion_tokens: mct,
                temperature: t.map(|t| f64::from(t) / 100.0),
                top_p: p.map(|p| f64::from(p) / 100.0),
                string_content: sc,
            },
        )
}

fn content(text: &str, as_string: bool) -> Value {
    if as_string {
        json!(text)
    } else {
        json!([{"type": "text", "text": text}])
    }
}

fn to_openai(r: &Req) -> Value {
    let mut messages = Vec::new();
    for s in &r.system {
        messages.push(json!({"role": "system", "content": content(s, r.string_content)}));
    }
    for it in &r.items {
        match it {
            Item::User(t) => {
                messages.push(json!({"role": "user", "content": content(t, r.string_content)}))
            }
            Item::Assistant(t) => {
                messages
                    .push(json!({"role": "assistant", "content": content(t, r.string_content)}));
            }
            Item::Tools(t, calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|(id, name, args, _)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                    })
                    .collect();
                messages.push(json!({
                    "role": "assistant",
                    "content": t.as_deref().map_or(Value::Null, |t| content(t, r.string_content)),
                    "tool_calls": tool_calls,
                }));
                for (id, _, _, result) in calls {
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                }
            }
        }
    }
    let mut tools: Vec<Value> = r
        .tools
        .iter()
        .map(|(n, d, p)| {
            let mut f = json!({"name": n, "parameters": p});
            if let Some(d) = d {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect();
    if !tools.is_empty() {
        tools.push(json!({"type": "function", "function": {"name": "named_tool", "parameters": {"type": "object"}}}));
    }
    let mut v = json!({"model": "client-model", "messages": messages});
    let set = |v: &mut Value, k: &str, x: Option<Value>| {
        if let Some(x) = x {
            v[k] = x;
        }
    };
    set(&mut v, "tools", (!tools.is_empty()).then(|| json!(tools)));
    set(&mut v, "tool_choice", r.tool_choice.clone());
    set(&mut v, "parallel_tool_calls", r.parallel.map(Value::from));
    set(&mut v, "stop", r.stop.clone());
    set(&mut v, "max_tokens", r.max_tokens.map(Value::from));
    set(
        &mut v,
        "max_completion_tokens",
        r.max_completion_tokens.map(Value::from),
    );
    set(&mut v, "temperature", r.temperature.map(Value::from));
    set(&mut v, "top_p", r.top_p.map(Value::from));
    v
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Call(String, String, Value),
    Result(String, String),
}

/// The texts of a content value (string or parts).
fn texts(c: &Value) -> Vec<String> {
    match c {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// An OpenAI request as Anthropic would see it: the system texts, then turns of merged roles.
fn normalize(v: &Value) -> (Vec<String>, Vec<(String, Vec<Part>)>) {
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Part>)> = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        let role = m["role"].as_str().unwrap();
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(texts(&m["content"]));
                continue;
            }
            "tool" => (
                "user",
                vec![Part::Result(
                    m["tool_call_id"].as_str().unwrap().to_owned(),
                    texts(&m["content"]).concat(),
                )],
            ),
            r => {
                let mut parts: Vec<Part> =
                    texts(&m["content"]).into_iter().map(Part::Text).collect();
                for tc in m["tool_calls"].as_array().into_iter().flatten() {
                    parts.push(Part::Call(
                        tc["id"].as_str().unwrap().to_owned(),
                        tc["function"]["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(tc["function"]["arguments"].as_str().unwrap())
                            .unwrap(),
                    ));
                }
                (r, parts)
            }
        };
        match turns.last_mut() {
            Some((r, p)) if r == role => p.extend(parts),
            _ => turns.push((role.to_owned(), parts)),
        }
    }
    (system, turns)
}

fn stops(v: &Value) -> Vec<String> {
    match &v["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        _ => Vec::new(),
    }
}

fn tools(v: &Value) -> Vec<Value> {
    v["tools"].as_array().cloned().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn openai_anthropic_openai_keeps_what_both_can_say(r in req()) {
        let original = to_openai(&r);
        let anthropic = chat_request_to_messages(original.to_string().as_bytes(), "claude", &mut Default::default()).unwrap();
        let back = messages_request_to_chat(&anthropic, "gpt", &mut Default::default()).unwrap();
        let back: Value = serde_json::from_slice(&back).unwrap();
        // Anthropic-side ids: Anthropic's characters only, none in OpenAI's style.
        let sent: Value = serde_json::from_slice(&anthropic).unwrap();
        for b in sent["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_array()).flatten() {
            if let Some(id) = b.get("id").or_else(|| b.get("tool_use_id")).and_then(Value::as_str) {
                prop_assert!(!id.starts_with("call_"), "{}", id);
                prop_assert!(id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'), "{}", id);
            }
        }

        prop_assert_eq!(back["model"].as_str(), Some("gpt"));
        prop_assert_eq!(normalize(&back), normalize(&original));
        prop_assert_eq!(tools(&back), tools(&original));
        prop_assert_eq!(stops(&back), stops(&original));
        let max = r.max_completion_tokens.or(r.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
        prop_assert_eq!(back["max_completion_tokens"].as_u64(), Some(max));
        prop_assert_eq!(back["temperature"].as_f64(), r.temperature.map(|t| t.min(1.0)));
        prop_assert_eq!(back["top_p"].as_f64().unwrap_or(1.0), r.top_p.unwrap_or(1.0));
        if r.tools.is_empty() {
            prop_assert!(back.get("tool_choice").is_none());
            prop_assert!(back.get("parallel_tool_calls").is_none());
        } else {
            let want_choice = match (&r.tool_choice, r.parallel) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(false)) => Some(json!("auto")),
                (None, _) => None,
            };
            prop_assert_eq!(back.get("tool_choice").cloned(), want_choice);
            let none = r.tool_choice.as_ref().is_some_and(|c| c == "none");
            let want_parallel = (r.parallel == Some(false) && !none).then_some(json!(false));
            prop_assert_eq!(back.get("parallel_tool_calls").cloned(), want_parallel);
        }
    }
}

/// A tool call made on one side and answered on the other keeps its id each way: OpenAI's
/// `call_X` is `toolu_X` to an Anthropic client and `call_X` again upstream; Anthropic's
/// `toolu_Y` is `call_Y` to an OpenAI client and `toolu_Y` again upstream; whole and streamed.
#[test]
fn tool_ids_round_trip_through_a_conversation() {
    let anthropic_turn = |id: &str| {
        json!({"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "r"}]},
        ]})
    };
    let openai_turn = |id: &str| {
        json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": id, "content": "r"},
        ]})
    };
    let json = |b: &[u8]| -> Value { serde_json::from_slice(b).unwrap() };
    for upstream_id in [
        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "functions.f:0",
        "abc123XYZ",
    ] {
        // An OpenAI upstream's call reaches an Anthropic client...
        let answer = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": upstream_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
        let seen = json(&chat_response_to_messages(answer.to_string().as_bytes(), "m").unwrap());
        let client_id = seen["content"][0]["id"].as_str().unwrap().to_owned();
        if upstream_id.starts_with("call_") {
            assert_eq!(client_id, upstream_id.replacen("call_", "toolu_", 1));
        }
        let mut conv = ChatToMessagesStream::new("m");
        let mut out = Vec::new();
        let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": upstream_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
        conv.on_data(&chunk.to_string(), &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(&format!("\"id\":\"{client_id}\""))
        );
        // ...whose next turn gives the upstream its own id back.
        let next = messages_request_to_chat(
            anthropic_turn(&client_id).to_string().as_bytes(),
            "gpt",
            &mut Default::default(),
        )
        .unwrap();
        let next = json(&next);
        assert_eq!(next["messages"][1]["tool_calls"][0]["id"], upstream_id);
        assert_eq!(next["messages"][2]["tool_call_id"], upstream_id);
    }
    // An Anthropic upstream's call reaches an OpenAI client...
    let upstream_id = "toolu_01A09q90qw90lq917835lq9";
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": upstream_id, "name": "f", "input": {}}],
        "usage": {"input_tokens": 1, "output_tokens": 1}});
    let seen = json(&messages_response_to_chat(answer.to_string().as_bytes(), "m").unwrap());
    assert_eq!(
        seen["choices"][0]["message"]["tool_calls"][0]["id"],
        "call_01A09q90qw90lq917835lq9"
    );
    let mut conv = MessagesToChatStream::new("m", false);
    let mut out = Vec::new();
    let start = json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "tool_use", "id": upstream_id, "name": "f", "input": {}}});
    conv.on_event("content_block_start", &start.to_string(), &mut out);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("\"id\":\"call_01A09q90qw90lq917835lq9\"")
    );
    // ...whose next turn gives the upstream its own id back.
    let next = chat_request_to_messages(
        openai_turn("call_01A09q90qw90lq917835lq9")
            .to_string()
            .as_bytes(),
        "claude",
        &mut Default::default(),
    )
    .unwrap();
    let next = json(&next);
    assert_eq!(next["messages"][1]["content"][0]["id"], upstream_id);
    assert_eq!(
        next["messages"][2]["content"][0]["tool_use_id"],
        upstream_id
    );
}

const FIXTURES: [&str; 4] = [
    r#"{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"call_1","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","stop":["x"],"max_tokens":5}"#,
    r#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"text","text":"hi"}]},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"r"}]}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"},"stream":true}"#,
    r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":3}}"#,
    r#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"a","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#,
];

proptest! {
    /// Damaged input (bytes changed, cut short) gives an error or an answer, never a panic; and
    /// what the streams write stays well-formed.
    #[test]
    fn damaged_input_never_panics(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = FIXTURES[which].as_bytes().to_vec();
        for (i, byte) in edits {
            let i = i.index(b.len());
            b[i] = byte;
        }
        let b = &b[..cut.index(b.len() + 1)];
        let _ = chat_request_to_messages(b, "x", &mut Default::default());
        let _ = messages_request_to_chat(b, "x", &mut Default::default());
        let _ = messages_response_to_chat(b, "x");
        let _ = chat_response_to_messages(b, "x");
        let _ = error_from_openai(b);
        let _ = error_from_anthropic(b);
        if let Ok(s) = std::str::from_utf8(b) {
            let mut out = Vec::new();
            let mut a = MessagesToChatStream::new("m", true);
            for ev in ["", "message_start", "content_block_start", "content_block_delta", "message_delta", "error"] {
                a.on_event(ev, s, &mut out);
            }
            a.finish(&mut out);
            let mut o = ChatToMessagesStream::new("m");
            o.on_data(s, &mut out);
            o.finish(&mut out);
            prop_assert!(std::str::from_utf8(&out).is_ok());
        }
    }
}
