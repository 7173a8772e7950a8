//! `POST /v1/responses` through the real gateway to fake upstreams of both formats, and the
//! stored responses: retrieval, input items, deletion, `previous_response_id` across providers
//! and across two replicas sharing a real Redis, binding to the key, expiry.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::redis::{RedisServer, wait_redis_ok};
use crate::support::*;

/// Models `gpt-test` (OpenAI-type fake) and `claude-test` (Anthropic-type fake).
fn two_provider_config(oa: &FakeUpstream, an: &FakeUpstream) -> Value {
    config(
        vec![openai_provider("oa", oa), anthropic_provider("an", an)],
        vec![
            model("gpt-test", "oa", "gpt-upstream"),
            model("claude-test", "an", "claude-upstream"),
        ],
    )
}

async fn create(gw: &Gateway, key: &str, body: Value) -> Value {
    let r = gw.post("/v1/responses", Some(key), &body).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    json_of(r).await
}

/// A message's text, whether its content is a string or text blocks.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

fn output_text(resp: &Value) -> String {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn create_get_list_and_delete() {
    let oa = FakeUpstream::start(Kind::OpenAi).await;
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(two_provider_config(&oa, &an)).await;
    let resp = create(
        &gw,
        GW_KEY,
        json!({"model": "gpt-test", "instructions": "be brief", "input": "hello there",
               "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["status"], "completed");
    assert_eq!(resp["model"], "gpt-test");
    assert_eq!(resp["metadata"], json!({"k": "v"}));
    assert_eq!(output_text(&resp), "hello there");
    assert!(resp["usage"]["input_tokens"].as_u64().is_some());
    // The upstream got a chat request for its own model, instructions first.
    let sent = oa.only_request().json();
    assert_eq!(oa.only_request().path, "/v1/chat/completions");
    assert_eq!(sent["model"], "gpt-upstream");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );

    let id = resp["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"));
    let got = json_of(gw.get(&format!("/v1/responses/{id}"), Some(GW_KEY)).await).await;
    assert_eq!(got, resp);
    let items = json_of(
        gw.get(&format!("/v1/responses/{id}/input_items"), Some(GW_KEY))
            .await,
    )
    .await;
    assert_eq!(items["object"], "list");
    assert_eq!(items["has_more"], false);
    assert_eq!(items["data"][0]["role"], "user");
    assert_eq!(items["data"][0]["content"][0]["text"], "hello there");

    // Another key sees nothing, not even to delete it.
    for r in [
        gw.get(&format!("/v1/responses/{id}"), Some(GPT_KEY)).await,
        gw.client()
            .delete(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(GPT_KEY)
            .send()
            .await
            .unwrap(),
    ] {
        assert_openai_error(r, 404, "invalid_request_error", None).await;
    }
    let r = gw
        .client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(GW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(r).await,
        json!({"id": id, "object": "response", "deleted": true})
    );
    let r = gw.get(&format!("/v1/responses/{id}"), Some(GW_KEY)).await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
}

#[tokio::test]
async fn streams_typed_events_and_stores_the_final_response() {
    let oa = FakeUpstream::start(Kind::OpenAi).await;
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(two_provider_config(&oa, &an)).await;
    for model in ["gpt-test", "claude-test"] {
        let r = gw
            .post(
                "/v1/responses",
                Some(GW_KEY),
                &json!({"model": model, "input": "streamed words", "stream": true}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert!(
            header(&r, "content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = r.text().await.unwrap();
        let events = sse_events(&text);
        let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
        assert_eq!(
            kinds.first().copied(),
            Some("response.created"),
            "{model}: {kinds:?}"
        );
        assert_eq!(kinds.get(1).copied(), Some("response.in_progress"));
        assert_eq!(kinds.last().copied(), Some("response.completed"), "{model}");
        for k in [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.output_item.done",
        ] {
            assert!(kinds.contains(&k), "{model}: {k} missing in {kinds:?}");
        }
        let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
        let resp = &last["response"];
        assert_eq!(output_text(resp), "streamed words");
        assert!(resp["usage"]["output_tokens"].as_u64().is_some());
        // Stored as sent (the store write is on its own task: the same process finds it at once).
        let id = resp["id"].as_str().unwrap();
        let got = json_of(gw.get(&format!("/v1/responses/{id}"), Some(GW_KEY)).await).await;
        assert_eq!(&got, resp);
    }
}

#[tokio::test]
async fn previous_response_id_continues_on_another_provider() {
    let oa = FakeUpstream::start(Kind::OpenAi).await;
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(two_provider_config(&oa, &an)).await;
    let tools = json!([{"type": "function", "name": "lookup", "description": "look up",
                        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}]);
    // Turn 1 (OpenAI): a forced function call.
    let first = create(
        &gw,
        GW_KEY,
        json!({"model": "gpt-test", "input": "find cats", "tools": tools, "tool_choice": "required"}),
    )
    .await;
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .expect("a function call")
        .clone();
    assert_eq!(call["name"], "lookup");
    let call_id = call["call_id"].as_str().unwrap();
    // Turn 2 (Anthropic): the function's output, continuing turn 1.
    let second = create(
        &gw,
        GW_KEY,
        json!({"model": "claude-test", "previous_response_id": first["id"], "tools": tools,
               "input": [{"type": "function_call_output", "call_id": call_id, "output": "three cats"}]}),
    )
    .await;
    assert_eq!(second["previous_response_id"], first["id"]);
    let sent = an.only_request().json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(text_of(&messages[0]["content"]), "find cats");
    // The call's id in Anthropic's style, the same in the call and its result.
    assert_eq!(call_id, "call_fake0");
    let blocks = |m: &Value| m["content"].as_array().cloned().unwrap_or_default();
    assert!(
        blocks(&messages[1])
            .iter()
            .any(|b| b["type"] == "tool_use" && b["name"] == "lookup" && b["id"] == "toolu_fake0"),
        "{sent}"
    );
    assert!(
        blocks(&messages[2])
            .iter()
            .any(|b| b["type"] == "tool_result" && b["tool_use_id"] == "toolu_fake0"),
        "{sent}"
    );
    // Turn 3 (OpenAI again): the whole conversation, from the stored chain.
    let third = create(
        &gw,
        GW_KEY,
        json!({"model": "gpt-test", "previous_response_id": second["id"], "input": "thanks"}),
    )
    .await;
    assert_eq!(output_text(&third), "thanks");
    let sent = oa.requests().last().unwrap().json();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    // The OpenAI upstream gets its own id back.
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_fake0");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_fake0");

    // Another key cannot continue it, and an unknown id is 404 in OpenAI's shape.
    let r = gw
        .post(
            "/v1/responses",
            Some(GPT_KEY),
            &json!({"model": "gpt-test", "previous_response_id": first["id"], "input": "hi"}),
        )
        .await;
    let e = assert_openai_error(r, 404, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("not found"));
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "gpt-test", "previous_response_id": "resp_nope", "input": "hi"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_item() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "mock", "input": [{"type": "message", "role": "user", "content": "ok"},
                                              {"type": "function_call", "name": "f"}]}),
        )
        .await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("input[1]"), "{e}");
    // Each malformed item is named by its index.
    let ok = json!({"type": "message", "role": "user", "content": "ok"});
    for (bad, at, says) in [
        (json!("just text"), "input[1]", "object"),
        (
            json!({"type": "message", "role": "robot", "content": "x"}),
            "input[1]",
            "robot",
        ),
        (
            json!({"type": "message", "role": "user"}),
            "input[1]",
            "content",
        ),
        (
            json!({"type": "function_call_output", "call_id": "c"}),
            "input[1]",
            "output",
        ),
        (json!({"type": "no_such_item"}), "input[1]", "no_such_item"),
        (
            json!({"type": "item_reference", "id": "msg_1"}),
            "input[1]",
            "item_reference",
        ),
    ] {
        let r = gw
            .post(
                "/v1/responses",
                Some(GW_KEY),
                &json!({"model": "mock", "input": [ok, bad]}),
            )
            .await;
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(at) && message.contains(says), "{bad}: {e}");
    }
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "mock", "input": 5}),
        )
        .await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("input"), "{e}");
    let r = gw
        .post("/v1/responses", Some(GW_KEY), &json!({"input": "no model"}))
        .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "nope", "input": "x"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let r = gw
        .post(
            "/v1/responses",
            Some(GPT_KEY),
            &json!({"model": "mock", "input": "x"}),
        )
        .await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    // store: false keeps nothing.
    let resp = create(
        &gw,
        GW_KEY,
        json!({"model": "mock", "input": "x", "store": false}),
    )
    .await;
    let r = gw
        .get(
            &format!("/v1/responses/{}", resp["id"].as_str().unwrap()),
            Some(GW_KEY),
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn expired_responses_are_gone() {
    let mut cfg = basic_config(None);
    cfg["responses"] = json!({"store_ttl": "1s"});
    let gw = Gateway::start(cfg).await;
    let resp = create(
        &gw,
        GW_KEY,
        json!({"model": "mock", "input": "short-lived"}),
    )
    .await;
    let path = format!("/v1/responses/{}", resp["id"].as_str().unwrap());
    assert_eq!(gw.get(&path, Some(GW_KEY)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = gw.get(&path, Some(GW_KEY)).await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "mock", "previous_response_id": resp["id"], "input": "x"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
}

/// Whether Redis has `key` (`exists`) or has not, within 5 s.
async fn exists_soon(redis: &RedisServer, key: &str, exists: bool) -> bool {
    let want = if exists { "1" } else { "0" };
    wait_until(Duration::from_secs(5), || {
        redis.cli(&["EXISTS", key]).trim() == want
    })
    .await
}

/// In Redis, a stored response expires by its key's TTL: gone for `GET` and as
/// `previous_response_id` alike.
#[tokio::test]
async fn expired_responses_are_gone_from_redis_too() {
    let redis = RedisServer::start().await;
    let mut cfg = basic_config(None);
    cfg["responses"] = json!({"store_ttl": "1s"});
    cfg["state"] = json!({"redis_url": redis.url()});
    let gw = Gateway::start(cfg).await;
    wait_redis_ok(&gw).await;
    let resp = create(
        &gw,
        GW_KEY,
        json!({"model": "mock", "input": "short-lived"}),
    )
    .await;
    let id = resp["id"].as_str().unwrap();
    let key = format!("aigw:resp:{id}");
    assert!(exists_soon(&redis, &key, true).await, "stored in Redis");
    assert!(exists_soon(&redis, &key, false).await, "expired by Redis");
    let r = gw.get(&format!("/v1/responses/{id}"), Some(GW_KEY)).await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "mock", "previous_response_id": id, "input": "x"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", None).await;
}

#[tokio::test]
async fn two_replicas_share_stored_responses_through_redis() {
    let redis = RedisServer::start().await;
    let oa = FakeUpstream::start(Kind::OpenAi).await;
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let mut cfg = two_provider_config(&oa, &an);
    cfg["state"] = json!({"redis_url": redis.url()});
    let one = Gateway::start(cfg.clone()).await;
    let two = Gateway::start(cfg).await;
    wait_redis_ok(&one).await;
    wait_redis_ok(&two).await;
    let first = create(
        &one,
        GW_KEY,
        json!({"model": "gpt-test", "input": "remember 42"}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    // The record is in Redis with its TTL (30 days by default).
    let key = format!("aigw:resp:{id}");
    assert!(exists_soon(&redis, &key, true).await, "stored in Redis");
    let ttl: u64 = redis.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!(ttl > 29 * 86_400 && ttl <= 30 * 86_400, "{ttl}");
    let got = json_of(two.get(&format!("/v1/responses/{id}"), Some(GW_KEY)).await).await;
    assert_eq!(got, first);
    let second = create(
        &two,
        GW_KEY,
        json!({"model": "claude-test", "previous_response_id": id, "input": "what number?"}),
    )
    .await;
    let sent = an.only_request().json();
    assert_eq!(text_of(&sent["messages"][0]["content"]), "remember 42");
    assert_eq!(sent["messages"][1]["role"], "assistant");
    // Deleted on one replica: gone on both.
    let sid = second["id"].as_str().unwrap();
    let r = one
        .client()
        .delete(one.url(&format!("/v1/responses/{sid}")))
        .bearer_auth(GW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `two` made it: it serves the record from memory until its own write to Redis has returned,
    // which may be a moment after the record landed there (and `one` read and deleted it).
    let mut status = 0;
    for _ in 0..100 {
        status = two
            .get(&format!("/v1/responses/{sid}"), Some(GW_KEY))
            .await
            .status()
            .as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, 404,
        "deleted on one replica, still served by the other after 2 s"
    );
    // Another key's 404 on the other replica too.
    assert_eq!(
        two.get(&format!("/v1/responses/{id}"), Some(GPT_KEY))
            .await
            .status(),
        404
    );
}
