//! Writing an answer on the gateway's own HTTP/1.1 path (see `super`): its head, then its body
//! framed by length or in chunks. Frames that are ready together leave in one write: a stream
//! whose upstream read brought several events sends them in one system call, as hyper's buffered
//! writes did; a large frame is written from where it is, not copied.

use std::io::IoSlice;

use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::poll_watch;
use crate::headers::OwnHeaders;
use crate::server::conn::{ConnIo, Counted};

/// Frames ready together join one write up to about this many bytes.
const BATCH: usize = 16 * 1024;
/// A data frame at least this large is written from its own buffer, not copied into the batch.
const NO_COPY: usize = 4 * 1024;
/// A batch buffer grown past this is let go after its write (a slow stream holds a small one).
const KEEP: usize = 4 * 1024;

/// How an answer's body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length,
    Chunked,
}

/// The answer's head; its framing, and whether the connection closes after it.
pub(super) fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    own: Option<&OwnHeaders>,
    exact: Option<u64>,
    close: bool,
) -> (BytesMut, Framing, bool) {
    // Room for the head and, when it is small enough to be copied in, the whole body.
    let own_len = own.map_or(0, |o| o.len());
    let body = exact.filter(|&n| n < NO_COPY as u64).unwrap_or(0);
    let mut out = BytesMut::with_capacity(
        128 + (headers.len() + own_len) * 64 + usize::try_from(body).unwrap_or(0),
    );
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut framing = if status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        Framing::None
    } else {
        Framing::Chunked
    };
    let mut closes = close;
    let mut has_connection = false;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONTENT_LENGTH && framing != Framing::None {
            framing = Framing::Length;
        }
        if name == header::CONNECTION {
            has_connection = true;
            closes |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // The gateway's own names: none of them is a framing header.
    for (name, value) in own.into_iter().flat_map(OwnHeaders::iter) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        if let Some(n) = exact {
            framing = Framing::Length;
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
    }
    if close && !has_connection {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::now(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, framing, closes)
}

/// The `date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn now(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != secs || text.is_empty() {
                *at = secs;
                *text = httpdate::fmt_http_date(now);
            }
            f(text.as_bytes());
        });
    }
}

/// The exact size of an answer's body, when known.
pub(super) fn body_exact(body: &Counted) -> Option<u64> {
    hyper::body::Body::size_hint(body).exact()
}

async fn write_all(io: &mut ConnIo, parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut parts = parts;
    // Drops empty slices up front (and, as bytes go, every slice written whole).
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = io.write_vectored(parts).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

/// What a polled frame means for the write.
enum Got {
    Data(Bytes),
    Skip,
    End,
    Failed,
}

fn got(frame: Option<Result<hyper::body::Frame<Bytes>, axum::Error>>) -> Got {
    match frame {
        None => Got::End,
        Some(Ok(f)) => match f.into_data() {
            Ok(d) if !d.is_empty() => Got::Data(d),
            // Trailers (not sent) and empty frames.
            _ => Got::Skip,
        },
        Some(Err(e)) => {
            tracing::debug!(error = %e, "an answer's body failed; closing the connection");
            Got::Failed
        }
    }
}

/// Add `data` to the batch `out` with its framing (copied).
fn push(out: &mut BytesMut, framing: Framing, data: &[u8]) {
    match framing {
        Framing::None => {}
        Framing::Length => out.extend_from_slice(data),
        Framing::Chunked => {
            let mut prefix = [0u8; 18];
            let n = format_hex(data.len(), &mut prefix);
            out.extend_from_slice(prefix.get(..n).unwrap_or_default());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Write the batch and then `data` (a large frame, framed but not copied); empties the batch.
async fn flush(
    io: &mut ConnIo,
    out: &mut BytesMut,
    framing: Framing,
    data: &[u8],
) -> std::io::Result<()> {
    let chunked = framing == Framing::Chunked && !data.is_empty();
    let mut prefix = [0u8; 18];
    let prefix_len = if chunked {
        format_hex(data.len(), &mut prefix)
    } else {
        0
    };
    let none: &[u8] = &[];
    let mut parts = [
        IoSlice::new(out),
        IoSlice::new(prefix.get(..prefix_len).unwrap_or(none)),
        IoSlice::new(if framing == Framing::None { none } else { data }),
        IoSlice::new(if chunked { b"\r\n" } else { none }),
    ];
    write_all(io, &mut parts).await?;
    out.clear();
    if out.capacity() > KEEP {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Write the answer: `head`, then the body's frames, those ready together in one write, the
/// socket watched while the body waits; whether it all went.
pub(super) async fn relay(
    io: &mut ConnIo,
    buf: &mut BytesMut,
    body: &mut Counted,
    head: BytesMut,
    framing: Framing,
) -> bool {
    let mut out = head;
    loop {
        // A frame ready now joins the batch; when none is (or the batch is full), the batch goes
        // (the first time: with the head) and the next frame is waited for, the socket watched.
        let ready = if out.len() < BATCH {
            body.frame().now_or_never()
        } else {
            None
        };
        let frame = match ready {
            Some(frame) => frame,
            None => {
                if !out.is_empty() && flush(io, &mut out, framing, &[]).await.is_err() {
                    return false;
                }
                tokio::select! {
                    biased;
                    f = body.frame() => f,
                    r = std::future::poll_fn(|cx| poll_watch(io, buf, cx)) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "client connection ended during an answer");
                        }
                        return false;
                    }
                }
            }
        };
        match got(frame) {
            Got::Data(d) if d.len() >= NO_COPY => {
                if flush(io, &mut out, framing, &d).await.is_err() {
                    return false;
                }
            }
            Got::Data(d) => push(&mut out, framing, &d),
            Got::Skip => {}
            Got::End => {
                if framing == Framing::Chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                return flush(io, &mut out, framing, &[]).await.is_ok();
            }
            Got::Failed => return false,
        }
    }
}

/// `n` in hex followed by CRLF into `out`; the length written.
pub(super) fn format_hex(mut n: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b"0123456789abcdef"[n & 15];
        }
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    let hex = digits.get(i..).unwrap_or_default();
    let len = hex.len();
    if let Some(dst) = out.get_mut(..len) {
        dst.copy_from_slice(hex);
    }
    if let Some(dst) = out.get_mut(len..len + 2) {
        dst.copy_from_slice(b"\r\n");
    }
    len + 2
}
