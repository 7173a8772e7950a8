//! Bedrock `ConverseStream` events -> OpenAI chunks. The events arrive as AWS event-stream
//! frames; `providers::aws::eventstream` decodes them and the caller hands each frame's
//! `:event-type` and JSON payload here (or its `:exception-type` for an exception frame).
//!
//! Order on the wire: `messageStart`, then per content block `contentBlockStart` (tool use
//! only), `contentBlockDelta`s and `contentBlockStop`, then `messageStop` (the stop reason) and
//! `metadata` (usage), the last event.

use std::borrow::Cow;

use serde::Deserialize;

use super::super::json::JStr;
use super::super::pivot::answer::Usage;
use super::super::pivot::chunks::{ChunkWriter, StreamFault};
use super::super::tool_ids::BEDROCK;
use super::{ConverseUsage, error_type, finish_reason};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    content_block_index: Option<u32>,
    #[serde(borrow)]
    start: Option<Start<'a>>,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<ConverseUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(borrow)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    tool_use: Option<ToolDelta<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    /// A fragment of the input's JSON text.
    #[serde(borrow)]
    input: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct ReasoningDelta<'a> {
    #[serde(borrow)]
    text: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct ExceptionBody<'a> {
    #[serde(borrow, alias = "Message")]
    message: Option<Cow<'a, str>>,
}

/// ConverseStream events -> OpenAI `data: {chat.completion.chunk}\n\n` frames, ending with
/// `data: [DONE]\n\n`.
#[derive(Debug)]
pub struct BedrockToChatStream {
    w: ChunkWriter,
    /// (content-block index, the OpenAI tool-call index it became)
    tools: Vec<(u32, u32)>,
    finish_sent: bool,
    usage: Usage,
}

impl BedrockToChatStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        BedrockToChatStream {
            w: ChunkWriter::new(model, include_usage, crate::clock::unix_secs()),
            tools: Vec::new(),
            finish_sent: false,
            usage: Usage::default(),
        }
    }

    /// Report this `created` time instead of the current one (for reproducible output).
    pub fn with_created(mut self, created: u64) -> Self {
        self.w.set_created(created);
        self
    }

    fn tool(&self, block: Option<u32>) -> Option<u32> {
        let block = block?;
        self.tools
            .iter()
            .rev()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }

    /// One event frame (`:message-type` `event`): its `:event-type` and JSON payload.
    pub fn on_event(&mut self, event_type: &str, payload: &[u8], out: &mut Vec<u8>) {
        if self.w.is_done() {
            return;
        }
        let ev: Event = match serde_json::from_slice(payload) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, event_type, "skipped an unreadable ConverseStream event");
                return;
            }
        };
        match event_type {
            "messageStart" => self.w.role(0, out),
            "contentBlockStart" => {
                let (Some(block), Some(t)) =
                    (ev.content_block_index, ev.start.and_then(|s| s.tool_use))
                else {
                    return;
                };
                let tool = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                self.tools.push((block, tool));
                self.w.tool_call(
                    0,
                    tool,
                    &BEDROCK.to_openai(&t.tool_use_id),
                    t.name.raw(),
                    "\"\"",
                    out,
                );
            }
            "contentBlockDelta" => {
                let Some(d) = ev.delta else { return };
                if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                    self.w.content(0, t.raw(), out);
                } else if let Some(input) = d.tool_use.and_then(|t| t.input) {
                    match self.tool(ev.content_block_index) {
                        Some(tool) if !input.is_empty() => {
                            self.w.tool_args(0, tool, input.raw(), out);
                        }
                        _ => {}
                    }
                } else if let Some(t) = d
                    .reasoning_content
                    .and_then(|r| r.text)
                    .filter(|t| !t.is_empty())
                {
                    self.w.reasoning(0, t.raw(), out);
                }
                // Reasoning signatures and redacted reasoning have no OpenAI form.
            }
            "contentBlockStop" => {}
            "messageStop" => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    let reason = ev.stop_reason.as_deref().unwrap_or("end_turn");
                    self.w.finish(0, finish_reason(reason), out);
                }
            }
            "metadata" => {
                if let Some(u) = ev.usage {
                    self.usage = u.to_openai();
                }
                if self.finish_sent {
                    self.w.close(&self.usage, out);
                }
            }
            other => tracing::debug!(event = other, "skipped an unknown ConverseStream event"),
        }
    }

    /// A fault as an error event and `[DONE]`.
    pub fn on_error_fault(&mut self, f: &StreamFault, out: &mut Vec<u8>) {
        self.w.fault(f, out);
    }

    /// Whether the stream was closed (`[DONE]` written).
    pub fn is_done(&self) -> bool {
        self.w.is_done()
    }

    /// An exception frame (`:message-type` `exception`, e.g. `throttlingException`,
    /// `modelStreamErrorException`; the payload holds `{"message"}`): an error event, then
    /// `[DONE]`.
    pub fn on_exception(&mut self, exception_type: &str, payload: &[u8], out: &mut Vec<u8>) {
        self.w.fault(&exception_fault(exception_type, payload), out);
    }

    /// An error the stream reported (an `error` frame's `:error-code` and `:error-message`, or
    /// an exception): an error event, then `[DONE]`.
    pub fn on_error(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.w.fault(&error_fault(code, message), out);
    }

    /// The stream ended (upstream EOF): the closing chunks, or the fault of a stream cut short
    /// (not written).
    pub fn finish_checked(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.w.is_done() {
            return Ok(());
        }
        if self.finish_sent {
            self.w.close(&self.usage, out);
            Ok(())
        } else {
            Err(StreamFault::truncated())
        }
    }

    /// The upstream's stream itself is broken (a corrupt or cut frame): an error event of type
    /// `upstream_error`, then `[DONE]`.
    pub fn on_broken(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.w.error("upstream_error", reason, out);
    }

    /// The upstream ended. After `metadata` nothing is owed; after `messageStop` the usage chunk
    /// (when asked for) and `[DONE]`; earlier, the stream was cut short and ends with an error
    /// frame and `[DONE]`. `[DONE]` is written exactly once over the stream's life.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.w.is_done() {
            return;
        }
        if self.finish_sent {
            self.w.close(&self.usage, out);
        } else {
            self.w.truncated(out);
        }
    }
}

/// An exception frame's fault (the payload holds `{"message"}`).
pub fn exception_fault(exception_type: &str, payload: &[u8]) -> StreamFault {
    let body = serde_json::from_slice::<ExceptionBody>(payload).ok();
    let message = body
        .as_ref()
        .and_then(|b| b.message.as_deref())
        .unwrap_or("");
    error_fault(exception_type, message)
}

/// An `error` frame's (or an exception's) fault.
pub fn error_fault(code: &str, message: &str) -> StreamFault {
    let message = if message.is_empty() {
        format!("{code} from the upstream stream")
    } else {
        format!("{code}: {message}")
    };
    StreamFault {
        error_type: error_type(code),
        message,
    }
}
