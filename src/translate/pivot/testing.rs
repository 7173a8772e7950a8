//! Test helpers shared by the translations from the pivot: random chat requests (proptest) and
//! their meaning in a form each target's output can be compared with, the chunks of an output
//! stream, and the redaction of generated ids in snapshots.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::Dropped;

/// `insta::assert_json_snapshot!`, the snapshot file named after the test alone (not the
/// crate's module path).
macro_rules! snap_json {
    ($v:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_json_snapshot!($v);
        })
    };
}
pub(crate) use snap_json;

/// A snapshot of one translation: the input, the output (generated ids redacted) and, for a
/// request, what was dropped.
pub(crate) fn translated(from: &str, to: &[u8], dropped: Option<&Dropped>) -> Value {
    let mut to = serde_json::from_slice::<Value>(to).expect("output is JSON");
    redact(&mut to);
    let mut v = json!({
        "from": serde_json::from_str::<Value>(from).expect("input is JSON"),
        "to": to,
    });
    if let Some(d) = dropped {
        v["dropped"] = json!(d.iter().collect::<Vec<_>>());
    }
    v
}

/// A JSON string's value, or "".
pub(crate) fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Text with the characters that need escaping.
pub(crate) fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?\"\\\\\n\té😀]{1,24}"
}

/// Tool-call arguments: a JSON object.
pub(crate) fn args() -> impl Strategy<Value = Value> {
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

#[derive(Debug, Clone)]
pub(crate) enum Item {
    User(String),
    Assistant(String),
    /// An assistant message with tool calls (and maybe text), then one tool message per call
    /// (id, name, arguments, result).
    Tools(Option<String>, Vec<(String, String, Value, String)>),
}

fn item() -> impl Strategy<Value = Item> {
    let result = prop_oneof![text(), args().prop_map(|a| a.to_string())];
    prop_oneof![
        text().prop_map(Item::User),
        text().prop_map(Item::Assistant),
        (
            proptest::option::of(text()),
            proptest::collection::vec(
                ("call_[a-zA-Z0-9]{6,12}", "[a-z_]{1,12}", args(), result),
                1..3
            )
        )
            .prop_map(|(t, calls)| Item::Tools(t, calls)),
    ]
}

/// A tool: name, description, (property, type) pairs, `additionalProperties: false`.
pub(crate) type Tool = (String, Option<String>, Vec<(String, &'static str)>, bool);

#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) system: Vec<String>,
    pub(crate) items: Vec<Item>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) tool_choice: Option<Value>,
    pub(crate) stop: Vec<String>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) max_completion_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) string_content: bool,
}

pub(crate) fn req() -> impl Strategy<Value = Req> {
    let ty = prop_oneof![Just("string"), Just("integer"), Just("boolean")];
    let tools = proptest::collection::vec(
        (
            "[a-z_]{1,12}",
            proptest::option::of(text()),
            proptest::collection::vec(("[a-z]{1,8}", ty), 0..3),
            any::<bool>(),
        ),
        0..3,
    );
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
        choice,
        proptest::collection::vec("[a-zA-Z#]{1,6}", 0..4),
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
            |(system, items, tools, tool_choice, stop, (mt, mct), (t, p), sc)| Req {
                system,
                items,
                tools,
                tool_choice,
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

impl Req {
    /// The OpenAI chat request.
    pub(crate) fn to_openai(&self) -> Value {
        let mut messages = Vec::new();
        for s in &self.system {
            messages.push(json!({"role": "system", "content": content(s, self.string_content)}));
        }
        for it in &self.items {
            match it {
                Item::User(t) => messages
                    .push(json!({"role": "user", "content": content(t, self.string_content)})),
                Item::Assistant(t) => messages
                    .push(json!({"role": "assistant", "content": content(t, self.string_content)})),
                Item::Tools(t, calls) => {
                    let tool_calls: Vec<Value> = calls
                        .iter()
                        .map(|(id, name, args, _)| {
                            json!({"id": id, "type": "function",
                                   "function": {"name": name, "arguments": args.to_string()}})
                        })
                        .collect();
                    messages.push(json!({
                        "role": "assistant",
                        "content": t.as_deref().map_or(Value::Null, |t| content(t, self.string_content)),
                        "tool_calls": tool_calls,
                    }));
                    for (id, _, _, result) in calls {
                        messages
                            .push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                    }
                }
            }
        }
        let mut v = json!({"model": "client-model", "messages": messages});
        let tools = self.tool_values();
        if !tools.is_empty() {
            v["tools"] = json!(tools);
            if let Some(c) = &self.tool_choice {
                v["tool_choice"] = c.clone();
            }
        }
        if !self.stop.is_empty() {
            v["stop"] = json!(self.stop);
        }
        let mut set = |k: &str, x: Option<Value>| {
            if let Some(x) = x {
                v[k] = x;
            }
        };
        set("max_tokens", self.max_tokens.map(Value::from));
        set(
            "max_completion_tokens",
            self.max_completion_tokens.map(Value::from),
        );
        set("temperature", self.temperature.map(Value::from));
        set("top_p", self.top_p.map(Value::from));
        v
    }

    fn tool_values(&self) -> Vec<Value> {
        let mut tools: Vec<Value> = self
            .tools
            .iter()
            .map(|(n, d, props, closed)| {
                let mut f = json!({"name": n, "parameters": self::schema(props, *closed)});
                if let Some(d) = d {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        if !tools.is_empty() {
            tools.push(
                json!({"type": "function", "function": {"name": "named_tool",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}),
            );
        }
        tools
    }

    /// (name, properties) of every tool sent.
    pub(crate) fn tool_props(&self) -> Vec<(String, Value)> {
        self.tool_values()
            .iter()
            .map(|t| {
                let f = &t["function"];
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    f["parameters"]["properties"].clone(),
                )
            })
            .collect()
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub(crate) fn max(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The conversation as (role, parts) turns: `user` / `assistant` roles, tool results in
    /// user turns, parts kept by `keep`, empty turns left out, consecutive turns of one role
    /// merged.
    pub(crate) fn turns(&self, keep: impl Fn(&str) -> bool) -> Vec<(&'static str, Vec<Part>)> {
        let mut turns: Vec<(&'static str, Vec<Part>)> = Vec::new();
        let mut push = |role: &'static str, parts: Vec<Part>| {
            if parts.is_empty() {
                return;
            }
            match turns.last_mut() {
                Some((r, p)) if *r == role => p.extend(parts),
                _ => turns.push((role, parts)),
            }
        };
        for it in &self.items {
            match it {
                Item::User(t) => push(
                    "user",
                    keep(t).then(|| Part::Text(t.clone())).into_iter().collect(),
                ),
                Item::Assistant(t) => push(
                    "assistant",
                    keep(t).then(|| Part::Text(t.clone())).into_iter().collect(),
                ),
                Item::Tools(t, calls) => {
                    let mut parts: Vec<Part> = t
                        .iter()
                        .filter(|t| keep(t))
                        .map(|t| Part::Text(t.clone()))
                        .collect();
                    for (id, name, args, _) in calls {
                        parts.push(Part::Call(id.clone(), name.clone(), args.clone()));
                    }
                    push("assistant", parts);
                    for (id, name, _, result) in calls {
                        push(
                            "user",
                            vec![Part::Result(id.clone(), name.clone(), result.clone())],
                        );
                    }
                }
            }
        }
        turns
    }
}

fn schema(props: &[(String, &'static str)], closed: bool) -> Value {
    let mut s = json!({"type": "object", "properties": props
        .iter()
        .map(|(n, t)| (n.clone(), json!({"type": t})))
        .collect::<serde_json::Map<String, Value>>()});
    if closed {
        s["additionalProperties"] = json!(false);
    }
    s
}

/// A part of a turn, in terms both sides can be compared in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    /// (call id, function name, arguments)
    Call(String, String, Value),
    /// (call id, function name, result text)
    Result(String, String, String),
}

/// The `data:` payloads of an OpenAI SSE output, parsed (`[DONE]` as the string "[DONE]").
pub(crate) fn sse_data(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::from(d)))
        .collect()
}

/// Generated ids replaced by stable stand-ins: `call_<32 hex>` -> `call_[random]` (a
/// thought signature after it is kept) and `chatcmpl-<32 hex>` -> `chatcmpl-[random]`.
pub(crate) fn redact(v: &mut Value) {
    match v {
        Value::String(s) => {
            for prefix in ["call_", "chatcmpl-"] {
                if let Some(rest) = s.strip_prefix(prefix)
                    && rest.len() >= 32
                    && rest.is_char_boundary(32)
                    && rest[..32].bytes().all(|b| b.is_ascii_hexdigit())
                {
                    *s = format!("{prefix}[random]{}", &rest[32..]);
                    return;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::Object(o) => o.values_mut().for_each(redact),
        _ => {}
    }
}
