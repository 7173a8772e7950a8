//! One client connection: its socket with the head and idle timers ([`ConnIo`]), the service
//! that counts its requests in flight ([`ConnService`]), and the signals the accept loop sends it
//! (shed, drain) through [`Conn`].
//!
//! The timers live in the socket's read path, so they cost nothing per request beyond two clock
//! reads: a connection is, by its requests in flight and the bytes it reads,
//! - *awaiting a head* (from the accept, and on HTTP/1 from the first byte of each next request):
//!   the head must be complete (the service called) within `server.header_read_timeout`;
//! - *busy* (a request in flight, its answer not finished): no timer of ours (the request has its
//!   own deadline);
//! - *idle* (no request in flight, no byte of a next head): closed after `server.idle_timeout`.
//!
//! The timer is re-armed lazily: it fires at most `min(header_read_timeout, idle_timeout)` after
//! it was armed, and only then is the real deadline of the phase worked out (and the connection
//! closed, or the timer moved on). A request never resets it, nor polls it once it waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Response, Version, header};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What the accept loop can tell a connection (bits of [`Conn::signals`]).
pub const SHED: u8 = 1;
pub const DRAIN: u8 = 2;
/// Set by the socket when the protocol is known (HTTP/1 or HTTP/2).
const DECIDED: u8 = 4;

const PROTO_UNKNOWN: u8 = 0;
const PROTO_H1: u8 = 1;
const PROTO_H2: u8 = 2;

/// The HTTP/2 connection preface (hyper-util's auto builder tells the protocols apart by it).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's task, its socket and its requests share.
#[derive(Default)]
pub struct Conn {
    /// Requests whose answer has not finished (an HTTP/2 connection may have several).
    active: AtomicU32,
    proto: AtomicU8,
    signals: AtomicU8,
    /// The connection task's waker, for [`Conn::signal`].
    task: AtomicWaker,
    /// Whether the gateway is draining (shared by every connection).
    draining: Arc<AtomicBool>,
}

impl Conn {
    pub fn new(draining: Arc<AtomicBool>) -> Self {
        Self {
            draining,
            ..Self::default()
        }
    }

    /// Whether a request is in flight.
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0
    }

    /// Tell the connection's task (shed it, or drain it).
    pub fn signal(&self, bit: u8) {
        self.signals.fetch_or(bit, Ordering::SeqCst);
        self.task.wake();
    }

    fn proto_known(&self) -> bool {
        self.proto.load(Ordering::SeqCst) != PROTO_UNKNOWN
    }
}

/// Resolves when `conn` has signals other than `seen`; gives them all. It registers the task's
/// waker only when `registered` says it is not (a connection's task keeps its waker; a wake
/// consumes the registration), so polling it with every poll of the connection costs a load.
pub struct Signals<'a> {
    pub conn: &'a Conn,
    pub seen: u8,
    pub registered: &'a mut bool,
}

impl Future for Signals<'_> {
    type Output = u8;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        let this = self.get_mut();
        if !*this.registered {
            this.conn.task.register(cx.waker());
            *this.registered = true;
        }
        let now = this.conn.signals.load(Ordering::SeqCst);
        if now & !this.seen != 0 {
            // The wake that told us (if any) took the registration.
            *this.registered = false;
            Poll::Ready(now)
        } else {
            Poll::Pending
        }
    }
}

/// Whether a connection told to drain can be shut down gracefully now: hyper-util's
/// `graceful_shutdown` before the protocol is known drops the connection unread, so a connection
/// accepted just before (or during) the drain is first let to send its request.
pub fn can_shut_down(conn: &Conn) -> bool {
    conn.proto_known()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Busy,
    Idle,
}

/// The connection's timeouts (read from the configuration when it is accepted).
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// The client socket with the head and idle timers in its read path.
pub struct ConnIo {
    io: TcpStream,
    // Boxed: hyper wants the socket `Unpin` (one allocation per connection).
    timer: Pin<Box<Sleep>>,
    conn: Arc<Conn>,
    timeouts: Timeouts,
    phase: Phase,
    // When the phase (awaiting a head, or idle) started.
    since: Instant,
    // Bytes of the HTTP/2 preface matched so far, until the protocol is known.
    preface: u8,
    // The timer was polled since it was last set: it holds the connection task's waker (the same
    // for the connection's life), so until it fires it needs no polling.
    timer_waits: bool,
    // Bytes read already and handed back to be read again (`server::h1` hands a connection to
    // hyper with what it read of it).
    replay: Bytes,
}

impl ConnIo {
    pub fn new(io: TcpStream, conn: Arc<Conn>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            io,
            timer: Box::pin(tokio::time::sleep_until(now + cadence(timeouts))),
            conn,
            timeouts,
            phase: Phase::Head,
            since: now,
            preface: 0,
            timer_waits: false,
            replay: Bytes::new(),
        }
    }

    /// Have `read` (bytes read from this socket already) read again before the socket.
    pub fn replay(&mut self, read: Bytes) {
        self.replay = read;
    }

    /// The connection's `server.idle_timeout`.
    pub fn idle_timeout(&self) -> Duration {
        self.timeouts.idle
    }

    /// An answer has ended and no request is in flight: the idle timer runs from now (the
    /// server's own HTTP/1 path says so; under hyper the next read finds out).
    pub fn answered(&mut self) {
        if self.conn.is_idle() {
            self.phase = Phase::Idle;
            self.since = Instant::now();
        }
    }
}

/// How far ahead the timer is ever armed: no phase's deadline is missed by waiting that long.
fn cadence(t: Timeouts) -> Duration {
    t.header_read.min(t.idle)
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(this.replay.get(..n).unwrap_or_default());
            bytes::Buf::advance(&mut this.replay, n);
            return Poll::Ready(Ok(()));
        }
        // Busy <-> idle from the requests in flight.
        let busy = !this.conn.is_idle();
        match (this.phase, busy) {
            (Phase::Busy, false) => {
                this.phase = Phase::Idle;
                this.since = Instant::now();
            }
            (Phase::Head | Phase::Idle, true) => this.phase = Phase::Busy,
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().get(before..).unwrap_or_default();
                if !read.is_empty() {
                    if this.preface < 24 {
                        detect_protocol(&this.conn, &mut this.preface, read);
                    }
                    // On HTTP/1 the first byte after an idle spell starts the next head (on
                    // HTTP/2 bytes between requests are frames such as pings).
                    if this.phase == Phase::Idle
                        && this.conn.proto.load(Ordering::Relaxed) == PROTO_H1
                    {
                        this.phase = Phase::Head;
                        this.since = Instant::now();
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.timer_waits && !this.timer.is_elapsed() => Poll::Pending,
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    this.timer_waits = true;
                    return Poll::Pending;
                }
                let now = Instant::now();
                let deadline = match this.phase {
                    Phase::Head => Some((
                        this.since + this.timeouts.header_read,
                        "no complete request head within server.header_read_timeout",
                    )),
                    Phase::Idle => Some((
                        this.since + this.timeouts.idle,
                        "idle for server.idle_timeout",
                    )),
                    Phase::Busy => None,
                };
                let next = now + cadence(this.timeouts);
                match deadline {
                    Some((at, why)) if at <= now => {
                        tracing::debug!(reason = why, "closing a client connection");
                        return Poll::Ready(Err(timed_out(why)));
                    }
                    Some((at, _)) => this.timer.as_mut().reset(at.min(next)),
                    None => this.timer.as_mut().reset(next),
                }
            },
        }
    }
}

/// Match the first bytes read against the HTTP/2 preface, as hyper-util's auto builder does;
/// once the protocol is known, a connection told to drain can be shut down gracefully.
fn detect_protocol(conn: &Conn, matched: &mut u8, read: &[u8]) {
    let mut proto = PROTO_UNKNOWN;
    for &b in read {
        if H2_PREFACE.get(usize::from(*matched)) == Some(&b) {
            *matched += 1;
            if usize::from(*matched) == H2_PREFACE.len() {
                proto = PROTO_H2;
                break;
            }
        } else {
            proto = PROTO_H1;
            *matched = 24;
            break;
        }
    }
    if proto != PROTO_UNKNOWN {
        conn.proto.store(proto, Ordering::SeqCst);
        if conn.signals.load(Ordering::SeqCst) & DRAIN != 0 {
            conn.signal(DECIDED);
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Counts one request in flight until its answer's body ends or is dropped.
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The application service of one connection: each request is counted in flight until its
/// answer ends, and while the gateway drains, HTTP/1 answers say `connection: close`.
#[derive(Clone)]
pub struct ConnService<S> {
    pub app: S,
    pub conn: Arc<Conn>,
    /// The client's address, handed to the requests that need it (see [`Peer`]).
    pub peer: std::net::SocketAddr,
}

/// The address of the client a request came from, in the extensions of the requests under
/// `/ui/` only (the console's sign-in throttle): the others do not pay for it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl<S> hyper::service::Service<Request<hyper::body::Incoming>> for ConnService<S>
where
    S: super::App,
{
    type Response = Response<Counted>;
    type Error = std::convert::Infallible;
    type Future = Answer<tower::util::Oneshot<S, Request<axum::body::Body>>>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.begin();
        let http1 = req.version() != Version::HTTP_2;
        let mut answer = self.answer(req.map(axum::body::Body::new), in_flight, http1);
        answer.by_hyper = true;
        answer
    }
}

impl<S> ConnService<S>
where
    S: super::App,
{
    /// A request is in flight from now until its answer ends.
    pub fn begin(&self) -> InFlight {
        self.conn.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.conn.clone())
    }

    /// The application's answer to `req` (begun with [`ConnService::begin`]).
    pub fn answer(
        &self,
        mut req: Request<axum::body::Body>,
        in_flight: InFlight,
        http1: bool,
    ) -> Answer<tower::util::Oneshot<S, Request<axum::body::Body>>> {
        if req.uri().path().starts_with("/ui/") {
            req.extensions_mut().insert(Peer(self.peer));
        }
        Answer {
            inner: tower::ServiceExt::oneshot(self.app.clone(), req),
            in_flight: Some(in_flight),
            http1,
            by_hyper: false,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a [`ConnService`]: the application's, with its body counted in flight.
    pub struct Answer<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        // To say `connection: close` while draining (HTTP/2 has no such header).
        http1: bool,
        // Written by hyper, which reads only the header map: the gateway's own headers
        // (`headers::OwnHeaders`) are moved into it. `server::h1` writes them itself.
        by_hyper: bool,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<axum::body::Body>, std::convert::Infallible>>,
{
    type Output = Result<Response<Counted>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = std::task::ready!(this.inner.poll(cx));
        if *this.by_hyper {
            crate::headers::OwnHeaders::into_map(&mut resp);
        }
        let in_flight = this.in_flight.take();
        if *this.http1
            && in_flight
                .as_ref()
                .is_some_and(|f| f.0.draining.load(Ordering::Relaxed))
        {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|inner| Counted {
            inner,
            _in_flight: in_flight,
        })))
    }
}

/// An answer's body, counted in flight until it ends or is dropped. Its size is the inner
/// body's (so a whole answer keeps its `content-length`).
pub struct Counted {
    inner: axum::body::Body,
    _in_flight: Option<InFlight>,
}

#[cfg(test)]
impl Counted {
    /// A body counted in flight by nothing (for tests of the writing path).
    pub fn uncounted(inner: axum::body::Body) -> Self {
        Self {
            inner,
            _in_flight: None,
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(bytes: &[&[u8]]) -> u8 {
        let conn = Conn::default();
        let mut matched = 0;
        for b in bytes {
            if matched < 24 {
                detect_protocol(&conn, &mut matched, b);
            }
        }
        conn.proto.load(Ordering::SeqCst)
    }

    #[test]
    fn tells_http1_from_http2_as_bytes_arrive() {
        assert_eq!(decided(&[b"GET / HTTP/1.1\r\n"]), PROTO_H1);
        assert_eq!(decided(&[b"P", b"OST /v1"]), PROTO_H1);
        assert_eq!(decided(&[b"P"]), PROTO_UNKNOWN);
        assert_eq!(
            decided(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]),
            PROTO_H2
        );
        assert_eq!(
            decided(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12"]),
            PROTO_H2
        );
    }

    #[test]
    fn the_timer_is_never_armed_past_a_phase_deadline() {
        let t = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        assert_eq!(cadence(t), Duration::from_secs(10));
        let t = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(3),
        };
        assert_eq!(cadence(t), Duration::from_secs(3));
    }
}
