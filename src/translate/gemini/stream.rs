//! Gemini `streamGenerateContent?alt=sse` -> OpenAI chunks. Each SSE `data:` is a whole
//! `GenerateContentResponse` holding the next piece of each candidate; a function call arrives
//! whole in one piece. Gemini has no end event: the chunk with a `finishReason` is the last of
//! its candidate, and the stream closes after it.

use super::super::json::write_str;
use super::super::pivot::answer::Usage;
use super::super::pivot::chunks::{ChunkWriter, StreamFault};
use super::wire::GenResponse;
use super::{finish_reason, tool_call_id};

#[derive(Debug, Clone, Copy)]
struct Cand {
    index: u32,
    tool_calls: u32,
    finished: bool,
}

/// Gemini stream chunks -> OpenAI `data: {chat.completion.chunk}\n\n` frames, ending with
/// `data: [DONE]\n\n`.
#[derive(Debug)]
pub struct GeminiToChatStream {
    w: ChunkWriter,
    cands: Vec<Cand>,
    usage: Usage,
    /// A blocked prompt or a finished candidate was seen: the answer is complete.
    complete: bool,
    /// Scratch for a tool call's arguments as a JSON string literal.
    args: Vec<u8>,
}

impl GeminiToChatStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        GeminiToChatStream {
            w: ChunkWriter::new(model, include_usage, crate::clock::unix_secs()),
            cands: Vec::new(),
            usage: Usage::default(),
            complete: false,
            args: Vec::new(),
        }
    }

    /// Report this `created` time instead of the current one (for reproducible output).
    pub fn with_created(mut self, created: u64) -> Self {
        self.w.set_created(created);
        self
    }

    fn cand(&mut self, index: u32) -> &mut Cand {
        let pos = match self.cands.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                self.cands.push(Cand {
                    index,
                    tool_calls: 0,
                    finished: false,
                });
                self.cands.len() - 1
            }
        };
        &mut self.cands[pos]
    }

    /// One SSE `data:` payload.
    pub fn on_data(&mut self, data: &str, out: &mut Vec<u8>) {
        if let Err(f) = self.on_data_checked(data, out) {
            self.w.fault(&f, out);
        }
    }

    /// One SSE `data:` payload; an error chunk is handed back instead of written (the stream
    /// then writes nothing more).
    pub fn on_data_checked(&mut self, data: &str, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.w.is_done() {
            return Ok(());
        }
        let chunk: GenResponse = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "skipped an unreadable Gemini stream chunk");
                return Ok(());
            }
        };
        if let Some(e) = &chunk.error {
            let message = e.message.as_deref().unwrap_or("upstream stream error");
            return Err(StreamFault {
                error_type: e.client_type(),
                message: message.to_owned(),
            });
        }
        if let Some(id) = chunk.response_id.as_deref() {
            self.w.set_id(id);
        }
        if let Some(u) = chunk.usage_metadata {
            // Each chunk's usage counts everything so far.
            self.usage = u.to_openai();
        }
        let candidates = chunk.candidates.unwrap_or_default();
        if candidates.is_empty() {
            if chunk
                .prompt_feedback
                .is_some_and(|f| f.block_reason.is_some())
            {
                self.w.finish(0, "content_filter", out);
                self.complete = true;
            }
            return Ok(());
        }
        for (pos, c) in candidates.iter().enumerate() {
            let index = c
                .index
                .unwrap_or_else(|| u32::try_from(pos).unwrap_or(u32::MAX));
            if self.cand(index).finished {
                continue;
            }
            self.w.role(index, out);
            for p in c.content.iter().flat_map(|c| &c.parts) {
                if let Some(f) = &p.function_call {
                    let cand = self.cand(index);
                    let tool = cand.tool_calls;
                    cand.tool_calls = tool.saturating_add(1);
                    let id = tool_call_id(p.thought_signature.as_deref());
                    self.args.clear();
                    write_str(&mut self.args, f.args());
                    let args = std::str::from_utf8(&self.args).unwrap_or("\"{}\"");
                    self.w.tool_call(index, tool, &id, f.name.raw(), args, out);
                } else if let Some(t) = p.text.filter(|t| !t.is_empty()) {
                    if p.is_thought() {
                        self.w.reasoning(index, t.raw(), out);
                    } else {
                        self.w.content(index, t.raw(), out);
                    }
                }
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let cand = self.cand(index);
                cand.finished = true;
                let called = cand.tool_calls > 0;
                self.w.finish(index, finish_reason(reason, called), out);
                self.complete = true;
            }
        }
        Ok(())
    }

    /// The upstream ended. After a finished candidate (or a blocked prompt): the usage chunk
    /// (when asked for) and `[DONE]`; otherwise the stream was cut short and ends with an error
    /// frame and `[DONE]`. `[DONE]` is written exactly once over the stream's life.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Err(f) = self.finish_checked(out) {
            self.w.fault(&f, out);
        }
    }

    /// The upstream ended: the closing chunks, or the fault of a stream cut short (not written).
    pub fn finish_checked(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.w.is_done() {
            return Ok(());
        }
        if self.complete {
            self.w.close(&self.usage, out);
            Ok(())
        } else {
            Err(StreamFault::truncated())
        }
    }
}
