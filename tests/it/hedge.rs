//! Hedged requests (`models[].hedge`): a slow first deployment and a fast second one — the
//! hedge wins, the slow upstream sees its connection dropped, the caller pays once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Model `hedged`: deployment `slow` (priority 0, upstream A) and `fast` (priority 1, upstream
/// B), both priced, with `hedge`.
fn hedged_config(a: &FakeUpstream, b: &FakeUpstream, hedge: Value) -> Value {
    let mut cfg = config(
        vec![openai_provider("slow", a), openai_provider("fast", b)],
        vec![json!({
            "name": "hedged",
            "routing": "priority",
            "deployments": [
                {"provider": "slow", "model": "m-slow", "priority": 0,
                 "input_cost_per_mtok": 1000.0, "output_cost_per_mtok": 1000.0},
                {"provider": "fast", "model": "m-fast", "priority": 1,
                 "input_cost_per_mtok": 1000.0, "output_cost_per_mtok": 1000.0},
            ],
            "retries": 0,
            "hedge": hedge,
        })],
    );
    cfg["auth"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "tight", "key": "sk-gw-tight-0005", "models": ["*"], "rpm": 1}));
    cfg
}

async fn pair() -> (FakeUpstream, FakeUpstream) {
    (
        FakeUpstream::start(Kind::OpenAi).await,
        FakeUpstream::start(Kind::OpenAi).await,
    )
}

#[tokio::test]
async fn a_slow_first_deployment_loses_to_the_hedge_and_is_dropped() {
    let (a, b) = pair().await;
    a.push([Fault::Delay(Duration::from_secs(20))]);
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "150ms", "max": 1}))).await;
    let r = gw.chat("hedged", "hello there").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-hedged"), Some("true"));
    assert_eq!(header(&r, "x-gateway-provider"), Some("fast"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    let cost: f64 = header(&r, "x-gateway-cost-usd").unwrap().parse().unwrap();
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello there");
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 1);
    // The slow upstream sees its request abandoned: the connection was dropped.
    assert!(
        wait_until(Duration::from_secs(5), || a.requests_cancelled() == 1).await,
        "the slow upstream's request was not cancelled"
    );
    // The caller pays once: the winner's tokens and cost only.
    let usage = &v["usage"];
    let tokens =
        usage["prompt_tokens"].as_f64().unwrap() + usage["completion_tokens"].as_f64().unwrap();
    assert_eq!(
        metric_sum(&gw, "ai_gateway_tokens_total", &["model=\"hedged\""]).await,
        tokens
    );
    let billed = metric_sum(&gw, "ai_gateway_cost_usd_total", &["key=\"all\""]).await;
    assert!(
        (billed - cost).abs() < 1e-9,
        "billed {billed}, answer cost {cost}"
    );
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_hedges_total",
            &["model=\"hedged\"", "outcome=\"won\""]
        )
        .await,
        1.0
    );
    // Both attempts count: the loser as cancelled.
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_upstream_attempts_total",
            &["provider=\"slow\"", "outcome=\"cancelled\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_stream_is_committed_at_the_first_chunk_of_the_hedge() {
    let (a, b) = pair().await;
    // A's stream starts (headers) but sends no event until released.
    a.push([Fault::Gated(0)]);
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "150ms"}))).await;
    let mut body = chat_body("hedged", "streamed words here");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-hedged"), Some("true"));
    assert_eq!(header(&r, "x-gateway-provider"), Some("fast"));
    let text = r.text().await.unwrap();
    assert_eq!(joined_content(&sse_data(&text)), "streamed words here");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert!(
        wait_until(Duration::from_secs(5), || a.streams_cancelled() == 1).await,
        "the slow stream was not dropped"
    );
    assert_eq!(a.frames_sent(), 0);
}

#[tokio::test]
async fn a_first_answer_in_time_sends_no_hedge() {
    let (a, b) = pair().await;
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "5s", "max": 2}))).await;
    for _ in 0..3 {
        let r = gw.chat("hedged", "quick").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-gateway-hedged"), None);
        assert_eq!(header(&r, "x-gateway-provider"), Some("slow"));
    }
    assert_eq!(a.request_count(), 3);
    assert_eq!(b.request_count(), 0);
    assert_eq!(
        metric_sum(&gw, "ai_gateway_hedges_total", &["model=\"hedged\""]).await,
        0.0
    );
}

#[tokio::test]
async fn no_hedge_for_a_key_at_its_rate_limit() {
    let (a, b) = pair().await;
    a.push([Fault::Delay(Duration::from_millis(600))]);
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "100ms"}))).await;
    // rpm 1: this request takes the key's last request of the minute.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-gw-tight-0005"),
            &chat_body("hedged", "limited"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-hedged"), None);
    assert_eq!(header(&r, "x-gateway-provider"), Some("slow"));
    assert_eq!(b.request_count(), 0);
}

#[tokio::test]
async fn no_hedge_to_a_deployment_at_its_capacity() {
    let (a, b) = pair().await;
    let mut cfg = hedged_config(&a, &b, json!({"after": "100ms"}));
    cfg["models"][0]["deployments"][1]["rpm"] = json!(1);
    let gw = Gateway::start(cfg).await;
    a.push([Fault::Delay(Duration::from_secs(20))]);
    let r = gw.chat("hedged", "one").await;
    assert_eq!(header(&r, "x-gateway-hedged"), Some("true"));
    // B used its one request of the minute: the next slow answer is waited for.
    a.push([Fault::Delay(Duration::from_millis(500))]);
    let r = gw.chat("hedged", "two").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-hedged"), None);
    assert_eq!(header(&r, "x-gateway-provider"), Some("slow"));
    assert_eq!(b.request_count(), 1);
}

#[tokio::test]
async fn a_failed_first_request_leaves_the_hedge_running() {
    let (a, b) = pair().await;
    // A fails after the hedge went out and before B answers.
    a.push([Fault::StatusAfter(
        Duration::from_millis(300),
        503,
        json!({"error": {"message": "overloaded", "type": "server_error"}}).to_string(),
    )]);
    b.push([Fault::Delay(Duration::from_millis(700))]);
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "100ms"}))).await;
    let r = gw.chat("hedged", "survive").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("fast"));
    assert_eq!(header(&r, "x-gateway-hedged"), Some("true"));
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_upstream_attempts_total",
            &["provider=\"slow\"", "outcome=\"error_status\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_percentile_waits_for_enough_samples_then_hedges_past_it() {
    let (a, b) = pair().await;
    let gw = Gateway::start(hedged_config(&a, &b, json!({"after": "p50"}))).await;
    // Too few samples: a slow answer is waited for.
    a.push([Fault::Delay(Duration::from_millis(400))]);
    let r = gw.chat("hedged", "first").await;
    assert_eq!(header(&r, "x-gateway-hedged"), None);
    // Below the sketch's minimum of samples nothing is hedged, however slow.
    for _ in 0..18 {
        assert_eq!(gw.chat("hedged", "warm").await.status(), 200);
    }
    assert_eq!(b.request_count(), 0);
    // Past it, a warm request slower than the p50 may itself be hedged (on a loaded machine):
    // count from here.
    for _ in 0..12 {
        assert_eq!(gw.chat("hedged", "warm").await.status(), 200);
    }
    let before = b.request_count();
    // Now p50 is a few milliseconds: a slow first answer is hedged.
    a.push([Fault::Delay(Duration::from_secs(20))]);
    let r = gw.chat("hedged", "late").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-hedged"), Some("true"));
    assert_eq!(b.request_count(), before + 1);
}
