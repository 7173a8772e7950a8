//! HTTP/1.1 served by the gateway itself for the requests nearly every client sends, and handed to
//! hyper (with the bytes read so far) for everything else.
//!
//! This path serves a request whose head is HTTP/1.1 with a method among GET, POST, PUT, PATCH,
//! DELETE and OPTIONS, an origin-form target, at most [`MAX_HEADERS`] headers within [`MAX_HEAD`]
//! bytes, and a body given by one `content-length` of at most [`MAX_INLINE_BODY`] bytes (or
//! none); no `transfer-encoding`, `expect` or `upgrade`. Anything else (HTTP/2's preface,
//! HTTP/1.0, HEAD, a chunked or large body, a malformed head) ends this path: the connection is
//! given to hyper-util's auto builder, which reads the same bytes again and serves the rest of the
//! connection's life (or answers 400/431 as it always did).
//!
//! Why: hyper's server keeps a read buffer of 8-16 KiB and its connection state per connection,
//! and most of a proxied request's instructions outside the gateway's own work. Here:
//! - the read buffer is allocated when bytes are awaited, sized by the connection's last request,
//!   and let go once a request is taken out of it, so a connection relaying a slow stream holds
//!   no buffer of its own; the socket is watched through a read onto the stack, and only bytes
//!   that come then (a pipelined request) are given a buffer;
//! - the head's names and values are slices of the bytes read (no copy), the body is a slice
//!   too, and an answer's head and whole body leave in one vectored write;
//! - while a request runs and while its answer streams, the socket is watched: the client's
//!   close (EOF or error) drops the request (the upstream call is cancelled), bytes of a
//!   pipelined next request are kept.
//!
//! Answers: `content-length` from the app or from an exact body size, else `transfer-encoding:
//! chunked`; no body for 204 and 304; `date` added when absent; `connection: close` when the
//! request asked for it (the connection then closes after the answer), as hyper does.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::App;
use super::conn::{Conn, ConnIo, ConnService, DRAIN, SHED, Signals};

mod answer;

/// Headers of a head served here (hyper's default limit; more: hyper answers 431).
const MAX_HEADERS: usize = 100;
/// Bytes of a head served here; a longer one goes to hyper (which allows up to ~400 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest body read whole before the request is handed to the application; a larger one
/// goes to hyper, which streams it.
pub const MAX_INLINE_BODY: usize = 1024 * 1024;
/// The smallest read buffer allocated to await a head.
const MIN_READ: usize = 1024;

/// How serving a connection here ended.
pub enum Outcome<S> {
    /// The connection is closed (or to be dropped).
    Closed,
    /// Hyper serves the rest: the socket (with the bytes read and not yet served to be read
    /// again, [`ConnIo::replay`]) and the service.
    HandOff(ConnIo, ConnService<S>),
}

/// What the connection's task has heard from the accept loop (see [`Signals`]).
#[derive(Default)]
pub struct Heard {
    pub seen: u8,
    pub registered: bool,
}

impl Heard {
    fn signals<'a>(&'a mut self, conn: &'a Conn) -> Signals<'a> {
        Signals {
            conn,
            seen: self.seen,
            registered: &mut self.registered,
        }
    }

    /// Take in the signals `s` (every one so far); whether the connection is to close now (shed).
    fn shed(&mut self, s: u8) -> bool {
        self.seen = s;
        s & SHED != 0
    }

    /// Whether the gateway told this connection to drain.
    fn draining(&self) -> bool {
        self.seen & DRAIN != 0
    }
}

/// A head this path serves, its names and values as ranges of the bytes read.
struct Head {
    len: usize,
    method: Method,
    target: (usize, usize),
    headers: Vec<((usize, usize), (usize, usize))>,
    body: usize,
    close: bool,
}

enum Parsed {
    Partial,
    /// Not for this path (hyper serves it).
    Other,
    Head(Head),
}

fn range_of(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    (start, start + part.len())
}

fn method_of(m: &str) -> Option<Method> {
    Some(match m {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Other,
    };
    if len > MAX_HEAD || req.version != Some(1) {
        return Parsed::Other;
    }
    let (Some(method), Some(path)) = (req.method.and_then(method_of), req.path) else {
        return Parsed::Other;
    };
    if !path.starts_with('/') {
        return Parsed::Other;
    }
    let mut body = None;
    let mut close = false;
    let mut ranges = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (n, body) {
                (Some(n), None) if n <= MAX_INLINE_BODY => body = Some(n),
                _ => return Parsed::Other,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        ranges.push((range_of(buf, name.as_bytes()), range_of(buf, h.value)));
    }
    Parsed::Head(Head {
        len,
        method,
        target: range_of(buf, path.as_bytes()),
        headers: ranges,
        body: body.unwrap_or(0),
        close,
    })
}

/// The request of `head`, taking its head and body out of `buf`; `None` (with `buf` as it was)
/// when a name, value or target does not make an `http` request (hyper then answers it).
fn request_of(head: &Head, buf: &mut BytesMut) -> Option<Request<Body>> {
    let bytes = buf.split_to(head.len).freeze();
    let built = build(head, &bytes);
    if built.is_none() {
        let mut whole = BytesMut::from(&bytes[..]);
        whole.extend_from_slice(buf);
        *buf = whole;
        return None;
    }
    let body = buf.split_to(head.body).freeze();
    let (parts, ()) = built?.into_parts();
    Some(Request::from_parts(parts, Body::from(body)))
}

fn build(head: &Head, bytes: &Bytes) -> Option<Request<()>> {
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for &((ns, ne), (vs, ve)) in &head.headers {
        let name = HeaderName::from_bytes(bytes.get(ns..ne)?).ok()?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(vs..ve)).ok()?;
        headers.append(name, value);
    }
    let uri = Uri::from_maybe_shared(bytes.slice(head.target.0..head.target.1)).ok()?;
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// Whether the bytes of `buf` after the first `scanned` may end a head (its blank line: a line
/// feed followed by another, or by CR LF).
fn may_end_head(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    let new = buf.get(from..).unwrap_or_default();
    memchr::memchr_iter(b'\n', new).any(|i| {
        let after = new.get(i + 1..).unwrap_or_default();
        after.starts_with(b"\n") || after.starts_with(b"\r\n")
    })
}

/// Read into `buf`, first growing it by `grow` when it has room for fewer than `room` bytes: how
/// many bytes (0: EOF).
fn poll_fill(
    io: &mut ConnIo,
    buf: &mut BytesMut,
    (room, grow): (usize, usize),
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < room {
        buf.reserve(grow);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Watch the socket while a request runs: ready with an error or 0 when the client closed;
/// bytes that arrive (a pipelined request) are kept in `buf`, up to [`MAX_HEAD`]. With no buffer
/// yet, the socket is read onto the stack: a client that sends nothing while its answer is made
/// (nearly every one) costs no buffer (it was an allocation, and a reallocation for the next
/// head, per request).
fn poll_watch(
    io: &mut ConnIo,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        if buf.len() >= MAX_HEAD {
            return Poll::Pending;
        }
        if buf.capacity() == 0 {
            // Read onto the stack first: only bytes that came are given a buffer.
            let mut first = [0u8; 64];
            let mut read = tokio::io::ReadBuf::new(&mut first);
            match std::task::ready!(tokio::io::AsyncRead::poll_read(
                Pin::new(&mut *io),
                cx,
                &mut read
            )) {
                Ok(()) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => buf.extend_from_slice(read.filled()),
                Err(e) => return Poll::Ready(Err(e)),
            }
            continue;
        }
        match std::task::ready!(poll_fill(io, buf, (1, 64), cx)) {
            Ok(0) => return Poll::Ready(Ok(())),
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Give the connection to hyper with the bytes read and not yet served.
fn hand_off<S>(mut io: ConnIo, read: BytesMut, svc: ConnService<S>) -> Outcome<S> {
    io.replay(read.freeze());
    Outcome::HandOff(io, svc)
}

/// Serve `io` until it closes, or until a request this path does not serve arrives.
pub async fn serve<S: App>(
    mut io: ConnIo,
    svc: ConnService<S>,
    conn: &Conn,
    heard: &mut Heard,
) -> Outcome<S> {
    let mut buf = BytesMut::new();
    let mut want = MIN_READ;
    let mut served = 0u64;
    loop {
        // A head. After a partial one, it is parsed again only once the bytes that came may
        // end it (a head trickling in is not parsed from its start at every read).
        let mut scanned = 0;
        let head = loop {
            let parsed = if scanned == 0 || may_end_head(&buf, scanned) {
                parse(&buf)
            } else if buf.len() > MAX_HEAD {
                Parsed::Other
            } else {
                Parsed::Partial
            };
            match parsed {
                Parsed::Head(h) => break h,
                Parsed::Other => return hand_off(io, buf, svc),
                Parsed::Partial => scanned = buf.len(),
            }
            if heard.draining() && buf.is_empty() && served > 0 {
                return Outcome::Closed;
            }
            // A new head gets a buffer of the last request's size (the watch while the last
            // answer went may have left a small one); a partial one grows when it is full.
            let room = if buf.is_empty() { want } else { 1 };
            let grow = want.max(buf.len());
            tokio::select! {
                biased;
                s = heard.signals(conn) => if heard.shed(s) {
                    return Outcome::Closed;
                },
                r = std::future::poll_fn(|cx| poll_fill(&mut io, &mut buf, (room, grow), cx)) => {
                    match r {
                        Ok(0) | Err(_) => return Outcome::Closed,
                        Ok(_) => {}
                    }
                }
            }
        };
        // Its body; the request is in flight from here (the head timer no longer runs).
        let in_flight = svc.begin();
        let whole = head.len + head.body;
        if buf.len() < whole {
            buf.reserve(whole - buf.len());
        }
        // A body that stops coming for `server.idle_timeout` closes the connection (under hyper
        // the application's read of it ran under the request's deadline; here it is read first).
        let stall = io.idle_timeout();
        while buf.len() < whole {
            let stalled = tokio::time::sleep(stall);
            tokio::select! {
                biased;
                s = heard.signals(conn) => if heard.shed(s) {
                    return Outcome::Closed;
                },
                r = std::future::poll_fn(|cx| { let rest = whole - buf.len(); poll_fill(&mut io, &mut buf, (rest, rest), cx) }) => {
                    match r {
                        Ok(0) | Err(_) => return Outcome::Closed,
                        Ok(_) => {}
                    }
                }
                () = stalled => {
                    tracing::debug!("closing a client connection: its body stopped for server.idle_timeout");
                    return Outcome::Closed;
                }
            }
        }
        want = whole.next_power_of_two().clamp(MIN_READ, MAX_HEAD);
        let close = head.close;
        let Some(req) = request_of(&head, &mut buf) else {
            drop(in_flight);
            return hand_off(io, buf, svc);
        };
        if buf.is_empty() {
            // Let the request own the bytes it was read into.
            buf = BytesMut::new();
        }
        // The answer, the socket watched meanwhile.
        let mut answer = std::pin::pin!(svc.answer(req, in_flight, true));
        let resp = loop {
            tokio::select! {
                biased;
                r = answer.as_mut() => break r,
                s = heard.signals(conn) => if heard.shed(s) {
                    return Outcome::Closed;
                },
                r = std::future::poll_fn(|cx| poll_watch(&mut io, &mut buf, cx)) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "client connection ended during a request");
                    }
                    return Outcome::Closed;
                }
            }
        };
        let Ok(resp) = resp;
        let (parts, mut body) = resp.into_parts();
        let exact = answer::body_exact(&body);
        let (head_bytes, framing, closes) = answer::encode_head(
            parts.status,
            &parts.headers,
            parts.extensions.get(),
            exact,
            close,
        );
        drop(parts);
        let ok = answer::relay(&mut io, &mut buf, &mut body, head_bytes, framing).await;
        drop(body);
        if !ok {
            return Outcome::Closed;
        }
        served += 1;
        io.answered();
        // Draining: the answer in flight has finished; an idle connection closes (as hyper's
        // graceful shutdown does).
        if closes || heard.draining() {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

#[cfg(test)]
mod tests;
