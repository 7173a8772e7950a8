//! The admin request log (`GET /admin/requests`, `/admin/requests/{id}`): one entry per call
//! (API calls, streams, async job runs), filters, pagination, bodies only when asked for, and
//! never a key or a secret.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The basic configuration with a master key and prices on `gpt-test`.
pub fn log_config(up: &FakeUpstream) -> Value {
    let mut c = basic_config(Some(up));
    c["auth"]["master_key"] = json!(MASTER_KEY);
    c["models"][1]["deployments"][0]["input_cost_per_mtok"] = json!(1.0);
    c["models"][1]["deployments"][0]["output_cost_per_mtok"] = json!(2.0);
    c
}

/// `GET path` with the master key: status and JSON body.
pub async fn admin(gw: &Gateway, path: &str) -> (u16, Value) {
    let r = gw
        .client()
        .get(gw.url(path))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .expect("admin request");
    let s = r.status().as_u16();
    (s, json_of(r).await)
}

/// Poll `/admin/requests?{query}` until it lists at least `n` entries (the writer is
/// asynchronous); the page.
pub async fn wait_entries(gw: &Gateway, query: &str, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = admin(gw, &format!("/admin/requests?limit=1000&{query}")).await;
        assert_eq!(s, 200, "{v}");
        if v["data"].as_array().unwrap().len() >= n {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} entries for {query:?} after 10s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat_as(gw: &Gateway, key: &str, model: &str, id: &str) -> reqwest::Response {
    gw.client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&chat_body(model, "hello there world"))
        .send()
        .await
        .unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn entries_newest_first_with_filters_and_cursor() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(log_config(&up)).await;
    // Five calls: three by `all` on gpt-test, one by `all` on mock, one refused (403: the
    // gpt-only key on mock).
    for (key, model, id) in [
        (GW_KEY, "gpt-test", "r1"),
        (GW_KEY, "gpt-test", "r2"),
        (GW_KEY, "mock", "r3"),
        (GPT_KEY, "mock", "r4"),
        (GW_KEY, "gpt-test", "r5"),
    ] {
        let r = chat_as(&gw, key, model, id).await;
        let _ = r.bytes().await;
    }
    let all = wait_entries(&gw, "", 5).await;
    assert_eq!(ids(&all), ["r5", "r4", "r3", "r2", "r1"], "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(all["has_more"], false);

    let r1 = &all["data"][4];
    assert_eq!(r1["endpoint"], "/v1/chat/completions");
    assert_eq!(r1["key"], "all");
    assert_eq!(r1["model"], "gpt-test");
    assert_eq!(r1["provider"], "fake");
    assert_eq!(r1["deployment_model"], "upstream-model");
    assert_eq!(r1["status"], 200);
    assert_eq!(r1["attempts"], 1);
    assert_eq!(r1["cache"], "BYPASS");
    assert_eq!(r1["input_tokens"], 3);
    assert_eq!(r1["output_tokens"], 3);
    // 3 × $1/M + 3 × $2/M.
    let cost = r1["cost_usd"].as_f64().unwrap();
    assert!((cost - 9e-6).abs() < 1e-12, "{r1}");
    assert!(r1["latency_ms"].is_u64() && r1["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(r1["error"].is_null());
    assert!(
        r1.get("request").is_none() && r1.get("response").is_none(),
        "{r1}"
    );

    let refused = &all["data"][1];
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["key"], "gpt-only");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|m| m.contains("mock")),
        "{refused}"
    );

    // Filters.
    let (_, by_key) = admin(&gw, "/admin/requests?key=gpt-only").await;
    assert_eq!(ids(&by_key), ["r4"]);
    let (_, by_model) = admin(&gw, "/admin/requests?model=gpt-test").await;
    assert_eq!(ids(&by_model), ["r5", "r2", "r1"]);
    let (_, by_status) = admin(&gw, "/admin/requests?status=403").await;
    assert_eq!(ids(&by_status), ["r4"]);
    let (_, errors) = admin(&gw, "/admin/requests?status=4xx").await;
    assert_eq!(ids(&errors), ["r4"]);
    let (_, ok) = admin(&gw, "/admin/requests?status=200&key=all&model=mock").await;
    assert_eq!(ids(&ok), ["r3"]);

    // Pages of two, by cursor.
    let (_, p1) = admin(&gw, "/admin/requests?limit=2").await;
    assert_eq!(
        (ids(&p1), &p1["has_more"]),
        (vec!["r5".into(), "r4".into()], &json!(true))
    );
    let (_, p2) = admin(&gw, "/admin/requests?limit=2&after=r4").await;
    assert_eq!(
        (ids(&p2), &p2["has_more"]),
        (vec!["r3".into(), "r2".into()], &json!(true))
    );
    let (_, p3) = admin(&gw, "/admin/requests?limit=2&after=r2").await;
    assert_eq!(
        (ids(&p3), &p3["has_more"]),
        (vec!["r1".into()], &json!(false))
    );
    // A cursor with a filter.
    let (_, f) = admin(&gw, "/admin/requests?limit=1&model=gpt-test&after=r5").await;
    assert_eq!((ids(&f), &f["has_more"]), (vec!["r2".into()], &json!(true)));

    // One entry.
    let (s, one) = admin(&gw, "/admin/requests/r3").await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["model"], "mock");

    // Bad input: the API's error shape.
    for bad in [
        "/admin/requests?limit=0",
        "/admin/requests?limit=5000",
        "/admin/requests?limit=x",
        "/admin/requests?status=abc",
        "/admin/requests?after=no-such-entry",
    ] {
        let r = gw
            .client()
            .get(gw.url(bad))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_openai_error(r, 400, "invalid_request_error", None).await;
    }
    let r = gw
        .client()
        .get(gw.url("/admin/requests/nope"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The master key is needed.
    let r = gw.get("/admin/requests", Some(GW_KEY)).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_stream_and_an_async_job_run_are_logged() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut c = log_config(&up);
    c["jobs"] = json!({"workers": 2});
    let gw = Gateway::start(c).await;
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-request-id", "streamed-1")
        .json(&json!({"model": "gpt-test", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "one two three four"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("[DONE]"));

    let r = gw
        .client()
        .post(gw.url("/v1/async/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-request-id", "job-run-1")
        .json(&chat_body("gpt-test", "five six"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job = json_of(r).await;
    let id = job["id"].as_str().unwrap();
    let done = crate::jobs::wait_job(&gw, id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let page = wait_entries(&gw, "", 2).await;
    let find = |id: &str| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no entry {id}: {page}"))
    };
    let s = find("streamed-1");
    assert_eq!(s["status"], 200);
    assert_eq!(s["input_tokens"], 4, "{s}");
    assert_eq!(s["output_tokens"], 4, "{s}");
    assert!(
        s["ttft_ms"].is_u64(),
        "a stream has a time to first token: {s}"
    );
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0, "{s}");
    let j = find("job-run-1");
    assert_eq!(j["status"], 200);
    assert_eq!(j["key"], "all");
    assert_eq!(j["model"], "gpt-test");
    assert_eq!(j["endpoint"], "/v1/chat/completions");
    assert_eq!(j["input_tokens"], 2, "{j}");
    assert!(j["ttft_ms"].is_null());
}

/// Bodies are kept only with `request_log.bodies: true`; headers never are, and a key or a
/// secret-like word in a body is redacted.
#[tokio::test]
async fn bodies_only_when_asked_and_never_a_secret() {
    const HEADER_SECRET: &str = "sk-header-secret-do-not-log-0009";
    let up = FakeUpstream::start(Kind::OpenAi).await;
    for bodies in [false, true] {
        let mut c = log_config(&up);
        if bodies {
            c["request_log"] = json!({"bodies": true});
        }
        let gw = Gateway::start(c).await;
        let r = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .header("x-request-id", "with-secret")
            .header("x-custom-token", HEADER_SECRET)
            .header("openai-organization", HEADER_SECRET)
            .json(&chat_body(
                "gpt-test",
                "remember sk-proj-abcdefghijklmnop1234 please",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        // A failing call too (its error message is logged).
        let r = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .header("x-request-id", "bad-json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let page = wait_entries(&gw, "", 2).await;
        let text = page.to_string();
        for secret in [
            GW_KEY,
            HEADER_SECRET,
            PROVIDER_KEY,
            MASTER_KEY,
            "sk-proj-abcdefghijklmnop1234",
        ] {
            assert!(
                !text.contains(secret),
                "bodies={bodies}: {secret} in {text}"
            );
        }
        let e = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == "with-secret")
            .unwrap()
            .clone();
        let bad = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == "bad-json")
            .unwrap()
            .clone();
        assert_eq!(bad["status"], 400);
        assert!(
            bad["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}"
        );
        if bodies {
            let req = e["request"].as_str().unwrap();
            assert!(
                req.contains("remember") && req.contains("[redacted]"),
                "{req}"
            );
            let resp = e["response"].as_str().unwrap();
            assert!(resp.contains("chat.completion"), "{resp}");
        } else {
            assert!(
                e.get("request").is_none() && e.get("response").is_none(),
                "{e}"
            );
        }
    }
}

/// With guardrails masking the input, the logged request is the masked body the upstream saw,
/// and the answer (which has the values restored) is not kept.
#[tokio::test]
async fn bodies_are_logged_after_guardrail_masking() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut c = log_config(&up);
    c["request_log"] = json!({"bodies": true});
    c["guardrails"] = json!([{"name": "pii", "type": "pii", "action": "mask",
                              "entities": ["email"], "models": ["gpt-*"]}]);
    let gw = Gateway::start(c).await;
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-request-id", "masked-1")
        .json(&chat_body(
            "gpt-test",
            "write to jane.doe@example.com today",
        ))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let page = wait_entries(&gw, "", 1).await;
    let e = &page["data"][0];
    let text = e.to_string();
    assert!(!text.contains("jane.doe@example.com"), "{text}");
    assert!(e["request"].as_str().unwrap().contains("write to"), "{e}");
    assert!(e.get("response").is_none(), "{e}");
}

/// `request_log.max_entries`: the newest are kept; a cursor on a trimmed entry is a 400.
#[tokio::test]
async fn bounded_by_max_entries() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut c = log_config(&up);
    c["request_log"] = json!({"max_entries": 3});
    let gw = Gateway::start(c).await;
    for i in 1..=5 {
        let r = chat_as(&gw, GW_KEY, "gpt-test", &format!("t{i}")).await;
        let _ = r.bytes().await;
        // One at a time, so each is its own batch.
        wait_entries(&gw, "", i.min(3)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while admin(&gw, &format!("/admin/requests/t{i}")).await.0 != 200 {
            assert!(tokio::time::Instant::now() < deadline, "t{i} not logged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, page) = admin(&gw, "/admin/requests").await;
    assert_eq!(ids(&page), ["t5", "t4", "t3"]);
    assert_eq!(admin(&gw, "/admin/requests/t1").await.0, 404);
    let r = gw
        .client()
        .get(gw.url("/admin/requests?after=t2"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("trimmed"), "{e}");
    // The usage report keeps counting what the log no longer holds.
    let (_, usage) = admin(&gw, "/admin/usage?group_by=model").await;
    assert_eq!(usage["data"][0]["requests"], 5, "{usage}");
}

/// A wildcard model's calls are labelled by the wildcard's name (clients cannot make new label
/// values), through chat and the Responses API alike, in the log and in the token and cost
/// metrics; what served them by its own names.
#[tokio::test]
async fn a_wildcard_models_calls_are_labelled_by_the_wildcard() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = config(
        vec![openai_provider("fake", &up)],
        vec![json!({"name": "fake/*", "deployments": [{"provider": "fake", "model": "*"}]})],
    );
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg).await;
    assert_eq!(gw.chat("fake/gpt-4.1-mini", "wild").await.status(), 200);
    let r = gw
        .post(
            "/v1/responses",
            Some(GW_KEY),
            &json!({"model": "fake/gpt-4.1-mini", "input": "wild", "store": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = wait_entries(&gw, "", 2).await;
    let entries = page["data"].as_array().unwrap();
    let endpoints: Vec<&str> = entries
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints, ["/v1/responses", "/v1/chat/completions"]);
    for e in entries {
        assert_eq!(e["model"], "fake/*", "{e}");
        assert_eq!(e["provider"], "fake", "{e}");
        assert_eq!(e["deployment_model"], "gpt-4.1-mini", "{e}");
        assert_eq!(e["cache"], "BYPASS", "{e}");
        assert_eq!(e["status"], 200, "{e}");
    }
    // The answers' token and cost metrics too (they carried the name asked for).
    let wild = ["model=\"fake/*\""];
    let asked = ["model=\"fake/gpt-4.1-mini\""];
    assert!(metric_sum(&gw, "ai_gateway_tokens_total", &wild).await > 0.0);
    for name in ["ai_gateway_tokens_total", "ai_gateway_cost_usd_total"] {
        assert_eq!(metric_sum(&gw, name, &asked).await, 0.0, "{name}");
    }
}
