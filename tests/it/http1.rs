//! HTTP/1.1 on the wire (the gateway's own path for common requests, hyper for the rest; see
//! `src/server/h1.rs`): pipelined requests across the hand-off, heads and bodies that arrive a
//! byte at a time, `connection: close`, what hyper still answers (HTTP/1.0, HEAD, `expect`,
//! chunked and large bodies, a malformed head), and the framing and `date` of answers.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

/// Everything the gateway sends on `s` until it closes it (bounded: the test fails after 10 s).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("the gateway closes the connection within 10 s")
            .unwrap_or(0);
        if n == 0 {
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The status codes of the answers in `wire`, in order.
fn statuses(wire: &str) -> Vec<u16> {
    wire.match_indices("HTTP/1.")
        .filter_map(|(i, _)| wire[i..].split(' ').nth(1)?.parse().ok())
        .collect()
}

fn chat_request(body: &str, extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         authorization: Bearer {GW_KEY}\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn chat_json(text: &str) -> String {
    json!({"model": "mock", "messages": [{"role": "user", "content": text}]}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_off_to_hyper() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = chat_json("pipelined");
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         authorization: Bearer {GW_KEY}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let wire = format!(
        "GET /health HTTP/1.1\r\nhost: gw\r\n\r\n{}{chunked}GET /nope HTTP/1.1\r\nhost: gw\r\n\
         connection: close\r\n\r\n",
        chat_request(&body, "")
    );
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(wire.as_bytes()).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(statuses(&got), vec![200, 200, 200, 404], "{got}");
    assert_eq!(got.matches("\"content\":\"pipelined\"").count(), 2, "{got}");
    assert!(got.contains("connection: close"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_a_byte_at_a_time_is_served_and_close_closes() {
    let gw = Gateway::start(basic_config(None)).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    let wire = chat_request(&chat_json("slowly"), "connection: close\r\n");
    for b in wire.as_bytes() {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let got = read_to_close(&mut s).await;
    assert_eq!(statuses(&got), vec![200], "{got}");
    assert!(got.contains("\"content\":\"slowly\""), "{got}");
    let head = got.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(head.contains("\r\ncontent-length: "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_this_path_does_not_serve_are_answered_by_hyper_as_before() {
    let gw = Gateway::start(basic_config(None)).await;
    let addr = gw.addr();
    let exchange = |wire: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&wire).await.unwrap();
            read_to_close(&mut s).await
        }
    };
    // HTTP/1.0 (closes after the answer).
    let got = exchange(b"GET /health HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!(statuses(&got), vec![200], "{got}");
    // HEAD: the head only.
    let got =
        exchange(b"HEAD /health HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(statuses(&got), vec![200], "{got}");
    assert!(got.ends_with("\r\n\r\n"), "{got}");
    // expect: 100-continue.
    let body = chat_json("continued");
    let got =
        exchange(chat_request(&body, "expect: 100-continue\r\nconnection: close\r\n").into()).await;
    assert_eq!(statuses(&got), vec![100, 200], "{got}");
    assert!(got.contains("\"content\":\"continued\""), "{got}");
    // A malformed head: 400.
    let got = exchange(b"GET /health HTTP/1.1\r\nbad header\r\n\r\n".to_vec()).await;
    assert_eq!(statuses(&got), vec![400], "{got}");
    // Two content-lengths: 400.
    let got = exchange(
        b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"
            .to_vec(),
    )
    .await;
    assert_eq!(statuses(&got), vec![400], "{got}");
    // A body larger than this path reads whole (1 MiB): served through hyper.
    let big = chat_json(&"x".repeat(1_500_000));
    let got = exchange(chat_request(&big, "connection: close\r\n").into()).await;
    assert_eq!(statuses(&got), vec![200], "{}", &got[..got.len().min(400)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_chunked_and_a_kept_alive_connection_serves_on() {
    let gw = Gateway::start(basic_config(None)).await;
    let client = client();
    for text in ["one stream", "another stream"] {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .json(&json!({"model": "mock", "stream": true,
                "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "transfer-encoding"), Some("chunked"));
        assert!(header(&r, "date").is_some());
        let body = r.text().await.unwrap();
        let datas = sse_data(&body);
        assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{body}");
        assert_eq!(joined_content(&datas), text);
    }
    assert_eq!(
        metric_sum_reaching(&gw, "ai_gateway_requests_total", &["status=\"200\""], 2.0).await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_is_cut_off_after_the_idle_timeout() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"header_read_timeout": "1s", "idle_timeout": "2s"});
    let gw = Gateway::start(cfg).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    // The head and 2 of the 40 bytes the body is said to have; then nothing.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {GW_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 40\r\n\r\n{{\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let got = read_to_close(&mut s).await;
    let open_for = started.elapsed();
    assert!(got.is_empty(), "{got}");
    // Past the head timeout (the head was whole), at the idle timeout, well before 10 s.
    assert!(
        open_for >= Duration::from_millis(1800) && open_for < Duration::from_secs(8),
        "closed after {open_for:?}"
    );
    assert_eq!(gw.chat("mock", "still serving").await.status(), 200);
}
