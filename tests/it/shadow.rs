//! Shadow traffic (`models[].shadow`): sampled requests also go, after the caller's answer, to a
//! candidate model; its answer never reaches the caller and shows up only in metrics and logs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Model `prod` on upstream A (OpenAI) shadowed by model `candidate` on upstream B (Anthropic).
fn shadow_config(a: &FakeUpstream, b: &FakeUpstream) -> Value {
    config(
        vec![
            openai_provider("prod-up", a),
            anthropic_provider("cand-up", b),
        ],
        vec![
            json!({"name": "prod", "retries": 0,
                   "deployments": [{"provider": "prod-up", "model": "p-model",
                                    "input_cost_per_mtok": 1000.0, "output_cost_per_mtok": 1000.0}],
                   "shadow": {"model": "candidate", "sample": 1.0}}),
            json!({"name": "candidate", "retries": 0,
                   "deployments": [{"provider": "cand-up", "model": "c-model",
                                    "input_cost_per_mtok": 3000.0, "output_cost_per_mtok": 3000.0}]}),
        ],
    )
}

async fn shadows(gw: &Gateway, outcome: &str) -> f64 {
    shadows_reaching(gw, outcome, 0.0).await
}

/// The count of shadow requests with `outcome` once it reaches `want` (or after 5 s).
async fn shadows_reaching(gw: &Gateway, outcome: &str, want: f64) -> f64 {
    metric_sum_reaching(
        gw,
        "ai_gateway_shadow_requests_total",
        &[
            "model=\"prod\"",
            "shadow_model=\"candidate\"",
            &format!("outcome=\"{outcome}\""),
        ],
        want,
    )
    .await
}

async fn wait_metric(gw: &Gateway, outcome: &str, want: f64) {
    let got = shadows_reaching(gw, outcome, want).await;
    assert!(
        got >= want,
        "shadow outcome {outcome}: {got} (wanted {want})"
    );
}

#[tokio::test]
async fn a_sampled_request_is_compared_with_its_shadow_and_never_shown() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start_with_env(
        shadow_config(&a, &b),
        &[("RUST_LOG", "info,ai_gateway::router::shadow=debug")],
    )
    .await;
    let r = gw.chat("prod", "compare me please").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("prod-up"));
    let cost: f64 = header(&r, "x-gateway-cost-usd").unwrap().parse().unwrap();
    let v = json_of(r).await;
    assert_eq!(
        v["model"], "p-model",
        "the primary's answer, not the shadow's"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "compare me please");
    wait_metric(&gw, "ok", 1.0).await;
    // The candidate got the same request, in its own format.
    let shadow_req = b.only_request().json();
    assert_eq!(shadow_req["model"], "c-model");
    assert_eq!(shadow_req["messages"][0]["content"], "compare me please");
    let matched = |check: &'static str| {
        let gw = &gw;
        async move {
            metric_sum(
                gw,
                "ai_gateway_shadow_matches_total",
                &[&format!("check=\"{check}\""), "result=\"match\""],
            )
            .await
        }
    };
    assert_eq!(matched("text_exact").await, 1.0);
    assert_eq!(matched("text_normalised").await, 1.0);
    assert_eq!(matched("finish_reason").await, 1.0);
    assert_eq!(matched("tool_calls").await, 0.0, "no tool was called");
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_shadow_latency_ratio_count",
            &["model=\"prod\""]
        )
        .await,
        1.0
    );
    assert!(
        metric_sum(
            &gw,
            "ai_gateway_shadow_tokens_total",
            &["side=\"shadow\"", "type=\"output\""]
        )
        .await
            > 0.0
    );
    assert!(
        metric_sum(
            &gw,
            "ai_gateway_shadow_cost_usd_total",
            &["side=\"shadow\""]
        )
        .await
            > 0.0
    );
    // Never counted for the caller: the tokens and cost metrics know only the primary.
    assert_eq!(
        metric_sum(&gw, "ai_gateway_tokens_total", &["model=\"candidate\""]).await,
        0.0
    );
    let billed = metric_sum(&gw, "ai_gateway_cost_usd_total", &["key=\"all\""]).await;
    assert!(
        (billed - cost).abs() < 1e-9,
        "billed {billed}, answer {cost}"
    );
    gw.wait_log("shadow compared").await;
    let logs = gw.logs();
    assert!(logs.contains("text_exact"), "{logs}");
}

#[tokio::test]
async fn a_failing_shadow_never_touches_the_answer() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::Anthropic).await;
    b.set_default(Fault::Status(
        500,
        json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}).to_string(),
    ));
    let gw = Gateway::start(shadow_config(&a, &b)).await;
    for _ in 0..2 {
        let r = gw.chat("prod", "still fine").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            json_of(r).await["choices"][0]["message"]["content"],
            "still fine"
        );
    }
    wait_metric(&gw, "error", 2.0).await;
    assert_eq!(shadows(&gw, "ok").await, 0.0);
}

#[tokio::test]
async fn a_streamed_answer_is_shadowed_once_it_ended() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(shadow_config(&a, &b)).await;
    let mut body = chat_body("prod", "stream then shadow");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(joined_content(&sse_data(&text)), "stream then shadow");
    wait_metric(&gw, "ok", 1.0).await;
    assert_eq!(b.only_request().json()["stream"], true);
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_shadow_matches_total",
            &["check=\"text_exact\"", "result=\"match\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_slow_shadow_is_bounded_and_the_excess_dropped() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::Anthropic).await;
    b.set_default(Fault::Hang);
    let gw = Gateway::start(shadow_config(&a, &b)).await;
    // 32 shadow requests may be out at once; the rest are dropped, and every caller is served.
    for i in 0..40 {
        let r = gw.chat("prod", &format!("n{i}")).await;
        assert_eq!(r.status(), 200);
    }
    wait_metric(&gw, "dropped", 8.0).await;
    assert!(wait_until(Duration::from_secs(5), || b.request_count() == 32).await);
    assert_eq!(shadows(&gw, "dropped").await, 8.0);
}
