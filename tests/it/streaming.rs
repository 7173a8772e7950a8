//! Streaming: SSE relayed frame by frame as it arrives, `[DONE]`, usage chunks, and a client that
//! goes away cancelling the upstream request.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn stream_body(model: &str, text: &str, include_usage: bool) -> Value {
    let mut b = json!({"model": model, "stream": true,
        "messages": [{"role": "user", "content": text}]});
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

fn assert_sse(r: &reqwest::Response) {
    assert_eq!(r.status(), 200);
    let ct = header(r, "content-type").unwrap_or("");
    assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
}

/// Checks an OpenAI stream: chunks, then optionally a usage chunk, then `[DONE]`.
fn check_openai_stream(body: &str, echo: &str, usage: bool) {
    let datas = sse_data(body);
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body:?}");
    for d in &datas[..datas.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|_| panic!("chunk {d}"));
        assert_eq!(v["object"], "chat.completion.chunk", "{d}");
    }
    assert_eq!(joined_content(&datas), echo);
    let last: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
    if usage {
        assert_eq!(
            last["choices"],
            json!([]),
            "usage chunk has no choices: {last}"
        );
        assert!(last["usage"]["prompt_tokens"].as_u64().is_some(), "{last}");
        assert!(
            last["usage"]["completion_tokens"].as_u64().is_some(),
            "{last}"
        );
        assert!(last["usage"]["total_tokens"].as_u64().is_some(), "{last}");
    } else {
        assert!(
            datas.iter().all(|d| !d.contains("\"usage\":{")),
            "no usage chunk without include_usage: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_streams_word_by_word_with_done() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("mock", "one two three four", false),
        )
        .await;
    assert_sse(&r);
    assert_eq!(header(&r, "x-gateway-provider"), Some("local"));
    let body = r.text().await.unwrap();
    check_openai_stream(&body, "one two three four", false);
    // One chunk per word (plus role and finish chunks).
    assert!(sse_data(&body).len() >= 4 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_stream_include_usage() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("mock", "count these words", true),
        )
        .await;
    assert_sse(&r);
    check_openai_stream(&r.text().await.unwrap(), "count these words", true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stream_passes_through_with_usage() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("gpt-test", "stream me please", true),
        )
        .await;
    assert_sse(&r);
    assert_eq!(header(&r, "x-gateway-provider"), Some("fake"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));
    let body = r.text().await.unwrap();
    check_openai_stream(&body, "stream me please", true);
    let req = up.only_request().json();
    assert_eq!(req["stream"], true);
    assert_eq!(req["stream_options"], json!({"include_usage": true}));
    // The upstream's frames arrive untouched: the fake's model and fingerprint are in every chunk.
    for d in sse_data(&body).iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["model"], "upstream-model");
        assert_eq!(v["system_fingerprint"], "fp_fake");
        assert_eq!(v["id"], "chatcmpl-fake0001");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_relayed_before_upstream_finishes() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    // Two frames (role chunk, first word), then the upstream waits for the test.
    up.push([Fault::Gated(2)]);
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let mut r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("gpt-test", "alpha beta gamma", false),
        )
        .await;
    assert_sse(&r);
    let mut buf = String::new();
    let got_first = read_until(&mut r, &mut buf, Duration::from_secs(10), |b| {
        b.contains("alpha ")
    })
    .await;
    assert!(
        got_first,
        "the first chunk did not reach the client while the upstream held the rest: {buf:?}"
    );
    assert_eq!(
        up.streams_completed(),
        0,
        "the upstream has not finished yet"
    );
    assert!(!buf.contains("[DONE]"));
    up.release();
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(10), |b| b
            .contains("[DONE]"))
        .await,
        "{buf:?}"
    );
    check_openai_stream(&buf, "alpha beta gamma", false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_first_chunk_arrives_before_upstream_sends_last() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::SlowStream {
        gap: Duration::from_millis(100),
    }]);
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let text = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12";
    // role + 12 words + finish + usage (always asked for upstream) + [DONE]
    let total_frames = 16;
    let mut r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("gpt-test", text, false),
        )
        .await;
    assert_sse(&r);
    let mut buf = String::new();
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(10), |b| b
            .contains("w1 "))
        .await,
        "{buf:?}"
    );
    let sent_when_first_seen = up.frames_sent();
    assert!(
        sent_when_first_seen < total_frames,
        "the client saw the first chunk only after the upstream sent all {total_frames} frames"
    );
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(15), |b| b
            .contains("[DONE]"))
        .await,
        "{buf:?}"
    );
    check_openai_stream(&buf, text, false);
    assert_eq!(up.frames_sent(), total_frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_upstream_stream() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::SlowStream {
        gap: Duration::from_millis(50),
    }]);
    let gw = Gateway::start(basic_config(Some(&up))).await;
    // 300 words at 50 ms: the upstream would take 15 s to finish on its own.
    let text = (0..300)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("gpt-test", &text, false),
        )
        .await;
    assert_sse(&r);
    let mut buf = String::new();
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(10), |b| b
            .contains("w1 "))
        .await
    );
    assert_eq!(up.streams_started(), 1);
    drop(r);
    let cancelled = wait_until(Duration::from_secs(8), || up.streams_cancelled() == 1).await;
    assert!(
        cancelled,
        "the upstream stream was not cancelled after the client went away (completed: {})",
        up.streams_completed()
    );
    assert_eq!(up.streams_completed(), 0);
    // And the gateway still serves.
    let r = gw.get("/health", None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_breaking_mid_stream_ends_with_error_event() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::DropMidStream(3)]);
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let (body, datas) = read_stream(
        &gw,
        "a b c d e f g",
        "the stream must end when the upstream breaks",
    )
    .await;
    // The frames sent before the break were relayed...
    assert!(joined_content(&datas).starts_with("a b"), "{body}");
    // ...and the stream ends with an error event in OpenAI's format, not silently.
    assert!(
        error_event(&datas).is_some(),
        "no error event after the upstream broke: {body}"
    );
    assert!(!body.contains(PROVIDER_KEY));
}

/// The upstream ends a pass-through stream cleanly mid-answer (no `finish_reason`, no `[DONE]`):
/// the client is told by the same error event as on the translated paths (then `[DONE]`), the
/// attempt counts as failed, and the answer is not cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_ending_cleanly_mid_answer_ends_with_error_event() {
    // The role chunk and two words, then a clean end: "c d" and the finish chunk never come.
    let (up, gw) = cut_after(3).await;
    let (body, datas) = read_stream(&gw, "a b c d", "a cut stream must end").await;
    assert_eq!(joined_content(&datas), "a b ", "{body}");
    let err = error_event(&datas).unwrap_or_else(|| panic!("no error event: {body}"));
    assert_eq!(err["error"]["type"], "upstream_error", "{err}");
    assert_eq!(
        err["error"]["message"], "the upstream stream ended before the message was complete",
        "{err}"
    );
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{body}");
    let failed = metric_sum(
        &gw,
        "ai_gateway_upstream_attempts_total",
        &["provider=\"fake\"", "outcome=\"protocol_error\""],
    )
    .await;
    assert_eq!(failed, 1.0, "the cut stream is a failed attempt");
    // Not cached: the same request goes upstream again (and now completes).
    assert_again(&gw, "a b c d", "MISS").await;
    assert_eq!(up.request_count(), 2);
    let ok = metric_sum(
        &gw,
        "ai_gateway_upstream_attempts_total",
        &["provider=\"fake\"", "outcome=\"success\""],
    )
    .await;
    assert_eq!(ok, 1.0);
}

/// A stream whose last chunk has its `finish_reason` is complete even when the upstream sends
/// no `[DONE]`: the gateway adds it, counts a success and caches the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_stream_without_done_is_complete() {
    // role, "a ", "b ", "c", the finish chunk; no [DONE].
    let (up, gw) = cut_after(5).await;
    let (body, _) = read_stream(&gw, "a b c", "the stream must end").await;
    check_openai_stream(&body, "a b c", false);
    assert_eq!(
        metric_sum(
            &gw,
            "ai_gateway_upstream_attempts_total",
            &["outcome=\"protocol_error\""]
        )
        .await,
        0.0
    );
    assert_again(&gw, "a b c", "HIT").await;
    assert_eq!(up.request_count(), 1);
}

/// A gateway with the cache on, whose upstream ends its next stream cleanly after `frames`.
async fn cut_after(frames: usize) -> (FakeUpstream, Gateway) {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::Cut(frames)]);
    let mut cfg = basic_config(Some(&up));
    cfg["cache"] = json!({"enabled": true});
    let gw = Gateway::start(cfg).await;
    (up, gw)
}

/// POST a streamed chat of `text` for `gpt-test`.
async fn post_stream(gw: &Gateway, text: &str) -> reqwest::Response {
    gw.post(
        "/v1/chat/completions",
        Some(GW_KEY),
        &stream_body("gpt-test", text, false),
    )
    .await
}

/// The same streamed chat of `text` again: complete, with this `x-cache`.
async fn assert_again(gw: &Gateway, text: &str, cache: &str) {
    let r = post_stream(gw, text).await;
    assert_eq!(header(&r, "x-cache"), Some(cache));
    check_openai_stream(&r.text().await.unwrap(), text, false);
}

/// POST a streamed chat of `text` to `gw` and read its whole SSE body (`why` it must end within
/// 15 s): the body and its `data:` payloads.
async fn read_stream(gw: &Gateway, text: &str, why: &str) -> (String, Vec<String>) {
    let r = post_stream(gw, text).await;
    assert_sse(&r);
    let body = tokio::time::timeout(Duration::from_secs(15), r.text())
        .await
        .unwrap_or_else(|_| panic!("{why}"))
        .unwrap_or_default();
    let datas = sse_data(&body);
    (body, datas)
}

/// The first `data:` payload that is an error object.
fn error_event(datas: &[String]) -> Option<Value> {
    datas
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some())
}

/// Starts a stream whose upstream sends two frames then stalls, under `request_timeout: 1s`;
/// returns the error event the client got at the deadline.
async fn stream_until_deadline() -> Value {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::Gated(2)]);
    let mut cfg = basic_config(Some(&up));
    cfg["server"] = json!({"request_timeout": "1s"});
    let gw = Gateway::start(cfg).await;
    let (body, datas) = read_stream(&gw, "x y z", "the deadline must end the stream").await;
    assert!(joined_content(&datas).starts_with('x'), "{body}");
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{body}");
    error_event(&datas).unwrap_or_else(|| panic!("no error event at the deadline: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_request_deadline() {
    let err = stream_until_deadline().await;
    assert!(err["error"]["message"].is_string(), "{err}");
}

/// The per-attempt idle timeout is clamped to the time left before the deadline, so both fire
/// together and the idle timeout often wins: the client is told `upstream_error` ("no data for
/// 999ms mid-stream") instead of `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_request_deadline_says_timeout() {
    for _ in 0..5 {
        let err = stream_until_deadline().await;
        assert_eq!(err["error"]["type"], "timeout", "{err}");
    }
}
