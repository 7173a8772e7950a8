use serde_json::Value;

use super::*;
use crate::translate::{Dropped, responses_request_to_chat};

fn conv() -> ChatToResponsesStream {
    let ids = ResponseIds::with("resp_t".into(), 10);
    let req = responses_request_to_chat(
        br#"{"model":"m","input":"hi","stream":true}"#,
        &[],
        "m",
        &ids,
        &mut Dropped::default(),
    )
    .expect("translates");
    ChatToResponsesStream::new(req.head, ids).with_completed_at(11)
}

/// The `data:` payloads of the events written.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).expect("UTF-8");
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let data = b.split_once("\ndata: ").expect("event then data").1;
            serde_json::from_str(data).expect("data is JSON")
        })
        .collect()
}

fn delta(content: &str) -> String {
    serde_json::json!({"choices":[{"index":0,"delta":{"content":content}}]}).to_string()
}

#[test]
fn deltas_add_up_to_the_done_text_and_the_final_response() {
    let pieces = ["a\"b", "\\n", "é😀", "\u{1}", " end"];
    let mut s = conv();
    let mut out = Vec::new();
    for p in pieces {
        s.on_data(&delta(p), &mut out);
    }
    s.on_data(
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        &mut out,
    );
    s.on_data("[DONE]", &mut out);
    let ev = events(&out);
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
    let whole: String = pieces.concat();
    let deltas: String = ev
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().expect("delta").to_owned())
        .collect();
    assert_eq!(deltas, whole);
    let done = ev
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .expect("text done");
    assert_eq!(done["text"], whole.as_str());
    let last = ev.last().expect("events");
    assert_eq!(last["type"], "response.completed");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        whole.as_str()
    );
    let answer = s.take_answer().expect("answer");
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(body, last["response"]);
    assert!(s.take_answer().is_none(), "handed over once");
}

#[test]
fn nothing_is_written_after_the_end() {
    let mut s = conv();
    let mut out = Vec::new();
    s.start(&mut out);
    s.start(&mut out);
    assert_eq!(events(&out).len(), 2, "created and in_progress once");
    s.on_data("[DONE]", &mut out);
    let n = out.len();
    s.on_data(&delta("late"), &mut out);
    s.finish(&mut out);
    assert_eq!(out.len(), n);
}

#[test]
fn a_server_without_done_completes_on_finish_and_unreadable_chunks_are_skipped() {
    let mut s = conv();
    let mut out = Vec::new();
    s.on_data(&delta("x"), &mut out);
    s.on_data("{not json", &mut out);
    s.on_data(
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        &mut out,
    );
    s.finish(&mut out);
    let ev = events(&out);
    assert_eq!(ev.last().expect("events")["type"], "response.completed");
    assert_eq!(s.take_answer().expect("answer").status, "completed");
}

#[test]
fn a_tool_call_without_an_id_gets_one() {
    let mut s = conv();
    let mut out = Vec::new();
    s.on_data(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
            &mut out,
        );
    s.on_data("[DONE]", &mut out);
    let ev = events(&out);
    let done = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .expect("item done");
    assert!(
        done["item"]["call_id"]
            .as_str()
            .expect("call_id")
            .starts_with("call_")
    );
    assert_eq!(done["item"]["arguments"], "{}");
    assert_eq!(done["item"]["name"], "f");
}
