//! The connections of one plain-`http://` provider: HTTP/1.1 connections made with hyper's own
//! client connection (`hyper::client::conn::http1`), kept open and reused here.
//!
//! Plain HTTP is how self-hosted OpenAI-compatible servers (vLLM, Ollama, llama.cpp, a sidecar)
//! are reached, and how the bench reaches its mock. hyper-util's pooled `Client`, used for
//! `https://` (TLS, HTTP/2 by ALPN), spends per request on top of hyper's connection (figures in
//! docs/benchmarks.md, "What changed what") for what a provider does not need: pool keys hashed with SipHash on check-out and
//! check-in, a connecting-or-idle race between futures, the request's URI rebuilt into origin
//! form, and a task spawned per request to wait for the connection to become ready again.
//! Here a provider has one base URL, so one host: its idle connections are a stack behind a
//! mutex that is held for a push or a pop, the newest connection is used first (its socket and
//! buffers are the likeliest to be warm), and a connection goes back when its answer's body has
//! been read to the end. HTTP itself (framing, chunked bodies, keep-alive, closing) stays
//! hyper's.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::http::SendError;
use crate::error::error_chain;

/// Idle connections of one provider, newest last.
pub struct Pool {
    /// Where to connect: the base URL's host (without IPv6 brackets) and port.
    host: String,
    port: u16,
    /// The `host` header: the base URL's authority as written.
    host_header: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<VecDeque<Idle>>,
    /// Whether a task is closing the connections left idle past the timeout.
    sweeping: AtomicBool,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl Pool {
    /// The pool for `uri`, a plain `http://` base URL with no user information; `None` for any
    /// other URL (those go through hyper-util's client).
    pub fn for_url(
        uri: &Uri,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Option<Arc<Pool>> {
        let (host, port) = plain_host_port(uri)?;
        let host_header = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
        Some(Arc::new(Pool {
            host,
            port,
            host_header,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
            sweeping: AtomicBool::new(false),
        }))
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest idle connection that is still open and not past the idle timeout.
    fn take(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle();
        while let Some(i) = idle.pop_back() {
            if i.since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if !i.sender.is_closed() {
                return Some(i.sender);
            }
        }
        None
    }

    /// Give back a connection whose last answer was read to the end.
    fn put(self: &Arc<Self>, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        {
            let mut idle = self.idle();
            self.evict(&mut idle, now);
            if idle.len() >= self.max_idle {
                idle.pop_front();
            }
            idle.push_back(Idle { sender, since: now });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            self.sweep_later();
        }
    }

    /// Drop the oldest connections while they are closed or past the idle timeout.
    fn evict(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while let Some(oldest) = idle.front() {
            if oldest.sender.is_closed() || now.duration_since(oldest.since) >= self.idle_timeout {
                idle.pop_front();
            } else {
                break;
            }
        }
    }

    /// Close idle connections once past the timeout even when no request comes to take them:
    /// a task per pool, while the pool has idle connections (it ends with the pool, which a
    /// configuration reload drops).
    fn sweep_later(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = self.idle_timeout;
        crate::tasks::service_on(&rt, async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                let left = {
                    let mut idle = pool.idle();
                    pool.evict(&mut idle, Instant::now());
                    idle.len()
                };
                if left == 0 {
                    pool.sweeping.store(false, Ordering::Release);
                    // A connection given back since the count was taken found the flag set.
                    if pool.idle().is_empty() || pool.sweeping.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }

    /// Number of idle connections (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let tcp = tcp(&self.host, self.port, self.connect_timeout).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| SendError {
                connect: true,
                message: error_chain(&e),
            })?;
        crate::tasks::service(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %error_chain(&e), "upstream connection closed");
            }
        });
        Ok(sender)
    }

    /// POST `body` to `uri`'s path on this pool's host (every URL of a provider is under its
    /// base URL) with `headers`; the answer's head, its body still to read. A request that an
    /// idle connection could not take (it closed meanwhile) goes on the next one, or on a new
    /// connection: it was not sent. The addresses a host name resolves to are tried in turn
    /// (tokio's `TcpStream::connect`), all within the connect timeout.
    pub async fn post(
        self: &Arc<Self>,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = origin_form(uri);
        *req.headers_mut() = headers;
        req.headers_mut()
            .entry(HOST)
            .or_insert_with(|| self.host_header.clone());
        loop {
            let (mut sender, reused) = match self.take() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if reused && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let pool = Arc::clone(self);
                    return Ok(resp.map(|inner| PooledBody {
                        inner,
                        back: Back::Http1(Some((sender, pool))),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    unsent => {
                        return Err(SendError {
                            connect: unsent.is_some(),
                            message: error_chain(e.error()),
                        });
                    }
                },
            }
        }
    }
}

/// The host (without IPv6 brackets) and port of `uri`, a plain `http://` URL with no user
/// information; `None` for any other URL (those go through hyper-util's client).
pub(super) fn plain_host_port(uri: &Uri) -> Option<(String, u16)> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some((host.to_owned(), authority.port_u16().unwrap_or(80)))
}

/// A TCP connection to `host:port` (each address it resolves to in turn, all within
/// `connect_timeout`), with `TCP_NODELAY`.
pub(super) async fn tcp(
    host: &str,
    port: u16,
    connect_timeout: Duration,
) -> Result<tokio::net::TcpStream, SendError> {
    let connect_error = |message: String| SendError {
        connect: true,
        message,
    };
    let tcp = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| {
        connect_error(format!(
            "tcp connect error: no connection within {}ms",
            connect_timeout.as_millis()
        ))
    })?
    .map_err(|e| connect_error(format!("tcp connect error: {e}")))?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an upstream connection");
    }
    Ok(tcp)
}

/// `uri`'s path and query, the request target of HTTP/1.1 to an origin server.
fn origin_form(uri: &Uri) -> Uri {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

/// An answer's body from one of our own connections. Over HTTP/1.1 it gives its connection
/// back to the pool once read to the end (dropped before the end, the connection goes with it:
/// hyper closes it); over HTTP/2 ([`super::h2c`]) its stream counts on its connection until
/// dropped.
pub struct PooledBody {
    inner: Incoming,
    back: Back,
}

enum Back {
    Http1(Option<(SendRequest<Full<Bytes>>, Arc<Pool>)>),
    Http2(#[expect(dead_code, reason = "held for its Drop")] super::h2c::Stream),
}

impl PooledBody {
    /// An HTTP/2 answer's body, holding its stream's place on the connection.
    pub(super) fn over_h2(inner: Incoming, stream: super::h2c::Stream) -> Self {
        PooledBody {
            inner,
            back: Back::Http2(stream),
        }
    }

    fn give_back(&mut self) {
        if let Back::Http1(back) = &mut self.back
            && let Some((sender, pool)) = back.take()
        {
            pool.put(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => {
                if let Back::Http1(back) = &mut self.back {
                    *back = None;
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to the end without the final poll (a reader may stop at `is_end_stream`).
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    async fn call(pool: &Arc<Pool>, uri: &Uri) -> Bytes {
        let resp = pool
            .post(uri, HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let (uri, conns) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let pool = pool(&uri);
        for _ in 0..5 {
            assert_eq!(call(&pool, &uri).await, "hello");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn chunked_answers_are_read_whole_and_the_connection_reused() {
        let (uri, conns) = server(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        )
        .await;
        let pool = pool(&uri);
        for _ in 0..3 {
            assert_eq!(call(&pool, &uri).await, "hello");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_takes_its_connection_with_it() {
        let (uri, conns) =
            server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n").await;
        let pool = pool(&uri);
        for _ in 0..2 {
            let resp = pool
                .post(&uri, HeaderMap::new(), Bytes::from_static(b"{}"))
                .await
                .unwrap();
            drop(resp);
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_closing_answer_is_not_pooled() {
        let (uri, conns) =
            server(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = pool(&uri);
        for _ in 0..3 {
            assert_eq!(call(&pool, &uri).await, "ok");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
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
            // Time for the connection's task to see the close.
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
            .post(&uri, HeaderMap::new(), Bytes::new())
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
            origin_form(&u).to_string(),
            "/openai/deployments/d/chat/completions?api-version=1"
        );
        assert_eq!(origin_form(&"http://h:1".parse().unwrap()).to_string(), "/");
    }
}
