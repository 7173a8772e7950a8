//! Bad input: malformed bodies, wrong types, oversized bodies and headers, unknown models and
//! endpoints; and `x-request-id` handling. After all of it the process still serves.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chat_bodies_are_400() {
    let gw = Gateway::start(basic_config(None)).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "malformed JSON",
            b"{\"model\": \"mock\", \"messages\": [".to_vec(),
        ),
        ("not an object", b"[1, 2, 3]".to_vec()),
        ("empty body", Vec::new()),
        (
            "stream is a string",
            br#"{"model":"mock","stream":"yes","messages":[{"role":"user","content":"x"}]}"#
                .to_vec(),
        ),
        (
            "messages is a string",
            br#"{"model":"mock","messages":"x"}"#.to_vec(),
        ),
        (
            "model is a number",
            br#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        ),
        (
            "missing model",
            br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        ),
        ("missing messages", br#"{"model":"mock"}"#.to_vec()),
        (
            "empty messages",
            br#"{"model":"mock","messages":[]}"#.to_vec(),
        ),
        (
            "n is a string",
            br#"{"model":"mock","n":"two","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        ),
        (
            "bad role",
            br#"{"model":"mock","messages":[{"role":"robot","content":"x"}]}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"model\":\"mock\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"
                .to_vec(),
        ),
    ];
    for (what, body) in cases {
        let r = gw
            .post_raw("/v1/chat/completions", Some(GW_KEY), body)
            .await;
        let status = r.status().as_u16();
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        assert_eq!(status, 400, "{what}");
        assert!(!e["message"].as_str().unwrap().is_empty(), "{what}");
    }
    let r = gw.get("/health", None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_embeddings_bodies_are_400() {
    let gw = Gateway::start(basic_config(None)).await;
    for body in [
        b"{nope".to_vec(),
        br#"{"model":"mock","max_tokens":5,"messages":"x"}"#.to_vec(),
        br#"{"model":"mock","messages":[{"role":"user","content":"x"}]}"#.to_vec(), // no max_tokens
        br#"{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        b"{\"model\":\"mock\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}".to_vec(),
    ] {
        let r = gw.post_raw("/v1/messages", Some(GW_KEY), body).await;
        assert_anthropic_error(r, 400, "invalid_request_error").await;
    }
    for body in [
        b"{nope".to_vec(),
        br#"{"model":"mock"}"#.to_vec(),
        br#"{"model":"mock","input":5}"#.to_vec(),
        br#"{"input":"x"}"#.to_vec(),
        br#"{"model":"mock","input":"x","encoding_format":"hex"}"#.to_vec(),
    ] {
        let r = gw.post_raw("/v1/embeddings", Some(GW_KEY), body).await;
        assert_openai_error(r, 400, "invalid_request_error", None).await;
    }
}

fn addr_of(gw: &Gateway) -> String {
    gw.url("").trim_start_matches("http://").to_owned()
}

/// POST `body` with a content-length, raw; asserts the 413 in OpenAI's shape.
async fn assert_413_raw(gw: &Gateway, path: &str, body: Vec<u8>, chunked: bool) {
    let (head, body) = if chunked {
        let mut enc = Vec::with_capacity(body.len() + 1024);
        for piece in body.chunks(64 * 1024) {
            enc.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            enc.extend_from_slice(piece);
            enc.extend_from_slice(b"\r\n");
        }
        enc.extend_from_slice(b"0\r\n\r\n");
        (
            format!(
                "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {GW_KEY}\r\n\
                 content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            ),
            enc,
        )
    } else {
        (
            format!(
                "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {GW_KEY}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            ),
            body,
        )
    };
    let (status, _headers, body) = raw_request(&addr_of(gw), head, body).await;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_configured_max_is_413() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"max_body_size": "1MiB"});
    let gw = Gateway::start(cfg).await;
    let big = serde_json::to_vec(&chat_body("mock", &"x".repeat(2 * 1024 * 1024))).unwrap();
    // With a content-length, and chunked without one.
    assert_413_raw(&gw, "/v1/chat/completions", big.clone(), false).await;
    assert_413_raw(&gw, "/v1/chat/completions", big.clone(), true).await;
    assert_413_raw(&gw, "/v1/embeddings", big, false).await;
    // Just under the limit is fine.
    let ok = chat_body("mock", &"y ".repeat(400 * 1024));
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &ok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(gw.get("/health", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_default_10mib_is_413() {
    let gw = Gateway::start(basic_config(None)).await;
    let big = "z".repeat(11 * 1024 * 1024);
    let chat = serde_json::to_vec(&chat_body("mock", &big)).unwrap();
    assert_413_raw(&gw, "/v1/chat/completions", chat.clone(), false).await;
    assert_413_raw(&gw, "/v1/chat/completions", chat, true).await;
    let emb = serde_json::to_vec(&json!({"model": "mock", "input": big})).unwrap();
    assert_413_raw(&gw, "/v1/embeddings", emb, false).await;
    assert_eq!(gw.get("/health", None).await.status(), 200);
}

/// An ordinary client (reqwest, like the SDKs' HTTP stacks) uploads the whole body before it
/// reads the answer. The gateway answers 413 early and closes without draining the upload, so the
/// client often gets a broken pipe / connection reset instead of the 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_upload_by_ordinary_client_gets_413() {
    let gw = Gateway::start(basic_config(None)).await;
    let big = "z".repeat(11 * 1024 * 1024);
    for _ in 0..5 {
        let r = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .json(&chat_body("mock", &big))
            .send()
            .await
            .expect("the client gets an answer, not a broken connection");
        assert_openai_error(r, 413, "invalid_request_error", Some("request_too_large")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_404() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw.chat("gpt-nonexistent", "hi").await;
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let e = assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    assert!(
        e["message"].as_str().unwrap().contains("gpt-nonexistent"),
        "{e}"
    );
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "nope", "input": "x"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let r = gw
        .post("/v1/messages", Some(GW_KEY), &messages_body("nope", "hi"))
        .await;
    assert_anthropic_error(r, 404, "not_found_error").await;
}

/// `content` that is neither a string, null nor an array of content parts is refused with a 400
/// naming the message (and the part), on both chat APIs; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_content_is_400_naming_the_message() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let nested = json!({"model": "gpt-test", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [[{"type": "text", "text": "nested"}]]}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &nested).await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("messages[2].content[0]: "), "{e}");
    for (content, at) in [
        (json!([{"text": "no type"}]), "messages[0].content[0]: "),
        (
            json!([{"type": "text", "text": "x"}, {"type": 3}]),
            "messages[0].content[1]: ",
        ),
        (json!(7), "messages[0].content: "),
        (
            json!({"type": "text", "text": "x"}),
            "messages[0].content: ",
        ),
    ] {
        let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": content}]});
        let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        assert!(e["message"].as_str().unwrap().starts_with(at), "{e}");
    }
    let body = json!({"model": "gpt-test", "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [["x"]]}]});
    let r = gw.post("/v1/messages", Some(GW_KEY), &body).await;
    let e = assert_anthropic_error(r, 400, "invalid_request_error").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("messages.1.content[0]: "),
        "{e}"
    );
    assert_eq!(up.request_count(), 0, "a malformed request went upstream");
    // Parts of every kind still pass.
    let ok = json!({"model": "gpt-test", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "fine"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    assert_eq!(
        gw.post("/v1/chat/completions", Some(GW_KEY), &ok)
            .await
            .status(),
        200
    );
}

/// A model name echoed in an error is clipped to 128 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_model_name_is_clipped_in_the_error() {
    let gw = Gateway::start(basic_config(None)).await;
    let name = format!("gpt-{}", "x".repeat(5000));
    let r = gw.chat(&name, "hi").await;
    let e = assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("\"{}…\"", &name[..128])), "{msg}");
    assert!(msg.len() < 400, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoint_is_404() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw.get("/v1/nothing-here", Some(GW_KEY)).await;
    assert_eq!(r.status(), 404);
    let v = json_of(r).await;
    assert!(v["error"]["message"].is_string(), "{v}");
}

/// The model calls are served off the router (`app::HttpService`) for POST only: other methods
/// and near-miss paths still get the router's answers, with the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_call_paths_answer_other_methods_and_near_misses_as_the_router() {
    let gw = Gateway::start(basic_config(None)).await;
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"] {
        let r = gw.get(path, Some(GW_KEY)).await;
        assert_eq!(r.status(), 405, "GET {path}");
        assert!(header(&r, "x-request-id").is_some(), "GET {path}");
    }
    let r = gw
        .post(
            "/v1/chat/completions/",
            Some(GW_KEY),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert!(json_of(r).await["error"]["message"].is_string());
    let r = gw
        .post(
            "/v1/chat/completions?x=1",
            Some(GW_KEY),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200, "a query string does not change the path");
}

/// Sends a request with one header of `size` bytes; the status, or `None` when the connection
/// was closed instead.
async fn with_huge_header(gw: &Gateway, size: usize) -> Option<u16> {
    gw.client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-huge", "a".repeat(size))
        .json(&chat_body("mock", "hi"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_header_is_refused_and_the_process_still_serves() {
    let gw = Gateway::start(basic_config(None)).await;
    if let Some(s) = with_huge_header(&gw, 1024 * 1024).await {
        assert!(
            (400..500).contains(&s),
            "a 1 MiB header must be refused with a 4xx, got {s}"
        );
    }
    let r = gw.chat("mock", "still here").await;
    assert_eq!(r.status(), 200);
    assert_eq!(gw.get("/health", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_of_200kb_is_431() {
    let gw = Gateway::start(basic_config(None)).await;
    if let Some(s) = with_huge_header(&gw, 200 * 1024).await {
        assert!(
            (400..500).contains(&s),
            "a 200 KB header must be refused with a 4xx (431), got {s}"
        );
    }
    assert_eq!(gw.get("/health", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bad_requests_then_health_is_200() {
    let gw = Gateway::start(basic_config(None)).await;
    let client = gw.client();
    for i in 0..30u32 {
        let body: Vec<u8> = match i % 5 {
            0 => b"\x00\x01\x02".to_vec(),
            1 => b"{\"model\":".to_vec(),
            2 => vec![b'['; 10_000],
            3 => {
                br#"{"model":"mock","messages":[{"role":"user","content":{"deep":[[[[[[]]]]]]}}]}"#
                    .to_vec()
            }
            _ => b"null".to_vec(),
        };
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "case {i}");
    }
    assert_eq!(gw.get("/health", None).await.status(), 200);
    let r = gw.chat("mock", "ok").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_kept_generated_or_replaced() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let send = |id: Option<String>| {
        let mut rb = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .json(&chat_body("gpt-test", "hi"));
        if let Some(id) = id {
            rb = rb.header("x-request-id", id);
        }
        rb.send()
    };

    // Given: kept, echoed, and in the access log.
    let given = "client-req-0123456789abcdef";
    let r = send(Some(given.to_owned())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), Some(given));
    gw.wait_log(given).await;

    // Absent: generated, non-empty, different each time.
    let r1 = send(None).await.unwrap();
    let r2 = send(None).await.unwrap();
    let id1 = header(&r1, "x-request-id").unwrap().to_owned();
    let id2 = header(&r2, "x-request-id").unwrap().to_owned();
    assert!(!id1.is_empty() && id1.len() <= 128 && id1.bytes().all(|b| b.is_ascii_graphic()));
    assert_ne!(id1, id2);

    // Invalid (over 128 chars, or with spaces): replaced by a generated one.
    let long = "x".repeat(129);
    let r = send(Some(long.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let got = header(&r, "x-request-id").unwrap();
    assert_ne!(got, long);
    assert!(!got.is_empty() && got.len() <= 128);
    let r = send(Some("has spaces in it".to_owned())).await.unwrap();
    let got = header(&r, "x-request-id").unwrap();
    assert_ne!(got, "has spaces in it");
    assert!(got.bytes().all(|b| b.is_ascii_graphic()));

    // Exactly 128 visible chars is kept.
    let max = "y".repeat(128);
    let r = send(Some(max.clone())).await.unwrap();
    assert_eq!(header(&r, "x-request-id"), Some(max.as_str()));

    // Error answers carry it too.
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "err-req-1")
        .json(&chat_body("gpt-test", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-request-id"), Some("err-req-1"));
}

/// A body that arrives in many chunked frames is put together whole (one frame is used as it
/// came; a second one starts a buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_many_chunks_is_read_whole() {
    let gw = Gateway::start(basic_config(None)).await;
    let text = "many small pieces of one request body";
    let body = serde_json::to_vec(&chat_body("mock", text)).unwrap();
    let mut enc = Vec::new();
    for piece in body.chunks(7) {
        enc.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        enc.extend_from_slice(piece);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {GW_KEY}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let (status, _headers, answer) = raw_request(&addr_of(&gw), head, enc).await;
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], text);
}
