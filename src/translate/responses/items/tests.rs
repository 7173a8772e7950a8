use serde_json::Value;

use crate::translate::{Dropped, ResponseIds, responses_request_to_chat};

fn run(body: &str) -> (Value, Value, Dropped) {
    let mut dropped = Dropped::default();
    let r = responses_request_to_chat(
        body.as_bytes(),
        &[],
        "m",
        &ResponseIds::with("resp_x".into(), 1),
        &mut dropped,
    )
    .expect("translates");
    (
        serde_json::from_slice(&r.chat).expect("JSON"),
        serde_json::from_slice(&r.input_items).expect("JSON"),
        dropped,
    )
}

#[test]
fn store_false_keeps_no_items() {
    let (_, items, _) = run(r#"{"input":"hi","store":false}"#);
    assert_eq!(items, serde_json::json!([]));
}

#[test]
fn function_calls_join_the_assistant_turn_they_follow() {
    let (chat, _, _) = run(r#"{"input":[
            {"role":"user","content":"q"},
            {"role":"assistant","content":"a"},
            {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c1","output":"r1"},
            {"type":"function_call","call_id":"c2","name":"g"},
            {"type":"function_call_output","call_id":"c2","output":[{"type":"input_image","image_url":"https://x/y.png"}]}]}"#);
    let m = chat["messages"].as_array().expect("messages");
    let roles: Vec<&str> = m
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool"]);
    assert_eq!(m[1]["content"], "a");
    assert_eq!(m[1]["tool_calls"][0]["id"], "c1");
    assert_eq!(m[3]["content"], Value::Null);
    assert_eq!(m[3]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(m[4]["content"], "", "a tool message keeps a content");
}

#[test]
fn items_the_pivot_cannot_carry_are_named_and_stored_with_an_id() {
    let (chat, items, dropped) = run(
        r#"{"input":[{"type":"web_search_call","status":"completed"},{"type":"reasoning","id":"rs_1","summary":[]},{"type":"compaction"},{"role":"user","content":"q"}]}"#,
    );
    assert_eq!(chat["messages"].as_array().expect("messages").len(), 1);
    assert_eq!(
        dropped.join(","),
        "input.web_search_call,input.reasoning,input.compaction"
    );
    assert_eq!(items[0]["id"], "item_x_in0");
    assert_eq!(items[0]["status"], "completed");
    assert_eq!(items[1]["id"], "rs_1");
    assert_eq!(
        items[2],
        serde_json::json!({"id":"item_x_in2","type":"compaction"})
    );
    assert_eq!(items[3]["id"], "msg_x_in3");
}
