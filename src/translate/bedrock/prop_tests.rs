//! Property: a chat request translated to Bedrock Converse keeps its meaning, read back from
//! the output: the system text, the turns' roles and order (consecutive turns of one role
//! merged, tool results in user turns), every non-blank text (Bedrock refuses blank ones),
//! every tool use's id (in Bedrock's style), name and input, every result paired with its call's id, the tools and
//! their schemas, `tool_choice`, and the inference parameters. Nothing else is named as
//! dropped.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::Dropped;
use super::super::pivot::testing::{Part, req, str_of};
use super::super::tool_ids::BEDROCK;
use super::chat_request_to_bedrock;

/// The turns of a Converse request, in the property's terms.
fn turns(out: &Value) -> Vec<(&'static str, Vec<Part>)> {
    let mut turns = Vec::new();
    for m in out["messages"].as_array().into_iter().flatten() {
        let role = match m["role"].as_str() {
            Some("assistant") => "assistant",
            _ => "user",
        };
        let parts = m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                if let Some(t) = b["text"].as_str() {
                    Part::Text(t.to_owned())
                } else if let Some(u) = b.get("toolUse") {
                    Part::Call(
                        str_of(&u["toolUseId"]),
                        str_of(&u["name"]),
                        u["input"].clone(),
                    )
                } else {
                    let r = &b["toolResult"];
                    let text: String = r["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| str_of(&c["text"]))
                        .collect();
                    Part::Result(str_of(&r["toolUseId"]), String::new(), text)
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
        let out = chat_request_to_bedrock(
            body.as_bytes(),
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            &mut dropped,
        )
        .expect("translates");
        let out: Value = serde_json::from_slice(&out).expect("output is JSON");

        let system: Vec<String> = out["system"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| str_of(&b["text"]))
            .collect();
        let expected_system: Vec<String> =
            r.system.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
        prop_assert_eq!(system, expected_system);

        // Converse pairs results by id, in its own style (`call_X` is `tooluse_X`); it has no
        // function name in a result.
        let expected: Vec<(&'static str, Vec<Part>)> = r
            .turns(|t| !t.trim().is_empty())
            .into_iter()
            .map(|(role, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|p| match p {
                        Part::Call(id, name, args) => {
                            Part::Call(BEDROCK.to_native(&id).into_owned(), name, args)
                        }
                        Part::Result(id, _, text) => {
                            Part::Result(BEDROCK.to_native(&id).into_owned(), String::new(), text)
                        }
                        other => other,
                    })
                    .collect();
                (role, parts)
            })
            .collect();
        prop_assert_eq!(turns(&out), expected);

        let config = &out["inferenceConfig"];
        prop_assert_eq!(config["temperature"].as_f64(), r.temperature);
        prop_assert_eq!(config["topP"].as_f64(), r.top_p);
        prop_assert_eq!(config["maxTokens"].as_u64(), r.max());
        let got_stop: Vec<String> = config["stopSequences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        prop_assert_eq!(&got_stop, &r.stop);

        let specs = out["toolConfig"]["tools"].as_array().cloned().unwrap_or_default();
        let tools = r.tool_props();
        prop_assert_eq!(specs.len(), tools.len());
        for (s, (name, props)) in specs.iter().zip(&tools) {
            prop_assert_eq!(&str_of(&s["toolSpec"]["name"]), name);
            prop_assert_eq!(&s["toolSpec"]["inputSchema"]["json"]["properties"], props);
        }
        let choice = &out["toolConfig"]["toolChoice"];
        let expected_choice = match (tools.is_empty(), &r.tool_choice) {
            (true, _) | (false, None) => Value::Null,
            (false, Some(c)) if c == "auto" => json!({"auto": {}}),
            (false, Some(c)) if c == "none" => Value::Null,
            (false, Some(c)) if c == "required" => json!({"any": {}}),
            (false, Some(_)) => json!({"tool": {"name": "named_tool"}}),
        };
        prop_assert_eq!(choice, &expected_choice);

        let none = r.tool_choice.as_ref().is_some_and(|c| c == "none") && !tools.is_empty();
        let allowed: &[&str] = if none { &["tool_choice"] } else { &[] };
        prop_assert!(dropped.iter().all(|d| allowed.contains(&d)), "dropped {:?}", dropped);
    }
}
