//! Tests of the stream-event walker: each format's deltas restored across event boundaries,
//! held text flushed before the closing event, whole texts in closing events restored, blocks
//! cutting the stream; and a property: any split of an answer gives the caller the same text.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;

use super::answer::{AnswerFormat, OutEvent, StreamGuard};
use super::{Action, Blocked, Entities, Entity, Guardrail, Plan, Report, Vault};

fn vault() -> Vault {
    let mut v = Vault::default();
    v.placeholder("EMAIL", "jane@example.com", true);
    v
}

/// Run events (name, data) through a guard; the events the caller gets (name, data).
fn run(
    format: AnswerFormat,
    plan: Option<&Plan>,
    events: &[(&str, String)],
) -> (Vec<(String, Value)>, Option<Blocked>) {
    let mut v = vault();
    let mut r = Report::default();
    let mut g = StreamGuard::new(format, plan.is_some());
    let mut sent = Vec::new();
    let mut blocked = None;
    for (name, data) in events {
        let mut out = Vec::new();
        let res = g.event(plan, &mut v, &mut r, data.as_bytes(), &mut out);
        for o in out {
            let (n, d) = match o {
                OutEvent::Original => (name.to_string(), data.as_bytes().to_vec()),
                OutEvent::Rewritten(d) => (name.to_string(), d),
                OutEvent::New { event, data } => (event.to_owned(), data),
            };
            sent.push((n, serde_json::from_slice::<Value>(&d).unwrap()));
        }
        if let Err(b) = res {
            blocked = Some(b);
            break;
        }
    }
    if blocked.is_none() {
        let mut out = Vec::new();
        g.finish(plan, &mut v, &mut r, &mut out).unwrap();
        for o in out {
            if let OutEvent::New { event, data } = o {
                sent.push((event.to_owned(), serde_json::from_slice(&data).unwrap()));
            }
        }
    }
    (sent, blocked)
}

fn openai_chunk(content: Option<&str>, finish: Option<&str>) -> (&'static str, String) {
    let delta = match content {
        Some(c) => serde_json::json!({ "content": c }),
        None => serde_json::json!({}),
    };
    let v = serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
    ("", v.to_string())
}

fn openai_text(sent: &[(String, Value)]) -> String {
    sent.iter()
        .filter_map(|(_, v)| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn openai_deltas_are_restored_across_chunks() {
    let events = [
        openai_chunk(Some("Hi [EMA"), None),
        openai_chunk(Some("IL_1]! Also [EMAIL_"), None),
        openai_chunk(None, Some("stop")),
    ];
    let (sent, _) = run(AnswerFormat::OpenAiChat, None, &events);
    assert_eq!(openai_text(&sent), "Hi jane@example.com! Also [EMAIL_");
    // The held `[EMAIL_` went out in a chunk of its own just before the finishing one.
    let last = &sent[sent.len() - 1].1;
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let flush = &sent[sent.len() - 2].1;
    assert_eq!(flush["id"], "c1");
    assert_eq!(flush["choices"][0]["delta"]["content"], "[EMAIL_");
    assert_eq!(flush["choices"][0]["finish_reason"], Value::Null);
}

#[test]
fn openai_tool_arguments_are_restored_as_json() {
    let mk = |args: &str| {
        let v = serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":args}}]},"finish_reason":null}]});
        ("", v.to_string())
    };
    let events = [
        mk("{\"to\":\"[EMAIL"),
        mk("_1]\"}"),
        openai_chunk(None, Some("tool_calls")),
    ];
    let (sent, _) = run(AnswerFormat::OpenAiChat, None, &events);
    let args: String = sent
        .iter()
        .filter_map(|(_, v)| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(args, "{\"to\":\"jane@example.com\"}");
}

#[test]
fn an_openai_block_cuts_the_chunk_and_ends_the_choice() {
    let plan = Plan::new(vec![Arc::new(Guardrail::pii(
        "cards",
        Entities::of(&[Entity::CreditCard]),
        Action::Block,
    ))]);
    let filler = "x".repeat(80);
    let events = [
        openai_chunk(Some("Your card is 4111 1111 "), None),
        openai_chunk(Some(&format!("1111 1111. {filler}")), None),
        openai_chunk(Some("more"), None),
    ];
    let (sent, blocked) = run(AnswerFormat::OpenAiChat, Some(&plan), &events);
    assert_eq!(blocked.map(|b| b.guardrail), Some("cards".into()));
    assert_eq!(openai_text(&sent), "Your card is ");
    assert_eq!(
        sent.last().unwrap().1["choices"][0]["finish_reason"],
        "content_filter"
    );
    assert!(!sent.iter().any(|(_, v)| v.to_string().contains("4111")));
}

#[test]
fn anthropic_blocks_are_restored_and_flushed_before_stop() {
    let ev = |t: &'static str, v: Value| (t, v.to_string());
    let events = [
        ev(
            "content_block_start",
            serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ev(
            "content_block_delta",
            serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Mail [EMAIL"}}),
        ),
        ev(
            "content_block_delta",
            serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"_1] or [EMA"}}),
        ),
        ev(
            "content_block_stop",
            serde_json::json!({"type":"content_block_stop","index":0}),
        ),
        ev(
            "content_block_delta",
            serde_json::json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"to\":\"[EMAIL_1]\"}"}}),
        ),
    ];
    let (sent, _) = run(AnswerFormat::Anthropic, None, &events);
    let text: String = sent
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Mail jane@example.com or [EMA");
    let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_delta"
        ]
    );
    assert_eq!(
        sent[5].1["delta"]["partial_json"],
        "{\"to\":\"jane@example.com\"}"
    );
}

#[test]
fn responses_deltas_and_whole_texts_are_restored() {
    let ev = |v: Value| (v["type"].as_str().unwrap_or("").to_owned(), v.to_string());
    let events = [
        ev(
            serde_json::json!({"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"sequence_number":3,"delta":"to [EMAIL_"}),
        ),
        ev(
            serde_json::json!({"type":"response.output_text.done","item_id":"msg_1","output_index":0,"content_index":0,"sequence_number":4,"text":"to [EMAIL_"}),
        ),
        ev(
            serde_json::json!({"type":"response.completed","sequence_number":5,"response":{"id":"r","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"to [EMAIL_1]"}]}]}}),
        ),
    ];
    let events: Vec<(&str, String)> = events
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    let (sent, _) = run(AnswerFormat::Responses, None, &events);
    let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.completed"
        ]
    );
    assert_eq!(sent[0].1["delta"], "to ");
    assert_eq!(sent[1].1["delta"], "[EMAIL_");
    assert_eq!(sent[1].1["item_id"], "msg_1");
    assert_eq!(
        sent[3].1["response"]["output"][0]["content"][0]["text"],
        "to jane@example.com"
    );
}

proptest! {
    #[test]
    fn any_split_of_an_openai_answer_gives_the_same_text(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "Hello ", "[EMAIL_1]", "[", "EMAIL_", "1]", " and ", "é", "[EMAIL_2]",
        ]), 0..16),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let answer: String = parts.concat();
        let whole = vault().restore(&answer, false).unwrap_or_else(|| answer.clone());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(answer.len() + 1)).filter(|&i| answer.is_char_boundary(i)).collect();
        points.sort_unstable();
        points.push(answer.len());
        let mut events = Vec::new();
        let mut last = 0;
        for p in points {
            events.push(openai_chunk(Some(&answer[last..p]), None));
            last = p;
        }
        events.push(openai_chunk(None, Some("stop")));
        let (sent, _) = run(AnswerFormat::OpenAiChat, None, &events);
        prop_assert_eq!(openai_text(&sent), whole);
    }
}
