use serde_json::{Value, json};

use super::*;

fn run(req: Value) -> (Value, String) {
    let mut d = Dropped::default();
    let out = chat_request_to_gemini(req.to_string().as_bytes(), "gemini-2.5-flash", &mut d)
        .expect("translates");
    (serde_json::from_slice(&out).expect("json"), d.join(","))
}

#[test]
fn mime_types_from_urls() {
    assert_eq!(
        mime_from_url("https://x.test/a/cat.PNG?size=2"),
        "image/png"
    );
    assert_eq!(mime_from_url("https://x.test/a.b/cat"), "image/jpeg");
    assert_eq!(
        mime_from_url("https://x.test/doc.pdf#page=2"),
        "application/pdf"
    );
    assert_eq!(mime_from_url("https://x.test/x.webp"), "image/webp");
}

#[test]
fn tool_results_are_objects() {
    let (out, _) = run(json!({"messages": [
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": "[1]"}}]},
        {"role": "tool", "tool_call_id": "a", "content": " {\"t\": 14} "},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "sunny"}]}
    ]}));
    assert_eq!(
        out["contents"][1]["parts"],
        json!([
            {"functionResponse": {"name": "f", "response": {"t": 14}}},
            {"functionResponse": {"name": "g", "response": {"result": "sunny"}}}
        ])
    );
    assert_eq!(
        out["contents"][0]["parts"][1]["functionCall"]["args"],
        json!({})
    );
}

#[test]
fn unanswerable_tool_messages_are_client_errors() {
    let mut d = Dropped::default();
    for req in [
        json!({"messages": [{"role": "tool", "content": "x"}]}),
        json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
    ] {
        let e = chat_request_to_gemini(req.to_string().as_bytes(), "m", &mut d);
        assert!(matches!(e, Err(TranslateError::Invalid(_))), "{req}");
    }
}

#[test]
fn thinking_budgets() {
    let budget = |effort: &str, model: &str| {
        let req = json!({"messages": [], "reasoning_effort": effort});
        let mut d = Dropped::default();
        let out =
            chat_request_to_gemini(req.to_string().as_bytes(), model, &mut d).expect("translates");
        let v: Value = serde_json::from_slice(&out).expect("json");
        (v["generationConfig"]["thinkingConfig"].clone(), d.join(","))
    };
    assert_eq!(
        budget("high", "gemini-2.5-flash").0,
        json!({"thinkingBudget": 24576, "includeThoughts": true})
    );
    assert_eq!(
        budget("none", "gemini-2.5-flash").0,
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        budget("minimal", "gemini-2.5-pro").0,
        json!({"thinkingBudget": 128})
    );
    assert_eq!(
        budget("extreme", "gemini-2.5-pro"),
        (Value::Null, "reasoning_effort".into())
    );
}
