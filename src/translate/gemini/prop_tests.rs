//! Property: a chat request translated to Gemini keeps its meaning, read back from the output:
//! the system text, the turns' roles and order (consecutive turns of one role merged, tool
//! results in user turns), every text, every function call's name and arguments, every result
//! paired with its call's function, the tools and their properties, `tool_choice`, and the
//! sampling parameters. Nothing else is named as dropped.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::Dropped;
use super::super::pivot::testing::{Part, req, str_of};
use super::chat_request_to_gemini;

/// The turns of a Gemini request, in the property's terms (`model` read as `assistant`).
fn turns(out: &Value) -> Vec<(&'static str, Vec<Part>)> {
    let mut turns = Vec::new();
    for c in out["contents"].as_array().into_iter().flatten() {
        let role = match c["role"].as_str() {
            Some("model") => "assistant",
            _ => "user",
        };
        let parts = c["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                if let Some(t) = p["text"].as_str() {
                    Part::Text(t.to_owned())
                } else if let Some(f) = p.get("functionCall") {
                    Part::Call(String::new(), str_of(&f["name"]), f["args"].clone())
                } else {
                    let r = &p["functionResponse"];
                    let text = match &r["response"] {
                        Value::Object(o)
                            if o.len() == 1 && o.get("result").is_some_and(Value::is_string) =>
                        {
                            str_of(&r["response"]["result"])
                        }
                        other => other.to_string(),
                    };
                    Part::Result(String::new(), str_of(&r["name"]), text)
                }
            })
            .collect();
        turns.push((role, parts));
    }
    turns
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_keeps_its_meaning(r in req()) {
        let body = r.to_openai().to_string();
        let mut dropped = Dropped::default();
        let out = chat_request_to_gemini(body.as_bytes(), "gemini-2.5-flash", &mut dropped)
            .expect("translates");
        let out: Value = serde_json::from_slice(&out).expect("output is JSON");

        let system: Vec<String> = out["systemInstruction"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| str_of(&p["text"]))
            .collect();
        prop_assert_eq!(&system, &r.system);

        // Gemini names no call ids; results are paired by function name.
        let expected: Vec<(&'static str, Vec<Part>)> = r
            .turns(|t| !t.is_empty())
            .into_iter()
            .map(|(role, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|p| match p {
                        Part::Call(_, name, args) => Part::Call(String::new(), name, args),
                        Part::Result(_, name, text) => {
                            // An object result that is itself `{"result": "..."}` reads back as
                            // its text.
                            let inner = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                                let o = v.as_object()?;
                                (o.len() == 1).then(|| o.get("result")?.as_str().map(str::to_owned))?
                            });
                            Part::Result(String::new(), name, inner.unwrap_or(text))
                        }
                        text => text,
                    })
                    .collect();
                (role, parts)
            })
            .collect();
        prop_assert_eq!(turns(&out), expected);

        let config = &out["generationConfig"];
        prop_assert_eq!(config["temperature"].as_f64(), r.temperature);
        prop_assert_eq!(config["topP"].as_f64(), r.top_p);
        prop_assert_eq!(config["maxOutputTokens"].as_u64(), r.max());
        let stop: Vec<String> = r.stop.iter().take(5).cloned().collect();
        let got_stop: Vec<String> = config["stopSequences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        prop_assert_eq!(got_stop, stop);

        let decls = out["tools"][0]["functionDeclarations"].as_array().cloned().unwrap_or_default();
        let tools = r.tool_props();
        prop_assert_eq!(decls.len(), tools.len());
        for (d, (name, props)) in decls.iter().zip(&tools) {
            prop_assert_eq!(&str_of(&d["name"]), name);
            let empty = props.as_object().is_none_or(|p| p.is_empty());
            if empty {
                prop_assert!(d.get("parameters").is_none());
            } else {
                prop_assert_eq!(&d["parameters"], &json!({"type": "object", "properties": props}));
            }
        }
        let mode = &out["toolConfig"]["functionCallingConfig"];
        let expected_mode = match (tools.is_empty(), &r.tool_choice) {
            (true, _) | (false, None) => Value::Null,
            (false, Some(c)) if c == "auto" => json!({"mode": "AUTO"}),
            (false, Some(c)) if c == "none" => json!({"mode": "NONE"}),
            (false, Some(c)) if c == "required" => json!({"mode": "ANY"}),
            (false, Some(_)) => json!({"mode": "ANY", "allowedFunctionNames": ["named_tool"]}),
        };
        prop_assert_eq!(mode, &expected_mode);

        let mut allowed = vec!["schema.additionalProperties"];
        if r.stop.len() > 5 {
            allowed.push("stop");
        }
        prop_assert!(dropped.iter().all(|d| allowed.contains(&d)), "dropped {:?}", dropped);
    }
}
