//! HTTP/1.1 to a plain `http://` provider, spoken by the request's own task on one of
//! [`super::pool`]'s connections: the request written, the answer's head parsed (`httparse`),
//! its body read as the consumer polls it (`content-length`, chunked, or until the close).
//!
//! Why not hyper's client connection, which this replaced (figures in docs/benchmarks.md, "Slow
//! streams and memory per stream"): it runs each connection as a task of its own, handed
//! requests through a channel, so a request and each chunk of its answer cross between two
//! tasks; and it holds per connection, for the connection's whole life, a channel block of 32
//! request slots (9 KiB), an 8 KiB buffer for heads and an 8 KiB read buffer. Here a connection
//! is a socket and the bytes read from it that are not yet taken; while it waits for the
//! upstream, it holds no buffer at all (the next read allocates one, sized by the reads before).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use memchr::memmem;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::Outgoing;
use super::pool::Pool;

/// Most header lines an answer's head may have.
const MAX_HEADERS: usize = 128;
/// The largest answer head.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;
/// Reads are at least this large, and at most `MAX_READ`.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;
/// A body up to this size is written with the head in one write.
const INLINE_BODY: usize = 16 * 1024;

/// The end of a chunk-size or trailer line, searched for with one searcher made once
/// (`memmem::find` builds one on every call; every line of a chunked answer is searched).
static CRLF: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\r\n"));

/// One connection to a provider.
pub struct Conn {
    tcp: TcpStream,
    /// Bytes read and not yet taken.
    buf: BytesMut,
    /// The size of the next read: doubled while reads fill it, halved when they use a quarter.
    next: usize,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            buf: BytesMut::new(),
            next: 4096,
        }
    }

    /// Whether an idle connection can take a request: nothing is left to read on it (the
    /// upstream's close, or bytes it should not have sent, mean it cannot). A system call only
    /// when the socket became readable since the answer was read (`poll_fill`).
    pub fn is_reusable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether tokio holds the socket as not readable (the last read emptied it), so that
    /// [`Conn::is_reusable`] needs no system call.
    #[cfg(test)]
    pub fn readiness_cleared(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.tcp.poll_read_ready(&mut cx).is_pending()
    }

    /// Write a POST of `body` to `path` with `headers` (and a `content-length`; any framing or
    /// `connection` header given is left out).
    pub async fn send(
        &mut self,
        path: &str,
        headers: &Outgoing<'_>,
        host: &HeaderValue,
        body: &[u8],
    ) -> io::Result<()> {
        let mut size = 64 + path.len();
        let mut has_host = false;
        for (name, value) in headers.iter() {
            size += name.as_str().len() + value.len() + 4;
            has_host |= name == HOST;
        }
        let inline = body.len() <= INLINE_BODY;
        if inline {
            size += body.len();
        }
        let mut head = Vec::with_capacity(size);
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if !has_host {
            head.extend_from_slice(b"host: ");
            head.extend_from_slice(host.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers.iter() {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        if inline {
            head.extend_from_slice(body);
            self.tcp.write_all(&head).await
        } else {
            self.tcp.write_all(&head).await?;
            self.tcp.write_all(body).await
        }
    }

    /// Read into `buf`; `Ok(0)` at the upstream's close. While nothing is there to read and
    /// nothing is held, the buffer is let go.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            match self.tcp.poll_read_ready(cx) {
                Poll::Pending => {
                    if self.buf.is_empty() && self.buf.capacity() > 0 {
                        self.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(ready) => ready?,
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ {
                self.buf.reserve(self.next);
            }
            let room = self.buf.capacity() - self.buf.len();
            // Read through tokio's `AsyncRead`, not `try_read_buf`: a read shorter than the room
            // given empties the socket, and tokio then forgets its readiness, so the check of
            // an idle connection ([`Conn::is_reusable`]) costs no system call.
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.buf) {
                Poll::Ready(Ok(n)) => {
                    if n >= room {
                        self.next = (self.next * 2).min(MAX_READ);
                    } else if n < self.next / 4 {
                        self.next = (self.next / 2).max(MIN_READ);
                    }
                    return Poll::Ready(Ok(n));
                }
                // The readiness was stale (now cleared): wait for the next.
                Poll::Pending => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Read the answer's head (interim `1xx` answers are skipped).
    pub async fn read_head(&mut self) -> io::Result<Head> {
        std::future::poll_fn(|cx| self.poll_head(cx)).await
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Head>> {
        loop {
            if !self.buf.is_empty() {
                let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut lines);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = head_of(&parsed, &self.buf, len)?;
                        self.buf.advance(len);
                        if head.status.is_informational() {
                            continue;
                        }
                        return Poll::Ready(Ok(head));
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() >= MAX_HEAD {
                            return Poll::Ready(Err(invalid("the answer's head is too large")));
                        }
                    }
                    Err(e) => {
                        return Poll::Ready(Err(invalid(&format!("invalid answer head: {e}"))));
                    }
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer's head",
                )));
            }
        }
    }
}

/// An answer's head, and how its body is framed.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// The answer, its body read from `conn` (given back to `pool` once read to the end when
    /// the connection can take another request).
    pub fn into_response(self, conn: Conn, pool: Arc<Pool>) -> Response<Body> {
        let reuse = self.keep_alive && !matches!(self.framing, Framing::Close);
        let mut resp = Response::new(Body {
            conn: Some(conn),
            framing: self.framing,
            pool: reuse.then_some(pool),
        });
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = self.headers;
        let body = resp.body_mut();
        if body.is_end_stream() {
            body.finish();
        }
        resp
    }
}

/// The head parsed from `buf[..len]`. An error answer's headers are kept, as slices of one
/// copy of the head (not of the read buffer, which they would otherwise keep alive as long as
/// the headers live): the failure is read from them (`retry-after`, Bedrock's error type). A
/// successful answer's are read for its framing only and not kept: every consumer of a
/// provider's answer reads its status and body, and building the map cost ~2,000 instructions
/// of every request (docs/benchmarks.md, "What changed what").
fn head_of(parsed: &httparse::Response<'_, '_>, buf: &[u8], len: usize) -> io::Result<Head> {
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| invalid("invalid status code"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let keep = !status.is_success();
    let copy = if keep {
        Bytes::copy_from_slice(buf.get(..len).unwrap_or_default())
    } else {
        Bytes::new()
    };
    let base = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(if keep { parsed.headers.len() } else { 0 });
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = false;
    let mut keep_alive = false;
    for line in parsed.headers.iter() {
        let name = line.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(line.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoded = true;
            // Only the last coding says whether the body is chunked.
            chunked = line
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in line.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        if keep {
            let name = HeaderName::from_bytes(name).map_err(|_| invalid("invalid header name"))?;
            let start = line.value.as_ptr() as usize - base;
            let value = HeaderValue::from_maybe_shared(copy.slice(start..start + line.value.len()))
                .map_err(|_| invalid("invalid header value"))?;
            headers.append(name, value);
        }
    }
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if encoded {
        if chunked {
            Framing::Chunk(Chunk::Size)
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive);
    Ok(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    })
}

enum Framing {
    /// Bytes of the body still to come.
    Length(u64),
    Chunk(Chunk),
    /// Until the upstream closes.
    Close,
    Done,
}

enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// An answer's body, read from its connection as it is polled.
pub struct Body {
    /// `None` once the body ended.
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes back when the body ended, if it can take another request.
    pool: Option<Arc<Pool>>,
}

impl Body {
    /// The body ended: its connection goes back to the pool if it can be used again (nothing
    /// more was read from it than the body).
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && conn.buf.is_empty()
        {
            pool.put(conn);
        }
    }

    /// A line (without its CRLF) from the buffer; `None` when it is not all there yet.
    fn line(conn: &mut Conn) -> io::Result<Option<Bytes>> {
        match CRLF.find(&conn.buf) {
            Some(at) => {
                let line = conn.buf.split_to(at).freeze();
                conn.buf.advance(2);
                Ok(Some(line))
            }
            None if conn.buf.len() > MAX_LINE => Err(invalid("a chunk line is too long")),
            None => Ok(None),
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Whether more bytes must be read before going on.
            let need_more = match &mut self.framing {
                Framing::Done | Framing::Length(0) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) | Framing::Chunk(Chunk::Data(left)) => {
                    if conn.buf.is_empty() {
                        true
                    } else {
                        let take = conn
                            .buf
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= take as u64;
                        let data = conn.buf.split_to(take).freeze();
                        if *left == 0 {
                            match self.framing {
                                Framing::Length(_) => self.finish(),
                                _ => self.framing = Framing::Chunk(Chunk::DataEnd),
                            }
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Framing::Close => {
                    if conn.buf.is_empty() {
                        true
                    } else {
                        return Poll::Ready(Some(Ok(conn.buf.split().freeze())));
                    }
                }
                Framing::Chunk(Chunk::Size) => match Self::line(conn) {
                    Err(e) => return Poll::Ready(Some(Err(e))),
                    Ok(None) => true,
                    Ok(Some(line)) => {
                        let digits = line
                            .split(|&b| b == b';')
                            .next()
                            .unwrap_or_default()
                            .trim_ascii();
                        let size = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|s| u64::from_str_radix(s, 16).ok())
                            .ok_or_else(|| invalid("invalid chunk size"));
                        match size {
                            Err(e) => return Poll::Ready(Some(Err(e))),
                            Ok(0) => self.framing = Framing::Chunk(Chunk::Trailers),
                            Ok(n) => self.framing = Framing::Chunk(Chunk::Data(n)),
                        }
                        false
                    }
                },
                Framing::Chunk(Chunk::DataEnd) => {
                    if conn.buf.len() < 2 {
                        true
                    } else if conn.buf.starts_with(b"\r\n") {
                        conn.buf.advance(2);
                        self.framing = Framing::Chunk(Chunk::Size);
                        false
                    } else {
                        return Poll::Ready(Some(Err(invalid("a chunk does not end with CRLF"))));
                    }
                }
                Framing::Chunk(Chunk::Trailers) => match Self::line(conn) {
                    Err(e) => return Poll::Ready(Some(Err(e))),
                    Ok(None) => true,
                    Ok(Some(line)) => {
                        if line.is_empty() {
                            self.finish();
                            return Poll::Ready(None);
                        }
                        false
                    }
                },
            };
            if need_more {
                let n = match ready!(conn.poll_fill(cx)) {
                    Ok(n) => n,
                    Err(e) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                };
                if n == 0 {
                    self.conn = None;
                    if matches!(self.framing, Framing::Close) {
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the answer's body ended",
                    ))));
                }
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    /// The room of the read buffer its connection holds now (0: none).
    #[cfg(test)]
    pub fn held_buffer(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.buf.capacity())
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    pub fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.poll_data(cx).map(|d| d.map(|d| d.map(Frame::data)))
    }
}
