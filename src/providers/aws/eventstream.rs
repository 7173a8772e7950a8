//! AWS event-stream decoding (the binary framing of Bedrock's `ConverseStream`); and
//! [`encode`], the frames `ai-gateway mock-server` sends, written with `aws-smithy-eventstream`.
//!
//! A frame is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), typed
//! headers (`:message-type`, `:event-type`, `:exception-type`, …), a payload and a CRC32 of
//! everything before it. [`EventStreamDecoder`] takes network chunks as they arrive and yields
//! complete frames; it checks each prelude as soon as its 12 bytes are in (so a corrupt length
//! is an error at once, not a wait for gigabytes), bounds a frame to 16 MiB, then checks the
//! message CRC and every header of the whole frame. Every fault is an error value, never a
//! panic; a stream that ends inside a frame is reported by [`EventStreamDecoder::finish`].
//!
//! The decoding is written here over the frame's contiguous bytes (`crc32fast` over slices,
//! headers read from the slice, the payload a view of the frame) rather than with
//! `aws_smithy_eventstream::frame::read_message_from`: that one reads through byte-wise `Buf`
//! adapters (a CRC updated per `get_u8`/`get_u32`, a count per read) and copies each header
//! and the payload, measured as most of a Bedrock stream's decoding cost. The crate's encoder
//! still writes the test frames, so the tests check this decoder against it.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// The smallest frame: a prelude and the message CRC.
const MIN_FRAME: usize = PRELUDE + 4;
/// The largest frame AWS sends (its event-stream limit).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A broken event stream. The upstream's answer cannot be trusted past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed event-stream prelude: {0}")]
    Prelude(&'static str),
    #[error("event-stream frame of {0} bytes is larger than the 16 MiB limit")]
    TooLarge(usize),
    #[error("invalid event-stream frame: {0}")]
    Frame(String),
    #[error("the event stream ended inside a frame ({0} bytes of it arrived)")]
    Truncated(usize),
}

/// What a frame is, from its `:message-type` header and the header naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind<'a> {
    /// `:message-type` `event` (the default): its `:event-type`.
    Event(&'a str),
    /// `:message-type` `exception`: its `:exception-type` (the payload holds the message).
    Exception(&'a str),
    /// `:message-type` `error`: `:error-code` and `:error-message`.
    Error { code: &'a str, message: &'a str },
    /// Any other `:message-type`.
    Other(&'a str),
}

/// One decoded frame: its bytes, with the headers and the CRC checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    bytes: Bytes,
    /// Where the headers end and the payload starts.
    payload_start: usize,
}

impl Frame {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        Headers(&self.bytes[PRELUDE..self.payload_start])
            .map_while(Result::ok)
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s),
                Value::Other => None,
            })
    }

    pub fn kind(&self) -> FrameKind<'_> {
        match self.header(":message-type").unwrap_or("event") {
            "event" => FrameKind::Event(self.header(":event-type").unwrap_or("")),
            "exception" => FrameKind::Exception(self.header(":exception-type").unwrap_or("")),
            "error" => FrameKind::Error {
                code: self.header(":error-code").unwrap_or(""),
                message: self.header(":error-message").unwrap_or(""),
            },
            other => FrameKind::Other(other),
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_start..self.bytes.len() - 4]
    }
}

/// A header's value: a string, or another type (skipped).
enum Value<'a> {
    String(&'a str),
    Other,
}

/// The headers of a frame, read from their bytes: name, value.
struct Headers<'a>(&'a [u8]);

impl<'a> Headers<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("a header runs past the headers");
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn header(&mut self) -> Result<(&'a [u8], Value<'a>), &'static str> {
        let name_len = self.take(1)?[0];
        let name = self.take(usize::from(name_len))?;
        std::str::from_utf8(name).map_err(|_| "a header name is not UTF-8")?;
        let value = match self.take(1)?[0] {
            // true, false
            0 | 1 => Value::Other,
            // byte, int16, int32, int64, timestamp, uuid
            2 => self.take(1).map(|_| Value::Other)?,
            3 => self.take(2).map(|_| Value::Other)?,
            4 => self.take(4).map(|_| Value::Other)?,
            5 | 8 => self.take(8).map(|_| Value::Other)?,
            9 => self.take(16).map(|_| Value::Other)?,
            // byte array, string
            t @ (6 | 7) => {
                let len = self.take(2)?;
                let bytes = self.take(usize::from(u16::from_be_bytes([len[0], len[1]])))?;
                if t == 7 {
                    Value::String(
                        std::str::from_utf8(bytes).map_err(|_| "a string header is not UTF-8")?,
                    )
                } else {
                    Value::Other
                }
            }
            _ => return Err("a header value of an unknown type"),
        };
        Ok((name, value))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<(&'a [u8], Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.header();
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

/// The frame from its bytes (the prelude already checked): the message CRC, then every
/// header.
fn read_frame(bytes: Bytes) -> Result<Frame, DecodeError> {
    let len = bytes.len();
    let (body, crc) = bytes.split_at(len - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(DecodeError::Frame("message checksum mismatch".into()));
    }
    let headers_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let payload_start = PRELUDE + usize::try_from(headers_len).unwrap_or(usize::MAX);
    let headers = bytes
        .get(PRELUDE..payload_start)
        .filter(|_| payload_start <= len - 4)
        .ok_or(DecodeError::Prelude("headers longer than the frame"))?;
    for header in Headers(headers) {
        header.map_err(|e| DecodeError::Frame(e.into()))?;
    }
    Ok(Frame {
        bytes,
        payload_start,
    })
}

/// Incremental event-stream decoder: [`push`](Self::push) chunks, then take frames with
/// [`next_frame`](Self::next_frame) until it gives `Ok(None)`. After an error it yields
/// nothing more.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    /// The length of the frame at the front of `buf`, once its prelude checked out.
    frame_len: Option<usize>,
    failed: bool,
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held that do not yet form a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed one network chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(chunk);
        }
    }

    fn fail(&mut self, e: DecodeError) -> Result<Option<Frame>, DecodeError> {
        self.failed = true;
        self.buf = BytesMut::new();
        self.frame_len = None;
        Err(e)
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.failed {
            return Ok(None);
        }
        let len = match self.frame_len {
            Some(len) => len,
            None => {
                if self.buf.len() < PRELUDE {
                    return Ok(None);
                }
                match check_prelude(&self.buf[..PRELUDE]) {
                    Ok(len) => {
                        self.frame_len = Some(len);
                        len
                    }
                    Err(e) => return self.fail(e),
                }
            }
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        self.frame_len = None;
        let frame: Bytes = self.buf.split_to(len).freeze();
        match read_frame(frame) {
            Ok(f) => Ok(Some(f)),
            Err(e) => self.fail(e),
        }
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() || self.failed {
            Ok(())
        } else {
            Err(DecodeError::Truncated(self.buf.len()))
        }
    }
}

/// The frame's total length, once its prelude is checked.
fn check_prelude(mut prelude: &[u8]) -> Result<usize, DecodeError> {
    let crc = crc32fast::hash(&prelude[..8]);
    let total = usize::try_from(prelude.get_u32()).unwrap_or(usize::MAX);
    let headers = usize::try_from(prelude.get_u32()).unwrap_or(usize::MAX);
    if prelude.get_u32() != crc {
        return Err(DecodeError::Prelude("checksum mismatch"));
    }
    if total < MIN_FRAME {
        return Err(DecodeError::Prelude("frame shorter than its prelude"));
    }
    if total > MAX_FRAME {
        return Err(DecodeError::TooLarge(total));
    }
    if headers > total - MIN_FRAME {
        return Err(DecodeError::Prelude("headers longer than the frame"));
    }
    Ok(total)
}

/// One frame with these string headers and payload (prelude, headers, payload and both CRCs),
/// written with `aws-smithy-eventstream`. Errs only past the format's limits (a header name
/// over 255 bytes, a frame over 16 MiB).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Result<Bytes, EncodeError> {
    let headers = headers
        .iter()
        .map(|(n, v)| Header::new(n.to_string(), HeaderValue::String(v.to_string().into())))
        .collect();
    let m = Message::new_from_parts(headers, Bytes::copy_from_slice(payload));
    let mut out = Vec::new();
    write_message_to(&m, &mut out).map_err(|e| EncodeError(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// An `event` frame as Bedrock sends them (`:event-type`, `:content-type`, `:message-type`).
pub fn event(kind: &str, payload: &[u8]) -> Result<Bytes, EncodeError> {
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` frame as Bedrock sends them.
pub fn exception(kind: &str, payload: &[u8]) -> Result<Bytes, EncodeError> {
    encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

/// A frame that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write an event-stream frame: {0}")]
pub struct EncodeError(String);

/// Frames for the tests, as the strings they are written from.
#[cfg(test)]
pub(crate) mod testing {
    pub(crate) fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        super::encode(headers, payload.as_bytes())
            .expect("encodes")
            .to_vec()
    }

    pub(crate) fn event(kind: &str, payload: &str) -> Vec<u8> {
        super::event(kind, payload.as_bytes())
            .expect("encodes")
            .to_vec()
    }

    pub(crate) fn exception(kind: &str, payload: &str) -> Vec<u8> {
        super::exception(kind, payload.as_bytes())
            .expect("encodes")
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{event, exception, frame};
    use super::*;

    fn stream() -> Vec<u8> {
        [
            event("messageStart", r#"{"role":"assistant","p":"abcd"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hel"},"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"}"#,
            ),
            event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"lo"}}"#),
            event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            event("messageStop", r#"{"stopReason":"end_turn"}"#),
            exception("throttlingException", r#"{"message":"Too many requests"}"#),
        ]
        .concat()
    }

    fn kinds(frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| format!("{:?}", f.kind())).collect()
    }

    fn decode_split(bytes: &[u8], at: &[usize]) -> (Vec<Frame>, Result<(), DecodeError>) {
        let mut d = EventStreamDecoder::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for &end in at.iter().chain(std::iter::once(&bytes.len())) {
            d.push(&bytes[start..end]);
            start = end;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Err(e)),
                }
            }
        }
        (frames, d.finish())
    }

    #[test]
    fn decodes_the_same_frames_split_at_every_byte() {
        let bytes = stream();
        let (whole, end) = decode_split(&bytes, &[]);
        assert_eq!(end, Ok(()));
        assert_eq!(
            kinds(&whole),
            [
                "Event(\"messageStart\")",
                "Event(\"contentBlockDelta\")",
                "Event(\"contentBlockDelta\")",
                "Event(\"contentBlockStop\")",
                "Event(\"messageStop\")",
                "Exception(\"throttlingException\")",
            ]
        );
        assert_eq!(
            whole[2].payload(),
            br#"{"contentBlockIndex":0,"delta":{"text":"lo"}}"#
        );
        for at in 1..bytes.len() {
            let (frames, end) = decode_split(&bytes, &[at]);
            assert_eq!(end, Ok(()), "split at {at}");
            assert_eq!(frames, whole, "split at {at}");
        }
        // One byte at a time.
        let every: Vec<usize> = (1..bytes.len()).collect();
        let (frames, end) = decode_split(&bytes, &every);
        assert_eq!((frames, end), (whole, Ok(())));
    }

    #[test]
    fn error_frames() {
        let bytes = frame(
            &[
                (":error-code", "InternalFailure"),
                (":error-message", "boom"),
                (":message-type", "error"),
            ],
            "",
        );
        let (frames, end) = decode_split(&bytes, &[]);
        assert_eq!(end, Ok(()));
        assert_eq!(
            frames[0].kind(),
            FrameKind::Error {
                code: "InternalFailure",
                message: "boom"
            }
        );
    }

    #[test]
    fn a_corrupt_message_crc_is_an_error() {
        let mut bytes = stream();
        let first = event("messageStart", r#"{"role":"assistant","p":"abcd"}"#).len();
        // A flipped payload byte in the second frame.
        bytes[first + 40] ^= 0x01;
        let (frames, end) = decode_split(&bytes, &[]);
        assert_eq!(frames.len(), 1);
        assert!(
            matches!(end, Err(DecodeError::Frame(ref m)) if m.contains("checksum")),
            "{end:?}"
        );
        // Split anywhere, the same.
        for at in [1, first, first + 5, first + 41, bytes.len() - 1] {
            let (frames, end) = decode_split(&bytes, &[at]);
            assert_eq!(frames.len(), 1, "split at {at}");
            assert!(matches!(end, Err(DecodeError::Frame(_))), "split at {at}");
        }
        // A flipped bit in the message CRC itself.
        let mut bytes = stream();
        bytes[first - 1] ^= 0x80;
        let (frames, end) = decode_split(&bytes, &[]);
        assert!(frames.is_empty());
        assert!(matches!(end, Err(DecodeError::Frame(_))), "{end:?}");
    }

    #[test]
    fn a_corrupt_prelude_is_an_error_at_once() {
        // A total length of 4 GiB: the prelude CRC catches it before any wait for the bytes.
        let mut bytes = event("messageStart", "{}");
        bytes[0] = 0xff;
        let mut d = EventStreamDecoder::new();
        d.push(&bytes[..PRELUDE]);
        assert_eq!(
            d.next_frame(),
            Err(DecodeError::Prelude("checksum mismatch"))
        );
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&bytes);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 0);
        // A length too large with a valid prelude CRC.
        let mut big = [0u8; PRELUDE];
        big[..4].copy_from_slice(&(64u32 << 20).to_be_bytes());
        let crc = crc32fast::hash(&big[..8]);
        big[8..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check_prelude(&big), Err(DecodeError::TooLarge(64 << 20)));
        let mut short = [0u8; PRELUDE];
        short[..4].copy_from_slice(&8u32.to_be_bytes());
        let crc = crc32fast::hash(&short[..8]);
        short[8..].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            check_prelude(&short),
            Err(DecodeError::Prelude(_))
        ));
    }

    #[test]
    fn a_cut_stream_is_reported_at_the_end() {
        let bytes = stream();
        let cut = &bytes[..bytes.len() - 7];
        let (frames, end) = decode_split(cut, &[]);
        assert_eq!(frames.len(), 5);
        assert!(
            matches!(end, Err(DecodeError::Truncated(n)) if n > 0),
            "{end:?}"
        );
        // Cut inside a prelude, too.
        let (frames, end) = decode_split(&bytes[..5], &[]);
        assert!(frames.is_empty());
        assert_eq!(end, Err(DecodeError::Truncated(5)));
    }

    /// A frame with these raw header bytes and payload, both CRCs right.
    fn raw_frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = u32::try_from(MIN_FRAME + headers.len() + payload.len()).unwrap_or(0);
        let headers_len = u32::try_from(headers.len()).unwrap_or(0);
        let mut out = Vec::new();
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&headers_len.to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out
    }

    #[test]
    fn headers_of_every_type_written_by_the_crate() {
        use aws_smithy_types::DateTime;
        let headers = vec![
            Header::new("b1", HeaderValue::Bool(true)),
            Header::new("b0", HeaderValue::Bool(false)),
            Header::new("i8", HeaderValue::Byte(-3)),
            Header::new("i16", HeaderValue::Int16(-300)),
            Header::new("i32", HeaderValue::Int32(70_000)),
            Header::new("i64", HeaderValue::Int64(1 << 40)),
            Header::new(
                "bytes",
                HeaderValue::ByteArray(Bytes::from_static(b"\x00\xff")),
            ),
            Header::new("ts", HeaderValue::Timestamp(DateTime::from_secs(1))),
            Header::new("uuid", HeaderValue::Uuid(u128::MAX)),
            Header::new(
                ":event-type",
                HeaderValue::String("contentBlockDelta".into()),
            ),
            Header::new("", HeaderValue::String("".into())),
        ];
        let m = Message::new_from_parts(headers, Bytes::from_static(b"{}"));
        let mut bytes = Vec::new();
        write_message_to(&m, &mut bytes).expect("encodes");
        let (frames, end) = decode_split(&bytes, &[]);
        assert_eq!(end, Ok(()));
        assert_eq!(frames[0].kind(), FrameKind::Event("contentBlockDelta"));
        assert_eq!(frames[0].header("i32"), None);
        assert_eq!(frames[0].header(""), Some(""));
        assert_eq!(frames[0].payload(), b"{}");
    }

    #[test]
    fn broken_headers_are_errors() {
        for headers in [
            &b"\x05:a"[..],               // a name past the headers
            b"\x01a",                     // no value type
            b"\x01a\x07\x00\x09abc",      // a string past the headers
            b"\x01a\x04\x00\x00",         // an int32 cut short
            b"\x01a\x0a",                 // an unknown type
            b"\x01a\x07\x00\x02\xff\xfe", // a string not UTF-8
            b"\x01\xff\x00",              // a name not UTF-8
        ] {
            let (frames, end) = decode_split(&raw_frame(headers, b"{}"), &[]);
            assert!(frames.is_empty(), "{headers:?}");
            assert!(
                matches!(end, Err(DecodeError::Frame(_))),
                "{headers:?}: {end:?}"
            );
        }
        // Random header bytes, the CRCs right: errors or frames, never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = usize::try_from(seed % 24).unwrap_or(0);
            let headers: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8 % 12).collect();
            let _ = decode_split(&raw_frame(&headers, b"x"), &[]);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut bytes = stream();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = usize::try_from(seed % bytes.len() as u64).unwrap_or(0);
                bytes[i] = (seed >> 32) as u8;
            }
            let _ = decode_split(
                &bytes,
                &[usize::try_from(seed % 97).unwrap_or(0).min(bytes.len())],
            );
        }
    }
}
