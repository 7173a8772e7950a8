//! Guardrails on the request path, against a fake upstream that records what it received
//! (`support::ai::FakeAi`): PII masked upstream and restored for the caller (also split across
//! stream chunks), blocks that never reach the upstream, output checks, moderation through
//! the gateway's own routing, which guardrails apply, the header, the metric, the cache, jobs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::jobs::wait_job;
use crate::support::ai::{FakeAi, last_user_text};
use crate::support::{
    GPT_KEY, GW_KEY, Gateway, chat_body, header, json_of, keys, messages_body, metric_sum,
    sse_data, sse_events,
};

const EMAIL: &str = "jane.doe@example.com";
const PHONE: &str = "+44 20 7946 0958";
const CARD: &str = "4111 1111 1111 1111";

fn cfg(ai: &FakeAi) -> Value {
    let model = |name: &str, extra: Value| {
        let mut m =
            json!({"name": name, "deployments": [{"provider": "fake", "model": "up-model"}]});
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        m
    };
    let mut auth = keys();
    // The gpt-only key also gets the `cards` guardrail.
    auth["keys"][1]["guardrails"] = json!(["cards"]);
    json!({
        "providers": [ai.provider("fake")],
        "models": [
            model("gpt-pii", json!({})),
            model("gpt-strict", json!({"guardrails": ["no-falcon", "modr"]})),
            model("gpt-lenient", json!({"guardrails": ["modr-allow"]})),
            model("gpt-out", json!({"guardrails": ["cards"]})),
            model("omni", json!({})),
        ],
        "auth": auth,
        "cache": {"enabled": false},
        "resilience": {"retries": 0},
        "jobs": {"workers": 2},
        "guardrails": [
            {"name": "pii", "type": "pii", "entities": ["email", "phone"], "action": "mask",
             "models": ["gpt-*"]},
            {"name": "no-falcon", "type": "regex", "patterns": ["(?i)project\\s+falcon"],
             "action": "block", "apply_to": ["input"], "models": []},
            {"name": "cards", "type": "pii", "entities": ["credit_card"], "action": "block",
             "apply_to": ["output"], "models": []},
            {"name": "modr", "type": "moderation", "model": "omni", "models": []},
            {"name": "modr-allow", "type": "moderation", "model": "omni", "on_error": "allow",
             "models": []},
        ],
    })
}

async fn post(gw: &Gateway, key: &str, path: &str, body: &Value) -> reqwest::Response {
    gw.post(path, Some(key), body).await
}

async fn chat(gw: &Gateway, key: &str, model: &str, text: &str) -> reqwest::Response {
    post(gw, key, "/v1/chat/completions", &chat_body(model, text)).await
}

async fn messages(gw: &Gateway, key: &str, model: &str, text: &str) -> reqwest::Response {
    post(gw, key, "/v1/messages", &messages_body(model, text)).await
}

/// The last user message the upstream received on its chat endpoint, for each request.
fn upstream_texts(ai: &FakeAi) -> Vec<String> {
    ai.bodies("/chat/completions")
        .iter()
        .map(last_user_text)
        .collect()
}

#[tokio::test]
async fn pii_is_masked_upstream_and_restored_for_the_caller() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(cfg(&ai)).await;
    let text = format!("Mail me at {EMAIL} or call {PHONE}; again: {EMAIL}.");

    // OpenAI format, whole answer.
    let r = chat(&gw, GW_KEY, "gpt-pii", &text).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-guardrails"), Some("pii=masked"));
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], text.as_str());
    let sent = upstream_texts(&ai);
    assert_eq!(
        sent,
        ["Mail me at [EMAIL_1] or call [PHONE_1]; again: [EMAIL_1]."]
    );

    // OpenAI format, streamed in three-character pieces: placeholders split across chunks.
    let mut body = chat_body("gpt-pii", &text);
    body["stream"] = json!(true);
    let r = post(&gw, GW_KEY, "/v1/chat/completions", &body).await;
    assert_eq!(header(&r, "x-gateway-guardrails"), Some("pii=masked"));
    let datas = sse_data(&r.text().await.unwrap());
    assert_eq!(crate::support::joined_content(&datas), text);
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));

    // Anthropic format (translated to the OpenAI upstream), whole and streamed.
    let r = messages(&gw, GW_KEY, "gpt-pii", &text).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["content"][0]["text"], text.as_str());
    let mut body = messages_body("gpt-pii", &text);
    body["stream"] = json!(true);
    let r = post(&gw, GW_KEY, "/v1/messages", &body).await;
    let events = sse_events(&r.text().await.unwrap());
    let joined: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(d).ok()?["delta"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(joined, text);

    // Nothing of the values ever reached the upstream.
    let all = ai.bodies("/chat/completions");
    assert_eq!(all.len(), 4);
    for b in &all {
        let s = b.to_string();
        assert!(
            !s.contains("jane.doe") && !s.contains("7946"),
            "upstream saw PII: {s}"
        );
    }
    assert!(
        metric_sum(
            &gw,
            "ai_gateway_guardrail_actions_total",
            &["guardrail=\"pii\"", "action=\"masked\""]
        )
        .await
            >= 4.0
    );
}

#[tokio::test]
async fn a_block_is_a_content_filter_error_that_never_reaches_the_upstream() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(cfg(&ai)).await;
    let text = "status of Project  Falcon, please";

    let r = chat(&gw, GW_KEY, "gpt-strict", text).await;
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "content_filter");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no-falcon"), "{msg}");
    assert!(!msg.to_lowercase().contains("falcon\""), "{msg}");
    assert!(!msg.contains("Project"), "{msg}");

    let r = messages(&gw, GW_KEY, "gpt-strict", text).await;
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // The same guardrail does not apply to a model that does not name it.
    let r = chat(&gw, GW_KEY, "gpt-pii", text).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream_texts(&ai), [text]);
    assert!(ai.bodies("/moderations").is_empty());
    assert!(
        metric_sum(
            &gw,
            "ai_gateway_guardrail_actions_total",
            &["guardrail=\"no-falcon\"", "action=\"blocked\""]
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn moderation_goes_through_the_gateways_routing_with_its_error_policy() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(cfg(&ai)).await;

    let r = chat(&gw, GW_KEY, "gpt-strict", "hello there").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-gateway-guardrails"),
        Some("pii=passed,no-falcon=passed,modr=passed")
    );
    // The moderation model got the request's text, with the upstream model's name.
    let m = ai.bodies("/moderations");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["model"], "up-model");
    assert_eq!(m[0]["input"], json!(["hello there"]));

    let r = chat(&gw, GW_KEY, "gpt-strict", "plan an attack").await;
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    assert_eq!(v["error"]["code"], "content_filter");
    assert!(v["error"]["message"].as_str().unwrap().contains("'modr'"));
    assert_eq!(upstream_texts(&ai), ["hello there"]);

    // The moderation call failing: on_error block refuses, on_error allow goes on.
    ai.fail_moderation(true);
    let r = chat(&gw, GW_KEY, "gpt-strict", "hi again").await;
    assert_eq!(r.status(), 503);
    let v = json_of(r).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("'modr'"));
    let r = chat(&gw, GW_KEY, "gpt-lenient", "hi again").await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream_texts(&ai), ["hello there", "hi again"]);
}

#[tokio::test]
async fn output_blocks_end_the_answer_the_providers_way() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(cfg(&ai)).await;
    let text = format!("my card is {CARD} thanks");

    // The card goes up (an output guardrail) and comes back in the answer, which is cut.
    let r = chat(&gw, GW_KEY, "gpt-out", &text).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-gateway-guardrails"),
        Some("pii=passed,cards=blocked")
    );
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "my card is ");
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    let mut body = chat_body("gpt-out", &text);
    body["stream"] = json!(true);
    let r = post(&gw, GW_KEY, "/v1/chat/completions", &body).await;
    let datas = sse_data(&r.text().await.unwrap());
    let joined = crate::support::joined_content(&datas);
    assert_eq!(joined, "my card is ");
    let finishes: Vec<Value> = datas
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|v| v["choices"][0]["finish_reason"].clone())
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [json!("content_filter")]);
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));

    let mut body = messages_body("gpt-out", &text);
    body["stream"] = json!(true);
    let r = post(&gw, GW_KEY, "/v1/messages", &body).await;
    let events = sse_events(&r.text().await.unwrap());
    let stop: Vec<String> = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("message_delta"))
        .filter_map(|(_, d)| {
            serde_json::from_str::<Value>(d).ok()?["delta"]["stop_reason"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(stop, ["refusal"]);
    assert_eq!(
        events.last().and_then(|(e, _)| e.clone()).as_deref(),
        Some("message_stop")
    );
    let r = messages(&gw, GW_KEY, "gpt-out", &text).await;
    let v = json_of(r).await;
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["content"][0]["text"], "my card is ");

    // A key naming the guardrail gets it on any model; the other key does not.
    let r = chat(&gw, GPT_KEY, "gpt-pii", &text).await;
    assert_eq!(
        json_of(r).await["choices"][0]["finish_reason"],
        "content_filter"
    );
    let r = chat(&gw, GW_KEY, "gpt-pii", &text).await;
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], text.as_str());
}

#[tokio::test]
async fn the_cache_keeps_the_masked_form_and_each_caller_gets_its_own_values() {
    let ai = FakeAi::start().await;
    let mut c = cfg(&ai);
    c["cache"] = json!({"enabled": true});
    let gw = Gateway::start(c).await;

    let r = chat(&gw, GW_KEY, "gpt-pii", "write to a@example.com").await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "write to a@example.com"
    );
    // Another address masks to the same body: a hit on the stored (masked) answer, restored
    // with this request's own value.
    let r = chat(&gw, GW_KEY, "gpt-pii", "write to b@example.org").await;
    assert_eq!(header(&r, "x-cache"), Some("HIT"));
    assert_eq!(header(&r, "x-gateway-guardrails"), Some("pii=masked"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "write to b@example.org"
    );
    let mut body = chat_body("gpt-pii", "write to c@example.net");
    body["stream"] = json!(true);
    let r = post(&gw, GW_KEY, "/v1/chat/completions", &body).await;
    assert_eq!(header(&r, "x-cache"), Some("HIT"));
    let datas = sse_data(&r.text().await.unwrap());
    assert_eq!(
        crate::support::joined_content(&datas),
        "write to c@example.net"
    );
    assert_eq!(upstream_texts(&ai), ["write to [EMAIL_1]"]);
}

#[tokio::test]
async fn async_jobs_run_the_same_guardrails() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(cfg(&ai)).await;
    let text = format!("reach me at {EMAIL}");
    let r = post(
        &gw,
        GW_KEY,
        "/v1/async/chat/completions",
        &chat_body("gpt-pii", &text),
    )
    .await;
    assert_eq!(r.status(), 202);
    let id = json_of(r).await["id"].as_str().unwrap().to_owned();
    let done = wait_job(&gw, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        text.as_str()
    );
    assert_eq!(upstream_texts(&ai), ["reach me at [EMAIL_1]"]);

    let r = post(
        &gw,
        GW_KEY,
        "/v1/async/chat/completions",
        &chat_body("gpt-strict", "project falcon"),
    )
    .await;
    let id = json_of(r).await["id"].as_str().unwrap().to_owned();
    let done = wait_job(&gw, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "content_filter", "{done}");
    assert_eq!(upstream_texts(&ai).len(), 1);
}

#[tokio::test]
async fn a_bad_pattern_is_a_configuration_error_with_its_path_and_line() {
    let yaml = "providers: [{name: m, type: mock}]\nmodels: [{name: a, deployments: [{provider: m, model: x}]}]\nguardrails:\n  - name: bad\n    type: regex\n    patterns:\n      - ok\n      - \"(unclosed\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = crate::support::gateway::command()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("guardrails[0].patterns[1]"), "{err}");
    assert!(err.contains("line 8"), "{err}");
}

/// With `telemetry.log_bodies`, a chat body is logged after the guardrails: masked values never
/// reach the log, only their placeholders.
#[tokio::test]
async fn logged_bodies_are_the_masked_ones() {
    let ai = FakeAi::start().await;
    let mut config = cfg(&ai);
    config["telemetry"] = json!({"log_bodies": true, "log_format": "json"});
    let gw = Gateway::start(config).await;
    let text = format!("Mail me at {EMAIL} or call {PHONE}.");
    let r = chat(&gw, GW_KEY, "gpt-pii", &text).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        text.as_str()
    );
    let mut logs = String::new();
    for _ in 0..50 {
        logs = gw.logs();
        if logs.contains("[EMAIL_1]") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logs.contains("[EMAIL_1]") && logs.contains("[PHONE_1]"),
        "no masked body logged:\n{logs}"
    );
    assert!(
        !logs.contains("jane.doe") && !logs.contains("7946"),
        "PII in the log:\n{logs}"
    );
}
