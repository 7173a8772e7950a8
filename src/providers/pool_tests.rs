//! Tests of the plain-HTTP pool: reuse, framing, closing, errors, against raw TCP servers.
use super::*;
use crate::providers::http::Outgoing;
use http::HeaderMap;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers each request on a connection with `answer`, and counts connections.
async fn server(answer: &'static [u8]) -> (Uri, Arc<std::sync::atomic::AtomicUsize>) {
    server_closing(answer, false).await
}

/// `server`, closing each connection after its first answer when `close` (without saying
/// so in the answer, as a server whose keep-alive timeout ran out does).
async fn server_closing(
    answer: &'static [u8],
    close: bool,
) -> (Uri, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = conns.clone();
    crate::tasks::service(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            crate::tasks::service(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    // One request per head plus its 2-byte body ("{}").
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        if seen.len() < end + 4 + 2 {
                            break;
                        }
                        seen.drain(..end + 4 + 2);
                        if sock.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/v1/x").parse().unwrap(), conns)
}

fn pool(uri: &Uri) -> Arc<Pool> {
    Pool::for_url(uri, Duration::from_secs(2), Duration::from_secs(90), 4).unwrap()
}

async fn post(pool: &Arc<Pool>, uri: &Uri) -> Result<Response<PooledBody>, SendError> {
    pool.post(
        uri,
        &Outgoing::new(&HeaderMap::new()),
        Bytes::from_static(b"{}"),
    )
    .await
}

async fn call(pool: &Arc<Pool>, uri: &Uri) -> Bytes {
    let resp = post(pool, uri).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// `n` calls, one after the other, to a [`server_closing`] answering `answer`: each call's body,
/// the connections the server took, the connections left idle in the pool.
async fn calls(answer: &'static [u8], close: bool, n: usize) -> (Vec<Bytes>, usize, usize) {
    let (uri, conns) = server_closing(answer, close).await;
    let pool = pool(&uri);
    let mut bodies = Vec::new();
    for _ in 0..n {
        bodies.push(call(&pool, &uri).await);
    }
    let conns = conns.load(std::sync::atomic::Ordering::SeqCst);
    (bodies, conns, pool.idle_count())
}

#[tokio::test]
async fn a_connection_is_reused_once_its_answer_was_read() {
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    let (bodies, conns, idle) = calls(ok, false, 5).await;
    assert!(bodies.iter().all(|b| b == "hello"), "{bodies:?}");
    assert_eq!((conns, idle), (1, 1));
}

#[tokio::test]
async fn a_read_that_empties_the_socket_spares_the_reuse_check_a_system_call() {
    let (uri, _) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let pool = pool(&uri);
    assert_eq!(call(&pool, &uri).await, "ok");
    let idle = pool.idle();
    let conn = &idle.back().unwrap().conn;
    assert!(conn.readiness_cleared());
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn chunked_answers_are_read_whole_and_the_connection_reused() {
    let chunked =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
    let (bodies, conns, _) = calls(chunked, false, 3).await;
    assert!(bodies.iter().all(|b| b == "hello"), "{bodies:?}");
    assert_eq!(conns, 1);
}

#[tokio::test]
async fn an_answer_dropped_unread_takes_its_connection_with_it() {
    let (uri, conns) =
        server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n").await;
    let pool = pool(&uri);
    for _ in 0..2 {
        let resp = post(&pool, &uri).await.unwrap();
        drop(resp);
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_stream_waiting_for_its_next_chunk_holds_no_read_buffer() {
    // Issue 28: an idle upstream stream costs no buffer (the next read allocates one).
    let (uri, _) =
        server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n").await;
    let pool = pool(&uri);
    let mut body = post(&pool, &uri).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "hel");
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
    assert_eq!(body.held_buffer(), Some(0));
}

#[tokio::test]
async fn interim_answers_are_skipped_and_chunk_extensions_and_trailers_read() {
    let (uri, conns) = server(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nx-a: 1\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    .await;
    let pool = pool(&uri);
    for _ in 0..2 {
        let resp = post(&pool, &uri).await.unwrap();
        assert_eq!(resp.status(), 200);
        // A successful answer's headers are read for its framing only (`h1::head_of`).
        assert!(resp.headers().is_empty());
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            "hello"
        );
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_error_answer_keeps_its_headers() {
    let (uri, _) = server(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nx-amzn-ErrorType: ThrottlingException\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await;
    let pool = pool(&uri);
    let resp = post(&pool, &uri).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-amzn-errortype"], "ThrottlingException");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "{}");
}

#[tokio::test]
async fn a_body_without_length_is_read_to_the_close_and_not_pooled() {
    let to_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nto the end";
    let (bodies, conns, idle) = calls(to_close, true, 2).await;
    assert!(bodies.iter().all(|b| b == "to the end"), "{bodies:?}");
    assert_eq!((conns, idle), (2, 0));
}

#[tokio::test]
async fn a_no_content_answer_has_an_empty_body_and_its_connection_is_reused() {
    let (bodies, conns, _) = calls(b"HTTP/1.1 204 No Content\r\n\r\n", false, 3).await;
    assert!(bodies.iter().all(|b| b.is_empty()), "{bodies:?}");
    assert_eq!(conns, 1);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_a_bad_head_too() {
    let (uri, _) = server_closing(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", true).await;
    let resp = post(&pool(&uri), &uri).await.unwrap();
    let err = resp.into_body().collect().await.err().unwrap();
    assert!(err.to_string().contains("closed before"), "{err}");

    let (uri, _) = server_closing(b"HTTP/1.1 abc\r\n\r\n", true).await;
    let err = post(&pool(&uri), &uri).await.err().unwrap();
    assert!(
        !err.connect && err.message.contains("invalid answer head"),
        "{}",
        err.message
    );

    let (uri, _) = server_closing(b"", true).await;
    let err = post(&pool(&uri), &uri).await.err().unwrap();
    assert!(
        !err.connect && err.message.contains("closed before"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_large_body_is_sent_whole() {
    // The server reads a head and a 2-byte body; this body is larger than one write and
    // the server is the test's own: the request is checked by the answer coming at all.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let big = Bytes::from(vec![b'x'; 200_000]);
    let want = big.len();
    crate::tasks::service(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                assert!(head.contains(&format!("content-length: {want}")), "{head}");
                if seen.len() - end - 4 == want {
                    break;
                }
            }
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let uri: Uri = format!("http://{addr}/v1/x").parse().unwrap();
    let resp = pool(&uri)
        .post(&uri, &Outgoing::new(&HeaderMap::new()), big)
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn a_closing_answer_is_not_pooled() {
    let closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    let (bodies, conns, _) = calls(closing, false, 3).await;
    assert!(bodies.iter().all(|b| b == "ok"), "{bodies:?}");
    assert_eq!(conns, 3);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let (uri, conns) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let idle = Duration::from_millis(50);
    let pool = Pool::for_url(&uri, Duration::from_secs(2), idle, 4).unwrap();
    assert_eq!(call(&pool, &uri).await, "ok");
    assert_eq!(pool.idle_count(), 1);
    // No request comes: the sweeper closes it (waited for, up to 10 s).
    for _ in 0..200 {
        if pool.idle_count() == 0 && !pool.sweeping.load(Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(idle).await;
    }
    assert_eq!(pool.idle_count(), 0);
    assert!(!pool.sweeping.load(Ordering::Acquire));
    // A new connection afterwards, and a sweeper again.
    assert_eq!(call(&pool, &uri).await, "ok");
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(pool.sweeping.load(Ordering::Acquire));
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    let (uri, conns) =
        server_closing(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let pool = pool(&uri);
    for _ in 0..3 {
        assert_eq!(call(&pool, &uri).await, "ok");
        // Time for the runtime to see the close (the socket turns readable).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri: Uri = format!("http://{}/v1/x", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let err = pool(&uri)
        .post(&uri, &Outgoing::new(&HeaderMap::new()), Bytes::new())
        .await
        .err()
        .unwrap();
    assert!(err.connect, "{}", err.message);
}

#[test]
fn only_plain_urls_without_credentials_are_pooled_here() {
    let t = Duration::from_secs(1);
    let p = |s: &str| Pool::for_url(&s.parse().unwrap(), t, t, 1);
    assert!(p("http://localhost:8000/v1").is_some());
    assert!(p("http://[::1]:8000/v1").is_some_and(|p| p.host == "::1" && p.port == 8000));
    assert!(p("http://example.com/v1").is_some_and(|p| p.port == 80));
    assert!(p("https://api.openai.com/v1").is_none());
    assert!(p("http://user:pw@example.com/v1").is_none());
}

#[test]
fn the_request_target_is_the_path_and_query() {
    let u: Uri = "http://h:1/openai/deployments/d/chat/completions?api-version=1"
        .parse()
        .unwrap();
    assert_eq!(
        origin_form(&u),
        "/openai/deployments/d/chat/completions?api-version=1"
    );
    assert_eq!(origin_form(&"http://h:1".parse().unwrap()), "/");
}
