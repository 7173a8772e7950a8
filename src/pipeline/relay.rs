//! Relaying an upstream answer to the client: the per-format [`Converter`] and the stream relay
//! with its cache, usage and guardrail taps.

use super::*;

/// How upstream stream bytes become client stream bytes.
pub enum Converter {
    /// Same format: bytes pass through untouched.
    Pass(Format),
    /// OpenAI to OpenAI for a client that did not ask for usage (the upstream was asked): the
    /// usage chunk is taken out.
    PassWithoutUsage(crate::stream_usage::UsageStripper),
    AnthropicToOpenAi(SseParser, translate::MessagesToChatStream),
    OpenAiToAnthropic(SseParser, translate::ChatToMessagesStream),
}

impl Converter {
    pub fn new(upstream: Format, client: Format, model: &str, include_usage: bool) -> Self {
        match (upstream, client) {
            (Format::Anthropic, Format::OpenAi) => Self::AnthropicToOpenAi(
                SseParser::new(),
                translate::MessagesToChatStream::new(model, include_usage),
            ),
            (Format::OpenAi, Format::Anthropic) => Self::OpenAiToAnthropic(
                SseParser::new(),
                translate::ChatToMessagesStream::new(model),
            ),
            (Format::OpenAi, Format::OpenAi) if !include_usage => {
                Self::PassWithoutUsage(crate::stream_usage::UsageStripper::default())
            }
            (_, client) => Self::Pass(client),
        }
    }

    /// For an OpenAI client of an Anthropic upstream: the request `body`'s `response_format`
    /// JSON schema, sent as a forced tool, streams back as content.
    pub fn with_json_answer(self, body: &[u8]) -> Self {
        match self {
            Self::AnthropicToOpenAi(p, tr) => {
                Self::AnthropicToOpenAi(p, tr.with_json_tool(translate::json_answer_tool(body)))
            }
            other => other,
        }
    }

    /// Whether the client sees less than the upstream sent (its usage chunk): the accounting and
    /// the cache then read the upstream's bytes.
    fn hides_usage(&self) -> bool {
        matches!(self, Self::PassWithoutUsage(_))
    }

    fn client_format(&self) -> Format {
        match self {
            Self::Pass(f) => *f,
            Self::AnthropicToOpenAi(..) | Self::PassWithoutUsage(_) => Format::OpenAi,
            Self::OpenAiToAnthropic(..) => Format::Anthropic,
        }
    }

    /// Convert one upstream chunk.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        match self {
            Self::Pass(_) => chunk,
            Self::PassWithoutUsage(s) => s.feed(&chunk),
            Self::AnthropicToOpenAi(parser, tr) => {
                let mut out = Vec::with_capacity(chunk.len() + 64);
                parser.push(&chunk, |ev| tr.on_event(ev.event, ev.data, &mut out));
                Bytes::from(out)
            }
            Self::OpenAiToAnthropic(parser, tr) => {
                let mut out = Vec::with_capacity(chunk.len() * 2);
                parser.push(&chunk, |ev| tr.on_data(ev.data, &mut out));
                Bytes::from(out)
            }
        }
    }

    /// The upstream ended: whatever closing frames are still owed.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Self::Pass(_) | Self::PassWithoutUsage(_) => {}
            Self::AnthropicToOpenAi(_, tr) => tr.finish(&mut out),
            Self::OpenAiToAnthropic(_, tr) => tr.finish(&mut out),
        }
        Bytes::from(out)
    }

    /// An error event in the client's format, ending the stream.
    pub fn error(&mut self, kind: &str, message: &str) -> Bytes {
        let mut out = Vec::new();
        match self.client_format() {
            Format::OpenAi => translate::openai_stream_error(kind, message, &mut out),
            Format::Anthropic => translate::anthropic_stream_error(kind, message, &mut out),
        }
        Bytes::from(out)
    }
}

pub(super) struct RelayState {
    upstream: ByteStream,
    conv: Converter,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    tap: Option<CacheTap>,
    acct: Option<Accounting>,
    guard: Option<Box<guard::GuardedStream>>,
}

/// The client body of a stream: upstream chunks converted as they arrive. With a cache tap, the
/// bytes sent are also assembled into the complete answer, stored when the stream ended well.
pub fn relay(
    upstream: ByteStream,
    conv: Converter,
    deadline: Instant,
    tap: Option<CacheTap>,
    acct: Option<Accounting>,
) -> Body {
    relay_guarded(upstream, conv, deadline, tap, acct, None)
}

/// [`relay`] with the output guardrails over the converted bytes (after the cache and usage
/// taps, which keep the answer as the upstream gave it). A block ends the stream there.
pub(super) fn relay_guarded(
    upstream: ByteStream,
    conv: Converter,
    deadline: Instant,
    tap: Option<CacheTap>,
    acct: Option<Accounting>,
    guard: Option<guard::GuardedStream>,
) -> Body {
    let state = RelayState {
        upstream,
        conv,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        done: false,
        tap,
        acct,
        guard: guard.map(Box::new),
    };
    let s = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let next = tokio::select! {
                biased;
                item = st.upstream.next() => Some(item),
                () = &mut st.deadline => None,
            };
            let mut raw = None;
            let out = match next {
                Some(Some(Ok(chunk))) => {
                    if st.conv.hides_usage() {
                        raw = Some(chunk.clone());
                    }
                    st.conv.feed(chunk)
                }
                Some(Some(Err(e))) => {
                    st.done = true;
                    st.tap = None;
                    // The idle timeout of the last attempt is bounded by the same deadline: when
                    // both fire together, it is the deadline that ended the stream.
                    if Instant::now() + std::time::Duration::from_millis(20)
                        >= st.deadline.deadline()
                    {
                        st.conv
                            .error("timeout", "the request did not finish within its deadline")
                    } else {
                        tracing::warn!(error = %e, "upstream stream failed after it started");
                        st.conv.error("upstream_error", &e.message)
                    }
                }
                Some(None) => {
                    st.done = true;
                    let mut tail = st.conv.finish();
                    if let Some(mut tap) = st.tap.take() {
                        tap.assembler.push(&tail);
                        if let Some(full) = tap.assembler.finish() {
                            // Boxed: inline, the cache write's future would make every stream's
                            // relay state as large as itself for the stream's whole life.
                            Box::pin(store(
                                &tap.cache,
                                &tap.plan,
                                tap.leader,
                                &full,
                                &tap.deployment,
                            ))
                            .await;
                            if let Some((index, entry)) = tap.semantic {
                                index.insert(entry);
                            }
                        }
                    }
                    if let Some(acct) = st.acct.as_mut() {
                        acct.stream().push(&tail);
                    }
                    if let Some(g) = st.guard.as_mut() {
                        let mut b = g.feed(&tail).to_vec();
                        b.extend_from_slice(&g.finish());
                        tail = Bytes::from(b);
                    }
                    return (!tail.is_empty()).then_some((Ok::<_, std::io::Error>(tail), st));
                }
                None => {
                    st.done = true;
                    st.tap = None;
                    st.conv
                        .error("timeout", "the request did not finish within its deadline")
                }
            };
            let seen = raw.as_ref().unwrap_or(&out);
            if let Some(tap) = st.tap.as_mut()
                && !st.done
            {
                tap.assembler.push(seen);
            }
            if let Some(acct) = st.acct.as_mut() {
                acct.stream().push(seen);
            }
            let out = match st.guard.as_mut() {
                Some(g) if !st.done => {
                    let guarded = g.feed(&out);
                    if g.blocked() {
                        // The rest of the answer is not relayed, nor stored.
                        st.done = true;
                        st.tap = None;
                    }
                    guarded
                }
                _ => out,
            };
            if !out.is_empty() {
                return Some((Ok::<_, std::io::Error>(out), st));
            }
        }
    });
    Body::from_stream(s)
}
