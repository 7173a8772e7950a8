use super::answer::{Framing, encode_head, format_hex};
use super::*;
use axum::http::{StatusCode, header};

fn head(wire: &[u8]) -> Head {
    match parse(wire) {
        Parsed::Head(h) => h,
        Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(wire)),
        Parsed::Other => panic!("other: {}", String::from_utf8_lossy(wire)),
    }
}

fn is_other(wire: &[u8]) -> bool {
    matches!(parse(wire), Parsed::Other)
}

#[test]
fn common_heads_are_served_here_and_split_into_request_and_body() {
    let wire = b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\
                 Connection: keep-alive, Close\r\nX-Custom: a b\r\n\r\n{}GET";
    let h = head(wire);
    assert_eq!(h.body, 2);
    assert!(h.close);
    let mut buf = BytesMut::from(&wire[..]);
    let req = request_of(&h, &mut buf).expect("a request");
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/v1/chat/completions");
    assert_eq!(req.uri().query(), Some("x=1"));
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "gw");
    assert_eq!(req.headers()["x-custom"], "a b");
    assert_eq!(req.headers().len(), 4);
    assert_eq!(
        hyper::body::Body::size_hint(req.body()).exact(),
        Some(2),
        "the body is the two bytes after the head"
    );
    // The next request's first bytes stay.
    assert_eq!(&buf[..], b"GET");
}

#[test]
fn partial_heads_wait_and_everything_unusual_goes_to_hyper() {
    assert!(matches!(parse(b""), Parsed::Partial));
    assert!(matches!(
        parse(b"GET /health HTTP/1.1\r\nho"),
        Parsed::Partial
    ));
    assert!(matches!(
        parse(b"PRI * HTTP/2.0\r\n"),
        Parsed::Other | Parsed::Partial
    ));
    for wire in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"CONNECT gw:443 HTTP/1.1\r\n\r\n",
        b"GET http://gw/ HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 2000000\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
    ] {
        assert!(is_other(wire), "{}", String::from_utf8_lossy(wire));
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(is_other(&many));
    let mut long = b"GET / HTTP/1.1\r\nx: ".to_vec();
    long.resize(MAX_HEAD + 1, b'a');
    assert!(is_other(&long), "a head longer than MAX_HEAD");
}

#[test]
fn a_value_http_refuses_leaves_the_bytes_for_hyper() {
    let wire = b"GET / HTTP/1.1\r\nx: \x7f\r\n\r\nrest";
    if let Parsed::Head(h) = parse(wire) {
        let mut buf = BytesMut::from(&wire[..]);
        assert!(request_of(&h, &mut buf).is_none());
        assert_eq!(&buf[..], &wire[..], "every byte is handed on");
    }
}

fn encoded(status: u16, headers: &[(&str, &str)], exact: Option<u64>, close: bool) -> String {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let status = StatusCode::from_u16(status).unwrap();
    let (out, _, _) = encode_head(status, &map, None, exact, close);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn answers_are_framed_by_length_or_chunks_and_dated() {
    let h = encoded(
        200,
        &[("content-type", "application/json")],
        Some(12),
        false,
    );
    assert!(h.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"));
    assert!(h.contains("\r\ncontent-length: 12\r\n"), "{h}");
    assert!(h.contains("\r\ndate: "), "{h}");
    assert!(h.ends_with("\r\n\r\n"));
    let h = encoded(200, &[("content-type", "text/event-stream")], None, false);
    assert!(h.contains("\r\ntransfer-encoding: chunked\r\n"), "{h}");
    assert!(!h.contains("content-length"), "{h}");
    let h = encoded(200, &[("content-length", "5")], None, true);
    assert_eq!(h.matches("content-length").count(), 1, "{h}");
    assert!(h.contains("\r\nconnection: close\r\n"), "{h}");
    let h = encoded(204, &[], Some(0), false);
    assert!(h.starts_with("HTTP/1.1 204 No Content\r\n"), "{h}");
    assert!(
        !h.contains("content-length") && !h.contains("chunked"),
        "{h}"
    );
    let h = encoded(200, &[("date", "then")], Some(0), false);
    assert_eq!(h.matches("date:").count(), 1, "{h}");
    let (_, framing, closes) = encode_head(
        StatusCode::OK,
        &HeaderMap::from_iter([(header::CONNECTION, HeaderValue::from_static("close"))]),
        None,
        None,
        false,
    );
    assert!(framing == Framing::Chunked && closes);
}

#[test]
fn the_gateways_own_headers_follow_the_map() {
    let mut resp = axum::http::Response::new(());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let own = crate::headers::OwnHeaders::on(&mut resp);
    own.set(
        crate::headers::X_REQUEST_ID,
        HeaderValue::from_static("req_1"),
    );
    own.set(crate::headers::X_CACHE, HeaderValue::from_static("MISS"));
    let (out, framing, _) = encode_head(
        StatusCode::OK,
        resp.headers(),
        crate::headers::OwnHeaders::of(&resp),
        Some(2),
        false,
    );
    let h = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        h.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_1\r\nx-cache: MISS\r\ncontent-length: 2\r\n"
        ),
        "{h}"
    );
    assert!(framing == Framing::Length);
    // Where hyper writes the answer, they are moved into the map.
    crate::headers::OwnHeaders::into_map(&mut resp);
    assert_eq!(resp.headers()["x-request-id"], "req_1");
    assert_eq!(resp.headers()["x-cache"], "MISS");
    assert!(crate::headers::OwnHeaders::of(&resp).is_none());
}

#[test]
fn chunk_sizes_are_lowercase_hex() {
    for (n, want) in [
        (0, "0\r\n"),
        (9, "9\r\n"),
        (255, "ff\r\n"),
        (4096, "1000\r\n"),
    ] {
        let mut out = [0u8; 18];
        let len = format_hex(n, &mut out);
        assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), want);
    }
    let mut out = [0u8; 18];
    let len = format_hex(usize::MAX, &mut out);
    assert_eq!(len, 18);
}

#[test]
fn a_head_is_parsed_again_only_when_its_end_may_have_come() {
    let wire = b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n";
    let end = wire.len();
    // The blank line spread over the last reads is seen from where the last parse stopped.
    for scanned in [end - 4, end - 3, end - 2, end - 1] {
        assert!(may_end_head(wire, scanned), "{scanned}");
    }
    assert!(!may_end_head(&wire[..end - 2], 5));
    assert!(may_end_head(b"GET / HTTP/1.1\n\n", 12));
    assert!(!may_end_head(b"GET / HTTP/1.1\r\nhost: gw\r\n", 3));
}

/// A connected socket pair: the client's end, and the server's as a [`ConnIo`].
async fn socket_pair() -> (tokio::net::TcpStream, ConnIo) {
    use super::super::conn::Timeouts;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let timeouts = Timeouts {
        header_read: std::time::Duration::from_secs(10),
        idle: std::time::Duration::from_secs(10),
    };
    let io = ConnIo::new(server, std::sync::Arc::new(Conn::default()), timeouts);
    (client, io)
}

#[tokio::test]
async fn a_head_after_the_watch_is_read_in_one_call() {
    use tokio::io::AsyncWriteExt;
    let (mut client, mut io) = socket_pair().await;
    let head = [b'a'; 400];
    client.write_all(&head).await.unwrap();
    // The watch while an answer went left a 64-byte buffer, empty.
    let mut buf = BytesMut::with_capacity(64);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let n = std::future::poll_fn(|cx| poll_fill(&mut io, &mut buf, (1024, 1024), cx))
        .await
        .unwrap();
    assert_eq!(n, 400, "the whole head in one read, not 64 bytes of it");
}

/// What `relay` puts on the wire for `frames` (all ready at once) under `framing`.
async fn relayed(frames: Vec<Bytes>, framing: Framing) -> Vec<u8> {
    use super::super::conn::Counted;
    use tokio::io::AsyncReadExt;
    let (mut client, mut io) = socket_pair().await;
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
    let mut body = Counted::uncounted(Body::from_stream(stream));
    let mut buf = BytesMut::new();
    let head = BytesMut::from(&b"HEAD\r\n\r\n"[..]);
    assert!(super::answer::relay(&mut io, &mut buf, &mut body, head, framing).await);
    drop(io);
    let mut wire = Vec::new();
    client.read_to_end(&mut wire).await.unwrap();
    wire
}

#[tokio::test]
async fn frames_ready_together_are_framed_in_order_small_ones_copied_large_ones_not() {
    let big = Bytes::from(vec![b'x'; 5000]);
    let frames = vec![
        Bytes::from_static(b"data: a\n\n"),
        Bytes::new(),
        Bytes::from_static(b"data: bb\n\n"),
        big.clone(),
        Bytes::from_static(b"c"),
    ];
    let mut want = b"HEAD\r\n\r\n9\r\ndata: a\n\n\r\na\r\ndata: bb\n\n\r\n1388\r\n".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\n1\r\nc\r\n0\r\n\r\n");
    assert_eq!(relayed(frames.clone(), Framing::Chunked).await, want);
    let mut want = b"HEAD\r\n\r\ndata: a\n\ndata: bb\n\n".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"c");
    assert_eq!(relayed(frames.clone(), Framing::Length).await, want);
    assert_eq!(relayed(frames, Framing::None).await, b"HEAD\r\n\r\n");
}

#[tokio::test]
async fn the_watch_of_a_quiet_socket_holds_no_buffer_and_keeps_what_comes() {
    use std::task::Poll;
    use tokio::io::AsyncWriteExt;
    let (mut client, mut io) = socket_pair().await;
    let mut buf = BytesMut::new();
    let once = |io: &mut ConnIo, buf: &mut BytesMut| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        poll_watch(io, buf, &mut cx)
    };
    assert!(once(&mut io, &mut buf).is_pending());
    assert_eq!(
        buf.capacity(),
        0,
        "a quiet client's watch allocated a buffer"
    );
    // A pipelined request's first bytes are kept.
    client.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(once(&mut io, &mut buf).is_pending());
    assert_eq!(&buf[..], b"GET /health HTTP/1.1\r\n");
    // The client's close ends the watch.
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(matches!(once(&mut io, &mut buf), Poll::Ready(Ok(()))));
    assert_eq!(&buf[..], b"GET /health HTTP/1.1\r\n");
}
