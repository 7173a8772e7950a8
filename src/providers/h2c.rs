//! The connections of one plain-`http://` provider configured with `http2: true`: HTTP/2
//! without TLS (h2c, "prior knowledge": the client starts with HTTP/2's preface, no upgrade),
//! made with hyper's own client connection (`hyper::client::conn::http2`).
//!
//! Many requests share one connection as HTTP/2 streams, so a stream held open for minutes (a
//! slow streamed answer) costs the state of one stream, not a socket with its own buffers and
//! task as over HTTP/1.1. A connection takes streams up to the limit the server announced
//! (`SETTINGS_MAX_CONCURRENT_STREAMS`); when every open connection is at its limit, one more is
//! made (one at a time). A connection the server closed (or sent `GOAWAY` on) is dropped from
//! the list, and a request it could not take is sent on another.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::http::SendError;
use super::pool::{PooledBody, plain_host_port, tcp};
use crate::error::error_chain;

/// Streams one connection takes at most, whatever the server allows (100 is the least HTTP/2
/// recommends a server to allow, RFC 9113 §6.5.2).
const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// Pings on a connection with streams open, to find a dead peer without waiting for the OS.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The HTTP/2 connections of one provider.
pub struct H2c {
    host: String,
    port: u16,
    connect_timeout: Duration,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is made, so that a burst of requests makes one, not one each.
    connecting: tokio::sync::Mutex<()>,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Streams open on it: sent and not yet read to the end (or dropped).
    streams: AtomicUsize,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` as last seen by the connection's
    /// dispatching task (h2 reads the frames in a task of its own, so this may lag; a stream
    /// over the server's limit waits in h2's queue for a free one).
    limit: Arc<AtomicUsize>,
}

impl Conn {
    fn has_room(&self) -> bool {
        let limit = self
            .limit
            .load(Ordering::Acquire)
            .clamp(1, MAX_STREAMS_PER_CONNECTION);
        !self.sender.is_closed() && self.streams.load(Ordering::Acquire) < limit
    }
}

impl H2c {
    /// The connections for `uri`, a plain `http://` base URL with no user information; `None`
    /// for any other URL.
    pub fn for_url(uri: &Uri, connect_timeout: Duration) -> Option<Arc<H2c>> {
        let (host, port) = plain_host_port(uri)?;
        Some(Arc::new(H2c {
            host,
            port,
            connect_timeout,
            conns: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
        }))
    }

    fn conns(&self) -> MutexGuard<'_, Vec<Arc<Conn>>> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An open connection with room for one more stream, counted as taken; closed
    /// connections are dropped on the way.
    fn with_room(&self) -> Option<Arc<Conn>> {
        let mut conns = self.conns();
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns.iter().find(|c| c.has_room())?;
        conn.streams.fetch_add(1, Ordering::AcqRel);
        Some(Arc::clone(conn))
    }

    /// A connection with room, made when none has.
    async fn take(&self) -> Result<Arc<Conn>, SendError> {
        if let Some(c) = self.with_room() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        // Another request may have made one meanwhile.
        if let Some(c) = self.with_room() {
            return Ok(c);
        }
        let (sender, limit) = self.connect().await?;
        let conn = Arc::new(Conn {
            sender,
            streams: AtomicUsize::new(1),
            limit,
        });
        self.conns().push(Arc::clone(&conn));
        Ok(conn)
    }

    /// A new connection, and the server's stream limit, read each time the connection's
    /// dispatching task runs (h2's default, 100, until the server's settings have been seen).
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Arc<AtomicUsize>), SendError> {
        let tcp = tcp(&self.host, self.port, self.connect_timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| SendError {
                connect: true,
                message: error_chain(&e),
            })?;
        let limit = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let seen = Arc::clone(&limit);
        crate::tasks::service(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                seen.store(conn.current_max_send_streams(), Ordering::Release);
                polled
            })
            .await;
            if let Err(e) = ended {
                tracing::debug!(error = %error_chain(&e), "upstream HTTP/2 connection closed");
            }
        });
        Ok((sender, limit))
    }

    /// POST `body` to `uri` (under this provider's base URL) with `headers`; the answer's head,
    /// its body still to read. A request a connection could not take (it was closing) goes on
    /// another: it was not sent.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        // HTTP/2 takes the scheme and authority from the URI (`:scheme`, `:authority`).
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers;
        // A closing connection gives the request back; a few tries, then it is an error.
        for _ in 0..3 {
            let conn = self.take().await?;
            let stream = Stream(Arc::clone(&conn));
            let mut sender = conn.sender.clone();
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|inner| PooledBody::over_h2(inner, stream)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        return Err(SendError {
                            connect: false,
                            message: error_chain(e.error()),
                        });
                    }
                },
            }
        }
        Err(SendError {
            connect: true,
            message: "the upstream's HTTP/2 connections kept closing".into(),
        })
    }

    /// Open connections (for tests).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.conns()
            .iter()
            .filter(|c| !c.sender.is_closed())
            .count()
    }
}

/// One stream counted on its connection, until dropped.
pub(super) struct Stream(Arc<Conn>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use tokio::net::TcpListener;

    /// An h2c server (hyper's, prior knowledge) answering every request with its path, allowing
    /// `max_streams` streams per connection; it counts connections. Answers to `/slow` wait
    /// until `release` is notified.
    async fn server(
        max_streams: u32,
        release: Arc<tokio::sync::Notify>,
    ) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        crate::tasks::service(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let release = release.clone();
                crate::tasks::service(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let release = release.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/slow" {
                                release.notified().await;
                            }
                            let text = format!("{path} {}", body.len());
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(max_streams)
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}").parse().unwrap(), conns)
    }

    fn at(base: &Uri, path: &str) -> Uri {
        format!("{base}{}", path.trim_start_matches('/'))
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn requests_share_one_connection_as_streams() {
        let (base, conns) = server(100, Arc::new(tokio::sync::Notify::new())).await;
        let h2 = H2c::for_url(&base, Duration::from_secs(2)).unwrap();
        let mut answers = Vec::new();
        for i in 0..20 {
            let h2 = h2.clone();
            let uri = at(&base, &format!("/v1/x{i}"));
            answers.push(crate::tasks::service(async move {
                let resp = h2
                    .post(&uri, HeaderMap::new(), Bytes::from_static(b"{}"))
                    .await
                    .unwrap();
                assert_eq!(resp.version(), http::Version::HTTP_2);
                resp.into_body().collect().await.unwrap().to_bytes()
            }));
        }
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.await.unwrap(), format!("/v1/x{i} 2"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(h2.open(), 1);
    }

    #[tokio::test]
    async fn a_full_connection_makes_another() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (base, conns) = server(1000, release.clone()).await;
        let h2 = H2c::for_url(&base, Duration::from_secs(2)).unwrap();
        // 250 streams held open, at most 100 a connection: three connections.
        let mut held = Vec::new();
        for _ in 0..250 {
            let h2 = h2.clone();
            let uri = at(&base, "/slow");
            held.push(crate::tasks::service(async move {
                let resp = h2.post(&uri, HeaderMap::new(), Bytes::new()).await;
                let body = resp.unwrap().into_body().collect().await;
                body.unwrap().to_bytes()
            }));
        }
        for _ in 0..1000 {
            let streams: usize = h2
                .conns()
                .iter()
                .map(|c| c.streams.load(Ordering::SeqCst))
                .sum();
            if streams == 250 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
        assert_eq!(h2.open(), 3);
        for h in held {
            while !h.is_finished() {
                release.notify_waiters();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(h.await.unwrap(), "/slow 0");
        }
        // Every stream ended: the counts are back to zero, a new request needs no new connection.
        let streams: usize = h2
            .conns()
            .iter()
            .map(|c| c.streams.load(Ordering::SeqCst))
            .sum();
        assert_eq!(streams, 0);
        let again = h2
            .post(&at(&base, "/v1/y"), HeaderMap::new(), Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            again.into_body().collect().await.unwrap().to_bytes(),
            "/v1/y 0"
        );
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_server_that_speaks_only_http1_is_an_error_not_a_hang() {
        // An HTTP/1.1 server answers the HTTP/2 preface with 400 and closes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        crate::tasks::service(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                crate::tasks::service(async move {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        let uri: Uri = format!("http://{addr}/v1/x").parse().unwrap();
        let h2 = H2c::for_url(&uri, Duration::from_secs(2)).unwrap();
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            h2.post(&uri, HeaderMap::new(), Bytes::new()),
        )
        .await
        .expect("no hang");
        assert!(sent.is_err());
    }

    #[test]
    fn only_plain_urls_without_credentials() {
        let t = Duration::from_secs(1);
        let p = |s: &str| H2c::for_url(&s.parse().unwrap(), t);
        assert!(p("http://[::1]:8000/v1").is_some_and(|p| p.host == "::1" && p.port == 8000));
        assert!(p("https://api.openai.com/v1").is_none());
        assert!(p("http://user:pw@example.com/v1").is_none());
    }
}
