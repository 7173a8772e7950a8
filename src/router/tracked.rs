//! A served stream, as the router hands it on: its deployment's in-flight count held until it ends
//! or the client goes away, its attempt counted when it ends (`ai_gateway_upstream_attempts_total`
//! with the stream's real outcome), and its end checked.
//!
//! A stream ends well only with its terminal event: OpenAI's `data: [DONE]`, Anthropic's
//! `message_stop`. Also taken as complete (the answer is whole; the terminal event is added for
//! the client): an OpenAI stream whose last chunk has a `finish_reason`, or is the usage chunk
//! (`choices: []`) that follows it; an Anthropic stream whose last event is `message_delta`
//! (the stop reason). These are what the translators accept too. A stream whose last event is
//! the upstream's own error event ends with it. Any other end (a clean EOF mid-answer, or in the
//! middle of an event) is a failure: the stream yields an error (the relay turns it into the client's in-stream error
//! event and does not cache the answer), the breaker counts it, and the attempt's outcome is
//! `protocol_error`; a mid-stream error item counts the same way.
//!
//! The check costs no parsing per chunk: the stream keeps references to its last chunks (about
//! [`TAIL`] bytes) and, at the end, reads its events backwards from the last one until one
//! decides (usually the last: `[DONE]` or `message_stop`), in the last chunk alone when that
//! holds the deciding event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;

use crate::clock::monotonic_ms as now_ms;
use crate::error::{UpstreamError, UpstreamKind};
use crate::providers::ByteStream;
use crate::runtime::Deployment;
use crate::runtime::health::InFlight;
use crate::sse::SseParser;
use crate::translate::TRUNCATED;
use crate::wire::Format;

/// Bytes of the stream's end kept for the check besides the last chunk (a usage chunk, or a
/// `message_delta`, and what follows them, fit several times over).
const TAIL: usize = 1024;

/// How a stream ended, read from its last events.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// With its terminal event, or complete without it (the event to add).
    Complete(&'static [u8]),
    /// With the upstream's own error event (and what the client's stream still needs).
    Errored(&'static [u8]),
    Truncated,
}

const DONE: &[u8] = b"data: [DONE]\n\n";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// Wrap a served stream (`took`: the attempt's time to its first chunk). The end of a stream of
/// an `op` without a terminal event to check (audio bytes) is taken as it comes.
pub fn track(
    inner: ByteStream,
    deployment: Arc<Deployment>,
    guard: InFlight,
    took: Duration,
    op: crate::providers::Op,
) -> ByteStream {
    let format = deployment.provider.format();
    let check_end = op.checks_stream_end();
    Box::pin(Tracked {
        inner,
        deployment,
        _guard: guard,
        took,
        format,
        check_end,
        tail: Tail::default(),
        end: State::Streaming,
    })
}

type Item = Result<Bytes, UpstreamError>;

enum State {
    Streaming,
    /// The end is known: these are still to be yielded (last first), then `None`.
    Owing(Vec<Item>),
    Done,
}

struct Tracked {
    inner: ByteStream,
    deployment: Arc<Deployment>,
    _guard: InFlight,
    took: Duration,
    format: Format,
    /// Whether the end is checked for the terminal event.
    check_end: bool,
    tail: Tail,
    end: State,
}

impl Tracked {
    fn keep(&mut self, chunk: &Bytes) {
        if self.check_end {
            self.tail.push(chunk);
        }
    }

    fn record(&mut self, outcome: &'static str, failed: bool) {
        let d = &self.deployment;
        crate::metrics::attempt(&d.provider.name, &d.model, outcome, self.took);
        if failed {
            d.state.record_failure(now_ms());
        }
        self.end = State::Done;
    }

    /// The upstream ended: what is still owed to the consumer, last first.
    fn ended(&mut self) -> Vec<Item> {
        if !self.check_end {
            self.record("success", false);
            return Vec::new();
        }
        let ends_whole = self.tail.at_event_start;
        let end = self.tail.end(self.format);
        self.tail = Tail::default();
        let owed = |b: &'static [u8]| {
            if b.is_empty() {
                Vec::new()
            } else {
                vec![Ok(Bytes::from_static(b))]
            }
        };
        match end {
            End::Complete(b) => {
                self.record("success", false);
                owed(b)
            }
            End::Errored(b) => {
                self.record("protocol_error", true);
                owed(b)
            }
            End::Truncated => {
                self.record("protocol_error", true);
                tracing::warn!(
                    provider = %self.deployment.provider.name,
                    deployment_model = %self.deployment.model,
                    "the upstream stream ended before its terminal event"
                );
                let mut items = vec![Err(UpstreamError::new(
                    &self.deployment.provider.name,
                    UpstreamKind::Protocol,
                    TRUNCATED,
                ))];
                // Cut mid-event: end that event first, so the error event stands apart.
                if !ends_whole {
                    items.push(Ok(Bytes::from_static(b"\n\n")));
                }
                items
            }
        }
    }
}

/// A copy of a stream's last bytes: at least `TAIL` of them and the whole last chunk. A copy,
/// not the chunks themselves: a chunk is a slice of the upstream connection's read buffer, and
/// holding it would keep that whole buffer (8 KiB or more) alive and make the connection
/// allocate a new one for its next read, for each chunk held.
struct Tail {
    bytes: Vec<u8>,
    /// Where the last chunk starts in `bytes`.
    last_start: usize,
    /// Whether bytes were dropped from the front.
    dropped: bool,
    /// Whether the next chunk starts an event (the last one ended with a blank line).
    at_event_start: bool,
    /// Whether the last chunk started an event.
    last_at_event_start: bool,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            bytes: Vec::new(),
            last_start: 0,
            dropped: false,
            at_event_start: true,
            last_at_event_start: true,
        }
    }
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // Read on the bytes, not the chunk: a blank line may be split between two chunks.
        self.last_at_event_start = self.bytes.is_empty() || at_boundary(&self.bytes);
        // Trimmed once per `TAIL / 2` bytes or so, not at every chunk.
        let keep = TAIL.max(chunk.len());
        let len = self.bytes.len() + chunk.len();
        if len > keep + TAIL / 2 {
            let cut = (len - keep).min(self.bytes.len());
            self.bytes.drain(..cut);
            self.dropped = true;
        }
        if self.bytes.capacity() == 0 {
            // Once per stream, the size it keeps to (not the doubling's next power of two).
            self.bytes.reserve_exact(keep + TAIL / 2);
        }
        self.last_start = self.bytes.len();
        self.bytes.extend_from_slice(chunk);
        self.at_event_start = at_boundary(&self.bytes);
    }

    /// How the stream ended: read from the last chunk alone when it holds the deciding event,
    /// else from all the bytes kept.
    fn end(&self, format: Format) -> End {
        let more_before = self.last_start > 0 || self.dropped;
        let last = self.bytes.get(self.last_start..).unwrap_or_default();
        // (A last chunk that does not itself end with the blank line, as when `\n\n` was split
        // between two chunks, is read with what came before it.)
        at_boundary(last)
            .then(|| end_of(format, last, self.last_at_event_start, more_before))
            .flatten()
            .or_else(|| end_of(format, &self.bytes, !self.dropped, false))
            .unwrap_or(End::Truncated)
    }
}

impl Stream for Tracked {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match &mut this.end {
            State::Done => return Poll::Ready(None),
            State::Owing(items) => return Poll::Ready(items.pop()),
            State::Streaming => {}
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.keep(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = match e.kind {
                    UpstreamKind::Timeout => "timeout",
                    _ => "protocol_error",
                };
                this.record(outcome, true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let mut items = this.ended();
                let first = items.pop();
                this.end = State::Owing(items);
                Poll::Ready(first)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // The client went away mid-stream: the upstream served it as far as it was asked.
        if matches!(self.end, State::Streaming) {
            self.record("success", false);
        }
    }
}

/// Whether a stream's bytes end with a whole event (a blank line).
fn at_boundary(tail: &[u8]) -> bool {
    tail.ends_with(b"\n\n") || tail.ends_with(b"\r\n\r\n") || tail.ends_with(b"\r\r")
}

/// How a stream of `format` ends, from its last bytes: the events from the last one backwards
/// until one decides. `starts_event`: the bytes start with an event (else their first event may be
/// partial and is not read); `more_before`: earlier bytes exist, so `None` (not decided) asks for
/// them rather than calling the stream truncated.
fn end_of(format: Format, tail: &[u8], starts_event: bool, more_before: bool) -> Option<End> {
    if !at_boundary(tail) {
        return Some(End::Truncated);
    }
    let mut end = tail.len();
    loop {
        let body = tail.get(..end).unwrap_or_default();
        let lines = body.trim_ascii_end();
        if lines.is_empty() {
            return (!more_before).then_some(End::Truncated);
        }
        let start = match event_start(lines) {
            Some(i) => i,
            None if starts_event => 0,
            None => return (!more_before).then_some(End::Truncated),
        };
        // The event with its blank line, so the parser hands it over without a copy.
        let mut verdict = None;
        SseParser::new().push(body.get(start..).unwrap_or_default(), |ev| {
            verdict = match format {
                Format::OpenAi => openai_end(ev.data),
                Format::Anthropic => anthropic_end(ev.event, ev.data),
            };
        });
        if verdict.is_some() {
            return verdict;
        }
        end = start;
    }
}

/// Where the last event of `lines` (ending with its last line, blank lines trimmed) starts: after
/// the last blank line, if there is one. Walks back from line end to line end.
fn event_start(lines: &[u8]) -> Option<usize> {
    let mut end = lines.len();
    while let Some(p) = memchr::memrchr(b'\n', lines.get(..end).unwrap_or_default()) {
        // A blank line ends here when a line ended right before it: `\n\n` or `\n\r\n`.
        let before = lines.get(..p).unwrap_or_default();
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            return Some(p + 1);
        }
        end = p;
    }
    // Lines ended by `\r` alone.
    if memchr::memchr(b'\n', lines).is_none() {
        return memchr::memmem::rfind(lines, b"\r\r").map(|i| i + 2);
    }
    None
}

#[derive(Deserialize)]
struct LastChunk<'a> {
    #[serde(borrow)]
    choices: Option<Vec<LastChoice<'a>>>,
    usage: Option<serde::de::IgnoredAny>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct LastChoice<'a> {
    #[serde(borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

/// The end an OpenAI event makes, or `None` to look at the one before.
fn openai_end(data: &str) -> Option<End> {
    if data.trim() == "[DONE]" {
        return Some(End::Complete(b""));
    }
    let Ok(chunk) = serde_json::from_str::<LastChunk<'_>>(data) else {
        return Some(End::Truncated);
    };
    if chunk.error.is_some() {
        return Some(End::Errored(DONE));
    }
    let choices = chunk.choices.unwrap_or_default();
    let finished = choices.iter().any(|c| c.finish_reason.is_some())
        || (choices.is_empty() && chunk.usage.is_some());
    Some(if finished {
        End::Complete(DONE)
    } else {
        End::Truncated
    })
}

#[derive(Deserialize)]
struct AnthropicType<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// The end an Anthropic event makes, or `None` to look at the one before.
fn anthropic_end(event: &str, data: &str) -> Option<End> {
    let named = if event.is_empty() {
        serde_json::from_str::<AnthropicType<'_>>(data)
            .ok()
            .and_then(|t| t.kind)
            .unwrap_or_default()
    } else {
        std::borrow::Cow::Borrowed(event)
    };
    match named.as_ref() {
        "message_stop" => Some(End::Complete(b"")),
        "message_delta" => Some(End::Complete(MESSAGE_STOP)),
        "error" => Some(End::Errored(b"")),
        "ping" => None,
        _ => Some(End::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(s: &str) -> End {
        end_of(Format::OpenAi, s.as_bytes(), true, false).unwrap()
    }

    fn anthropic(s: &str) -> End {
        end_of(Format::Anthropic, s.as_bytes(), true, false).unwrap()
    }

    const CONTENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    const FINISH: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n";

    #[test]
    fn openai_ends() {
        assert_eq!(
            openai(&format!("{CONTENT}{FINISH}data: [DONE]\n\n")),
            End::Complete(b"")
        );
        assert_eq!(openai(&format!("{CONTENT}{FINISH}")), End::Complete(DONE));
        assert_eq!(
            openai(&format!("{CONTENT}{FINISH}{USAGE}")),
            End::Complete(DONE)
        );
        assert_eq!(openai(&format!("{CONTENT}{CONTENT}")), End::Truncated);
        // Ended in the middle of an event.
        assert_eq!(openai(&format!("{FINISH}data: {{\"choi")), End::Truncated);
        assert_eq!(openai(&format!("{CONTENT}data: [DO")), End::Truncated);
        assert_eq!(openai(&format!("{CONTENT}data: [DONE]\n")), End::Truncated);
        assert_eq!(
            openai(&format!(
                "{CONTENT}data: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n"
            )),
            End::Errored(DONE)
        );
        assert_eq!(openai(""), End::Truncated);
        assert_eq!(
            openai(&format!("{CONTENT}{FINISH}: keep-alive\n\n")),
            End::Complete(DONE)
        );
    }

    #[test]
    fn anthropic_ends() {
        let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n";
        let stop_block =
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
        let msg_delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(
            anthropic(&format!("{delta}{stop_block}{msg_delta}{stop}")),
            End::Complete(b"")
        );
        assert_eq!(
            anthropic(&format!("{delta}{stop_block}{msg_delta}")),
            End::Complete(MESSAGE_STOP)
        );
        assert_eq!(anthropic(&format!("{delta}{stop_block}")), End::Truncated);
        assert_eq!(anthropic(delta), End::Truncated);
        assert_eq!(
            anthropic(&format!(
                "{delta}event: ping\ndata: {{\"type\":\"ping\"}}\n\n{msg_delta}event: ping\ndata: {{\"type\":\"ping\"}}\n\n"
            )),
            End::Complete(MESSAGE_STOP)
        );
        // Named by its data only.
        assert_eq!(
            anthropic("data: {\"type\":\"message_stop\"}\n\n"),
            End::Complete(b"")
        );
        assert_eq!(
            anthropic(&format!(
                "{delta}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"x\"}}}}\n\n"
            )),
            End::Errored(b"")
        );
    }

    #[test]
    fn the_tail_decides_from_small_chunks_split_anywhere() {
        // 300 content events then the usage chunk and [DONE], cut into pieces of every size.
        let mut stream = String::new();
        for i in 0..300 {
            stream.push_str(&format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i}\"}}}}]}}\n\n"
            ));
        }
        stream.push_str("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        let done = format!("{stream}data: [DONE]\n\n");
        for size in [1, 7, 64, 100, 1023, 1024, 1500, 5000, done.len()] {
            let mut t = Tail::default();
            for piece in done.as_bytes().chunks(size) {
                t.push(piece);
            }
            assert_eq!(
                t.end(Format::OpenAi),
                End::Complete(b""),
                "pieces of {size}"
            );
            assert!(
                t.bytes.len() <= TAIL.max(size) + TAIL / 2,
                "kept {}",
                t.bytes.len()
            );
            // Without [DONE]: complete, and [DONE] is owed.
            let mut t = Tail::default();
            for piece in stream.as_bytes().chunks(size) {
                t.push(piece);
            }
            assert_eq!(
                t.end(Format::OpenAi),
                End::Complete(DONE),
                "pieces of {size}"
            );
            // Cut mid-event: truncated.
            let mut t = Tail::default();
            for piece in stream.as_bytes()[..stream.len() - 20].chunks(size) {
                t.push(piece);
            }
            assert_eq!(t.end(Format::OpenAi), End::Truncated, "pieces of {size}");
        }
        assert_eq!(Tail::default().end(Format::OpenAi), End::Truncated);
    }

    #[test]
    fn cut_bytes_decide_only_from_a_whole_event() {
        let of = |s: &[u8], starts_event, more_before| {
            end_of(Format::OpenAi, s, starts_event, more_before)
        };
        // The deciding event is whole after a blank line.
        let s = format!("ext\":\"hi\"}}}}]}}\n\n{FINISH}");
        assert_eq!(of(s.as_bytes(), false, true), Some(End::Complete(DONE)));
        assert_eq!(
            of(b"data: [DONE]\n\n", false, true),
            None,
            "its start may be further back"
        );
        assert_eq!(
            of(b"data: [DONE]\n\n", true, true),
            Some(End::Complete(b""))
        );
        assert_eq!(of(b"ata: [DONE]\n\n", false, false), Some(End::Truncated));
        // Only skippable events: the events before decide.
        let ping = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
        assert_eq!(end_of(Format::Anthropic, ping, true, true), None);
        assert_eq!(
            end_of(Format::Anthropic, ping, true, false),
            Some(End::Truncated)
        );
        // CR line ends.
        assert_eq!(
            of(b"data: x\r\rdata: [DONE]\r\r", true, false),
            Some(End::Complete(b""))
        );
        // CRLF line ends.
        let crlf = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        assert_eq!(of(crlf.as_bytes(), true, false), Some(End::Complete(b"")));
    }

    /// The stream as a whole, chunk by chunk: a deciding event behind a last chunk of pings is
    /// found in the chunks before.
    #[tokio::test]
    async fn reads_back_past_the_last_chunk_when_it_does_not_decide() {
        use futures_util::StreamExt;
        let chunks = [
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\"}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        ];
        let ends = |chunks: Vec<&'static str>| async move {
            let inner: ByteStream = Box::pin(futures_util::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
            ));
            let cfg = crate::config::load_str(
                "providers: [{name: a, type: anthropic}]\nmodels: [{name: m, deployments: [{provider: a, model: m}]}]\n",
                &|_| None,
            )
            .unwrap();
            let rt =
                crate::runtime::Runtime::build(cfg, &mut crate::runtime::ClientPool::default())
                    .unwrap();
            let d = rt.models["m"].deployments[0].clone();
            let guard = d.state.start();
            let out: Vec<_> = track(inner, d, guard, Duration::ZERO, crate::providers::Op::Chat)
                .collect()
                .await;
            out.into_iter().last().unwrap()
        };
        let last = ends(chunks.to_vec()).await.unwrap();
        assert_eq!(&last[..], MESSAGE_STOP);
        let last = ends(vec![chunks[0], chunks[2]]).await;
        assert!(last.is_err(), "truncated");
    }
}
