//! Properties: a Responses request keeps its meaning in the chat request it becomes (the system
//! text first, then every turn in order with its role and text, every function call with its id,
//! name and arguments inside the assistant turn that made it, every output paired with its call,
//! the tools, tool_choice, the sampling parameters, the output format and the reasoning effort);
//! and a conversation continued from stored items (`history`) becomes the very same chat request
//! as the whole conversation sent at once.

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::*;
use crate::translate::Dropped;

#[derive(Debug, Clone)]
enum Item {
    /// A user message: its texts, sent as a string (one text) or as input_text parts.
    User(Vec<String>, bool),
    Assistant(String),
    Developer(String),
    /// Function calls (id, name, arguments, output); their outputs follow them.
    Calls(Vec<(String, String, Value, String)>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?\"\\\\\n\té😀/]{0,20}"
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
        (proptest::collection::vec(text(), 1..3), any::<bool>())
            .prop_map(|(t, parts)| Item::User(t, parts)),
        text().prop_map(Item::Assistant),
        text().prop_map(Item::Developer),
        proptest::collection::vec(
            ("call_[a-zA-Z0-9]{6,12}", "[a-z_]{1,12}", args(), text()),
            1..3
        )
        .prop_map(Item::Calls),
    ]
}

#[derive(Debug, Clone)]
struct Req {
    instructions: Option<String>,
    items: Vec<Item>,
    tools: Vec<(String, Option<String>, Value)>,
    tool_choice: Option<Value>,
    parallel: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u64>,
    format: Option<Value>,
    effort: Option<&'static str>,
    /// How many leading items come from a stored earlier turn in the history property.
    split: usize,
}

fn req() -> impl Strategy<Value = Req> {
    let tools =
        proptest::collection::vec(("[a-z_]{1,12}", proptest::option::of(text()), args()), 0..3)
            .prop_map(|v| {
                v.into_iter()
                    .map(|(n, d, props)| (n, d, json!({"type": "object", "properties": props})))
                    .collect::<Vec<_>>()
            });
    let choice = proptest::option::of(prop_oneof![
        Just(json!("auto")),
        Just(json!("none")),
        Just(json!("required")),
        "[a-z_]{1,12}".prop_map(|n| json!({"type": "function", "name": n})),
    ]);
    let format = proptest::option::of(prop_oneof![
        Just(json!({"type": "text"})),
        Just(json!({"type": "json_object"})),
        ("[a-z_]{1,10}", args(), proptest::option::of(any::<bool>())).prop_map(|(n, s, strict)| {
            let mut f = json!({"type": "json_schema", "name": n, "schema": {"type": "object", "properties": s}});
            if let Some(strict) = strict {
                f["strict"] = json!(strict);
            }
            f
        }),
    ]);
    (
        (
            proptest::option::of(text()),
            proptest::collection::vec(item(), 1..8),
            tools,
            choice,
            proptest::option::of(any::<bool>()),
        ),
        (
            proptest::option::of(0.0f64..2.0),
            proptest::option::of(0.0f64..1.0),
            proptest::option::of(1u64..100_000),
            format,
            proptest::option::of(prop_oneof![Just("low"), Just("medium"), Just("high")]),
            any::<prop::sample::Index>(),
        ),
    )
        .prop_map(
            |(
                (instructions, items, tools, tool_choice, parallel),
                (temperature, top_p, max_output_tokens, format, effort, split),
            )| {
                let split = split.index(items.len() + 1);
                Req {
                    instructions,
                    items,
                    tools,
                    tool_choice,
                    parallel,
                    temperature,
                    top_p,
                    max_output_tokens,
                    format,
                    effort,
                    split,
                }
            },
        )
}

fn input_items(items: &[Item]) -> Vec<Value> {
    let mut out = Vec::new();
    for it in items {
        match it {
            Item::User(texts, false) if texts.len() == 1 => {
                out.push(json!({"role": "user", "content": texts[0]}))
            }
            Item::User(texts, _) => out.push(json!({"type": "message", "role": "user",
                "content": texts.iter().map(|t| json!({"type": "input_text", "text": t})).collect::<Vec<_>>()})),
            Item::Assistant(t) => out.push(json!({"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": t, "annotations": []}]})),
            Item::Developer(t) => out.push(json!({"role": "developer", "content": t})),
            Item::Calls(calls) => {
                for (id, name, a, _) in calls {
                    out.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": a.to_string()}));
                }
                for (id, _, _, output) in calls {
                    out.push(json!({"type": "function_call_output", "call_id": id, "output": output}));
                }
            }
        }
    }
    out
}

fn body(r: &Req, items: &[Item], instructions: bool) -> Value {
    let mut b = json!({"model": "client-model", "input": input_items(items)});
    if let (true, Some(i)) = (instructions, &r.instructions) {
        b["instructions"] = json!(i);
    }
    if !r.tools.is_empty() {
        b["tools"] = Value::Array(
            r.tools
                .iter()
                .map(|(n, d, p)| {
                    let mut t = json!({"type": "function", "name": n, "parameters": p});
                    if let Some(d) = d {
                        t["description"] = json!(d);
                    }
                    t
                })
                .collect(),
        );
    }
    for (k, v) in [
        ("tool_choice", r.tool_choice.clone()),
        ("parallel_tool_calls", r.parallel.map(Value::from)),
        ("temperature", r.temperature.map(Value::from)),
        ("top_p", r.top_p.map(Value::from)),
        ("max_output_tokens", r.max_output_tokens.map(Value::from)),
        ("text", r.format.clone().map(|f| json!({"format": f}))),
        ("reasoning", r.effort.map(|e| json!({"effort": e}))),
    ] {
        if let Some(v) = v {
            b[k] = v;
        }
    }
    b
}

fn translate(body: &Value, history: &[&RawValue]) -> (ResponsesRequest, Dropped) {
    let mut dropped = Dropped::default();
    let r = responses_request_to_chat(
        body.to_string().as_bytes(),
        history,
        "upstream-model",
        &ResponseIds::with("resp_prop".into(), 1),
        &mut dropped,
    )
    .expect("translates");
    (r, dropped)
}

/// A chat message's texts (a string is one text; text parts are one each).
fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                assert_eq!(p["type"], "text");
                p["text"].as_str().expect("text").to_owned()
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("unexpected content {other}"),
    }
}

/// The chat messages the items mean: (role, texts, tool calls (id, name, arguments), tool_call_id).
type Expected = (
    String,
    Vec<String>,
    Vec<(String, String, String)>,
    Option<String>,
);

fn expected(r: &Req) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
    if let Some(i) = &r.instructions {
        out.push(("system".into(), vec![i.clone()], Vec::new(), None));
    }
    for it in &r.items {
        match it {
            Item::User(t, _) => out.push(("user".into(), t.clone(), Vec::new(), None)),
            Item::Assistant(t) => out.push(("assistant".into(), vec![t.clone()], Vec::new(), None)),
            Item::Developer(t) => out.push(("developer".into(), vec![t.clone()], Vec::new(), None)),
            Item::Calls(calls) => {
                let made: Vec<_> = calls
                    .iter()
                    .map(|(id, n, a, _)| (id.clone(), n.clone(), a.to_string()))
                    .collect();
                // Calls belong to the assistant turn they follow (text, then its calls).
                match out.last_mut() {
                    Some((role, _, tc, None)) if role == "assistant" => tc.extend(made),
                    _ => out.push(("assistant".into(), Vec::new(), made, None)),
                }
                for (id, _, _, output) in calls {
                    out.push((
                        "tool".into(),
                        vec![output.clone()],
                        Vec::new(),
                        Some(id.clone()),
                    ));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_keeps_its_meaning_in_chat(r in req()) {
        let b = body(&r, &r.items, true);
        let (t, dropped) = translate(&b, &[]);
        // The request as the gateway reads it (numbers parsed from its text).
        let sent: Value = serde_json::from_str(&b.to_string()).expect("JSON");
        // Only a tool_choice that asked for a call, with no tools to call, is lost.
        let lost_choice = r.tools.is_empty()
            && r.tool_choice.as_ref().is_some_and(|c| c != "auto" && c != "none");
        prop_assert_eq!(dropped.join(","), if lost_choice { "tool_choice" } else { "" });
        let chat: Value = serde_json::from_slice(&t.chat).expect("chat is JSON");
        prop_assert_eq!(&chat["model"], "upstream-model");
        prop_assert_eq!(&t.head.model, "client-model");

        let msgs = chat["messages"].as_array().expect("messages");
        let got: Vec<Expected> = msgs
            .iter()
            .map(|m| {
                let calls = m["tool_calls"].as_array().map(|c| {
                    c.iter()
                        .map(|c| {
                            assert_eq!(c["type"], "function");
                            (
                                c["id"].as_str().expect("id").to_owned(),
                                c["function"]["name"].as_str().expect("name").to_owned(),
                                c["function"]["arguments"].as_str().expect("arguments").to_owned(),
                            )
                        })
                        .collect()
                });
                (
                    m["role"].as_str().expect("role").to_owned(),
                    texts(&m["content"]),
                    calls.unwrap_or_default(),
                    m["tool_call_id"].as_str().map(str::to_owned),
                )
            })
            .collect();
        prop_assert_eq!(got, expected(&r));

        // Tools, flat -> nested, and what steers them.
        let tools = chat["tools"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(tools.len(), r.tools.len());
        for (t, (name, desc, params)) in tools.iter().zip(&r.tools) {
            prop_assert_eq!(&t["type"], "function");
            prop_assert_eq!(&t["function"]["name"], name);
            prop_assert_eq!(t["function"]["description"].as_str(), desc.as_deref());
            prop_assert_eq!(&t["function"]["parameters"], params);
        }
        let has_tools = !r.tools.is_empty();
        let want_choice = match (&r.tool_choice, has_tools) {
            (Some(Value::Object(o)), true) => json!({"type": "function", "function": {"name": o["name"]}}),
            (Some(c), true) => c.clone(),
            _ => Value::Null,
        };
        prop_assert_eq!(&chat["tool_choice"], &want_choice);
        prop_assert_eq!(chat["parallel_tool_calls"].as_bool(), r.parallel.filter(|_| has_tools));

        prop_assert_eq!(&chat["temperature"], &sent["temperature"]);
        prop_assert_eq!(&chat["top_p"], &sent["top_p"]);
        prop_assert_eq!(chat["temperature"].is_null(), r.temperature.is_none());
        prop_assert_eq!(chat["max_completion_tokens"].as_u64(), r.max_output_tokens);
        prop_assert_eq!(chat["reasoning_effort"].as_str(), r.effort);
        let want_format = match &r.format {
            Some(f) if f["type"] == "json_schema" => {
                let mut s = json!({"name": f["name"], "schema": f["schema"]});
                if let Some(strict) = f.get("strict") {
                    s["strict"] = strict.clone();
                }
                json!({"type": "json_schema", "json_schema": s})
            }
            Some(f) if f["type"] == "json_object" => f.clone(),
            _ => Value::Null,
        };
        prop_assert_eq!(&chat["response_format"], &want_format);
        prop_assert!(chat.get("stream").is_none());
    }

    #[test]
    fn a_conversation_continued_from_stored_items_is_the_same_chat(r in req()) {
        let (whole, _) = translate(&body(&r, &r.items, true), &[]);
        let first = (r.split > 0).then(|| translate(&body(&r, &r.items[..r.split], false), &[]).0);
        let stored: Vec<&RawValue> = match &first {
            Some(f) => serde_json::from_slice(&f.input_items).expect("stored items"),
            None => Vec::new(),
        };
        let (second, _) = translate(&body(&r, &r.items[r.split..], true), &stored);
        prop_assert_eq!(String::from_utf8_lossy(&second.chat), String::from_utf8_lossy(&whole.chat));
    }
}
