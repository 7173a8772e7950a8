//! Client connections: `server.header_read_timeout` (a slow head is cut off, on the first request
//! and on the next one of a kept-alive connection), `server.idle_timeout` (HTTP/1.1 and h2c),
//! `server.max_connections` (the next connection waits, then is served), and running out of
//! descriptors (the oldest idle connections are shed; service goes on).

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n";

/// Read one HTTP/1.1 answer with a `content-length` from `s` (bounded); its status.
async fn read_answer(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
                return status.expect("status line");
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a whole answer: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How long until the gateway closes `s` (EOF or reset), at most `within`; `None` if still open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(started + within, s.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_off_after_the_header_read_timeout() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"header_read_timeout": "2s"});
    let gw = Gateway::start(cfg).await;
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer x\r\n";
    let mut slow = Vec::new();
    for _ in 0..20 {
        let addr = gw.addr();
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            // One header byte a second, until the gateway closes the connection.
            for b in head {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                if closed_within(&mut s, Duration::from_secs(1))
                    .await
                    .is_some()
                {
                    break;
                }
            }
            started.elapsed()
        }));
    }
    for t in slow {
        let open_for = t.await.unwrap();
        // 2 s, plus generous slack; the whole head would take over a minute.
        assert!(
            open_for < Duration::from_secs(10),
            "a slow head was still open after {open_for:?}"
        );
    }
    assert_eq!(gw.chat("mock", "still serving").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_timed_by_idle_timeout_not_the_head_timeout() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"header_read_timeout": "1s", "idle_timeout": "4s"});
    let gw = Gateway::start(cfg).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    assert_eq!(read_answer(&mut s).await, 200);
    // Idle for twice the head timeout: still open (idle_timeout is 4 s)...
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(HEALTH).await.unwrap();
    assert_eq!(
        read_answer(&mut s).await,
        200,
        "the idle keep-alive connection was closed by the head timeout"
    );
    // ...and closed after the idle timeout.
    let closed = closed_within(&mut s, Duration::from_secs(12)).await;
    assert!(
        closed.is_some(),
        "an idle connection was still open after 12 s"
    );
    // The next request on a kept-alive connection has the head timeout too.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    assert_eq!(read_answer(&mut s).await, 200);
    s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let closed = closed_within(&mut s, Duration::from_secs(8)).await;
    assert!(
        closed.is_some(),
        "a second head left unfinished was not cut off"
    );
}

/// An h2c (prior knowledge) connection: hyper's client, whose connection future ends when the
/// gateway closes the connection.
async fn h2c(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_have_the_head_and_idle_timeouts_too() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"header_read_timeout": "1s", "idle_timeout": "3s"});
    let gw = Gateway::start(cfg).await;
    // A request, then idle: closed after the idle timeout.
    let (mut send, conn) = h2c(&gw).await;
    let req = hyper::Request::get(gw.url("/health"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("h2c request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    drop(resp);
    tokio::time::timeout(Duration::from_secs(12), conn)
        .await
        .expect("an idle h2c connection was still open after 12 s")
        .unwrap();
    // No request at all after the preface: closed after the head timeout.
    let (_send, conn) = h2c(&gw).await;
    tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("an h2c connection that never sent a request was still open after 8 s")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_the_next_one_waits_then_is_served() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"max_connections": 2});
    let gw = Gateway::start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        assert_eq!(read_answer(&mut s).await, 200);
        held.push(s);
    }
    // The third connection is made by the kernel but not taken: no answer while two are open.
    let mut third = TcpStream::connect(gw.addr()).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.peek(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served with max_connections: 2"
    );
    // One closes: the third is served.
    drop(held.pop());
    assert_eq!(read_answer(&mut third).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_oldest_idle_connections_are_shed_and_service_goes_on() {
    let mut cfg = basic_config(None);
    // Long enough that only shedding can free the half-open connections during the test.
    cfg["server"] = json!({"header_read_timeout": "120s"});
    let gw = Gateway::start_with_open_files(cfg, 256).await;
    let mut half_open = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
            .await
            .unwrap();
        half_open.push(s);
    }
    let r = tokio::time::timeout(Duration::from_secs(30), gw.chat("mock", "still serving"))
        .await
        .expect("no answer within 30 s with 300 half-open connections and 256 descriptors");
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "still serving"
    );
    gw.wait_log("closing the oldest idle connections").await;
    drop(half_open);
    assert_eq!(gw.get("/health", None).await.status(), 200);
}
