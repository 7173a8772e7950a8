//! The built-in price list's cached-input prices: prompt tokens an upstream read from its prompt
//! cache cost the cached price (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic
//! `cache_read_input_tokens`, Gemini `cachedContentTokenCount`, Bedrock `cacheReadInputTokens`),
//! the rest of the prompt the input price; a deployment's own prices win (its cached tokens then
//! cost its input price).

use serde_json::json;

use crate::support::native::{FakeNative, NativeFault};
use crate::support::*;

/// The answer's `x-gateway-cost-usd`.
async fn cost_of(gw: &Gateway, model: &str) -> f64 {
    let r = gw.chat(model, "what does it cost").await;
    assert_eq!(r.status(), 200);
    let cost = header(&r, "x-gateway-cost-usd").expect("a cost").to_owned();
    let _ = r.text().await;
    cost.parse().unwrap()
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-6, "{what}: {got} != {want}");
}

#[tokio::test]
async fn cached_prompt_tokens_cost_the_cached_price_in_every_format() {
    let openai = FakeUpstream::start(Kind::OpenAi).await;
    let anthropic = FakeUpstream::start(Kind::Anthropic).await;
    let native = FakeNative::start(PROVIDER_KEY).await;
    let cfg = config(
        vec![
            openai_provider("oai", &openai),
            anthropic_provider("ant", &anthropic),
            json!({"name": "gem", "type": "gemini", "base_url": native.base_url(), "api_key": PROVIDER_KEY}),
            json!({"name": "aws", "type": "bedrock", "base_url": native.base_url(), "region": "us-east-1",
                "aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "fake-secret"}),
        ],
        vec![
            // The list: gpt-4o-mini [0.15, 0.6, 0.075], claude-3-5-haiku and its Bedrock id
            // [0.8, 4.0, 0.08], gemini-2.5-flash [0.3, 2.5, 0.075].
            model("gpt", "oai", "gpt-4o-mini"),
            model("claude", "ant", "claude-3-5-haiku-20241022"),
            model("gemini", "gem", "gemini-2.5-flash"),
            model("bedrock", "aws", "anthropic.claude-3-5-haiku-20241022-v1:0"),
            // Its own prices win: cached tokens at its input price.
            json!({"name": "own", "deployments": [{"provider": "oai", "model": "gpt-4o-mini",
                "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}]}),
        ],
    );
    let gw = Gateway::start(cfg).await;

    // 1 M prompt tokens of which 800 k cached, 1,000 answer tokens.
    let openai_answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "cheap"}}],
        "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000, "total_tokens": 1_001_000,
            "prompt_tokens_details": {"cached_tokens": 800_000}}})
    .to_string();
    openai.push([Fault::Body(openai_answer.clone())]);
    assert_close(
        cost_of(&gw, "gpt").await,
        0.2 * 0.15 + 0.8 * 0.075 + 0.001 * 0.6,
        "openai",
    );

    anthropic.push([Fault::Body(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "cheap"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 200_000, "cache_read_input_tokens": 800_000, "output_tokens": 1_000}})
        .to_string(),
    )]);
    assert_close(
        cost_of(&gw, "claude").await,
        0.2 * 0.8 + 0.8 * 0.08 + 0.001 * 4.0,
        "anthropic",
    );

    native.push([NativeFault::Status(
        200,
        vec![],
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "cheap"}]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 1_000_000, "cachedContentTokenCount": 800_000,
                "candidatesTokenCount": 1_000, "totalTokenCount": 1_001_000}})
        .to_string(),
    )]);
    assert_close(
        cost_of(&gw, "gemini").await,
        0.2 * 0.3 + 0.8 * 0.075 + 0.001 * 2.5,
        "gemini",
    );

    native.push([NativeFault::Status(
        200,
        vec![],
        json!({"output": {"message": {"role": "assistant", "content": [{"text": "cheap"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 200_000, "cacheReadInputTokens": 800_000, "outputTokens": 1_000,
                "totalTokens": 1_001_000}})
        .to_string(),
    )]);
    assert_close(
        cost_of(&gw, "bedrock").await,
        0.2 * 0.8 + 0.8 * 0.08 + 0.001 * 4.0,
        "bedrock",
    );

    openai.push([Fault::Body(openai_answer)]);
    assert_close(cost_of(&gw, "own").await, 1.0 + 0.001 * 2.0, "own prices");
}
