use serde_json::{Value, json};

use super::*;

fn run(req: Value, model: &str) -> (Value, String) {
    let mut d = Dropped::default();
    let out =
        chat_request_to_bedrock(req.to_string().as_bytes(), model, &mut d).expect("translates");
    (serde_json::from_slice(&out).expect("json"), d.join(","))
}

#[test]
fn tool_ids_fit_bedrock() {
    assert_eq!(tool_id("call_abc-1"), "tooluse_abc-1");
    assert_eq!(tool_id("tooluse_abc"), "tooluse_abc");
    assert_eq!(tool_id("call.0:x"), "tooluse_-call-2E0-3Ax");
    let long = format!("call_{}_ts_{}", "a".repeat(32), "b".repeat(80));
    let short = tool_id(&long);
    assert_eq!(short.len(), 40);
    assert!(short.starts_with("tooluse_"));
    assert_eq!(short, tool_id(&long));
    assert_ne!(short, tool_id(&format!("{long}c")));
}

#[test]
fn document_names() {
    assert_eq!(
        document_name(Some("Q3 report (final).pdf"), 1),
        "Q3 report (final)"
    );
    assert_eq!(document_name(Some("a__b   c.v2.pdf"), 1), "a--b c-v2");
    assert_eq!(document_name(Some("..."), 2), "--");
    assert_eq!(document_name(Some(""), 2), "document-2");
    assert_eq!(document_name(None, 3), "document-3");
}

#[test]
fn claude_thinking() {
    let req = json!({"messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "medium", "temperature": 0.2, "top_p": 0.5,
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"});
    let (out, d) = run(req.clone(), "us.anthropic.claude-sonnet-4-20250514-v1:0");
    assert_eq!(
        out["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 8192}})
    );
    assert_eq!(out["inferenceConfig"], json!({"maxTokens": 8192 + 4096}));
    assert_eq!(out["toolConfig"].get("toolChoice"), None);
    assert_eq!(d, "temperature,top_p,tool_choice");
    // A max_tokens below the budget lowers it; below 1024 there is no thinking.
    let mut small = req.clone();
    small["max_tokens"] = json!(4000);
    let (out, _) = run(small, "anthropic.claude-3-7-sonnet-20250219-v1:0");
    assert_eq!(
        out["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        3999
    );
    let mut tiny = req.clone();
    tiny["max_tokens"] = json!(500);
    let (out, d) = run(tiny, "anthropic.claude-3-7-sonnet-20250219-v1:0");
    assert_eq!(out.get("additionalModelRequestFields"), None);
    assert!(d.contains("reasoning_effort"), "{d}");
    // Other models: named as dropped; `none` for Claude sends nothing.
    let (out, d) = run(req.clone(), "amazon.nova-pro-v1:0");
    assert_eq!(out.get("additionalModelRequestFields"), None);
    assert_eq!(d, "reasoning_effort");
    let mut none = req;
    none["reasoning_effort"] = json!("none");
    let (out, d) = run(none, "anthropic.claude-sonnet-4-5");
    assert_eq!(out.get("additionalModelRequestFields"), None);
    assert_eq!(d, "");
}

#[test]
fn client_errors() {
    let mut d = Dropped::default();
    for req in [
        json!({"messages": [{"role": "tool", "content": "x"}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        json!({"model": "x"}),
    ] {
        let e = chat_request_to_bedrock(req.to_string().as_bytes(), "m", &mut d);
        assert!(matches!(e, Err(TranslateError::Invalid(_))), "{req}");
    }
}
