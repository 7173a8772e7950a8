//! The connections of one plain-`http://` provider: HTTP/1.1 connections spoken by the
//! request's own task ([`super::h1`]), kept open and reused here.
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
//! been read to the end, and is checked for the upstream's close when taken.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::h1;
use super::http::{Outgoing, SendError};
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
    conn: h1::Conn,
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
    fn take(&self) -> Option<h1::Conn> {
        let mut idle = self.idle();
        while let Some(i) = idle.pop_back() {
            if i.since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if i.conn.is_reusable() {
                return Some(i.conn);
            }
        }
        None
    }

    /// Give back a connection whose last answer was read to the end.
    pub(super) fn put(self: &Arc<Self>, conn: h1::Conn) {
        let now = Instant::now();
        {
            let mut idle = self.idle();
            self.evict(&mut idle, now);
            if idle.len() >= self.max_idle {
                idle.pop_front();
            }
            idle.push_back(Idle { conn, since: now });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            self.sweep_later();
        }
    }

    /// Drop the oldest connections while they are past the idle timeout (a connection the
    /// upstream closed is found out when taken).
    fn evict(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while let Some(oldest) = idle.front() {
            if now.duration_since(oldest.since) >= self.idle_timeout {
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

    /// POST `body` to `uri`'s path on this pool's host (every URL of a provider is under its
    /// base URL) with `headers`; the answer's head, its body still to read. A request that an
    /// idle connection could not take (its write failed: the upstream closed it meanwhile) goes
    /// on the next one, or on a new connection. The addresses a host name resolves to are tried
    /// in turn (tokio's `TcpStream::connect`), all within the connect timeout.
    pub async fn post(
        self: &Arc<Self>,
        uri: &Uri,
        headers: &Outgoing<'_>,
        body: Bytes,
    ) -> Result<Response<PooledBody>, SendError> {
        let path = origin_form(uri);
        loop {
            let (mut conn, reused) = match self.take() {
                Some(conn) => (conn, true),
                None => (
                    h1::Conn::new(tcp(&self.host, self.port, self.connect_timeout).await?),
                    false,
                ),
            };
            if let Err(e) = conn.send(path, headers, &self.host_header, &body).await {
                if reused {
                    continue;
                }
                // Not sent whole: as safe to try elsewhere as a failed connect.
                return Err(SendError {
                    connect: true,
                    message: error_chain(&e),
                });
            }
            return match conn.read_head().await {
                Ok(head) => {
                    let resp = head.into_response(conn, Arc::clone(self));
                    Ok(resp.map(|inner| PooledBody {
                        inner: Inner::Http1(inner),
                    }))
                }
                Err(e) => Err(SendError {
                    connect: false,
                    message: error_chain(&e),
                }),
            };
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
fn origin_form(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// An answer's body from one of our own connections. Over HTTP/1.1 it gives its connection
/// back to the pool once read to the end (dropped before the end, the connection goes with it);
/// over HTTP/2 ([`super::h2c`]) its stream counts on its connection until dropped.
pub struct PooledBody {
    inner: Inner,
}

enum Inner {
    Http1(h1::Body),
    Http2(
        Incoming,
        #[expect(dead_code, reason = "held for its Drop")] super::h2c::Stream,
    ),
}

impl PooledBody {
    /// The read buffer an HTTP/1.1 answer's connection holds now (`None` over HTTP/2).
    #[cfg(test)]
    pub(super) fn held_buffer(&self) -> Option<usize> {
        match &self.inner {
            Inner::Http1(b) => Some(b.held_buffer()),
            Inner::Http2(..) => None,
        }
    }

    /// An HTTP/2 answer's body, holding its stream's place on the connection.
    pub(super) fn over_h2(inner: Incoming, stream: super::h2c::Stream) -> Self {
        PooledBody {
            inner: Inner::Http2(inner, stream),
        }
    }
}

/// A body's error: the socket's or the answer's framing over HTTP/1.1, hyper's over HTTP/2.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Http1(#[from] std::io::Error),
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.inner {
            Inner::Http1(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::from))),
            Inner::Http2(b, _) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Http1(b) => b.is_end_stream(),
            Inner::Http2(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Http1(b) => b.size_hint(),
            Inner::Http2(b, _) => b.size_hint(),
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
