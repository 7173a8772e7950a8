//! Guardrails on the request path (`docs/guardrails.md`): the request's texts checked before the
//! cache and the upstream see them (masked values replaced, a block refused with 400
//! `content_filter`, moderation guardrails asked through the gateway's own routing), and the
//! answer checked and restored before the caller sees it (whole, or event by event in a stream).
//!
//! With no `guardrails:` configured the pipeline never calls in here (one `Option` check); with
//! guardrails that do not apply to the request's model and key, one map look-up.

use std::sync::Arc;

use axum::http::HeaderValue;
use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::Error;
use crate::guardrails::answer::{
    AnswerFormat, OutEvent, StreamGuard, guard_answer, needs_guarding,
};
use crate::guardrails::text::{GuardError, RequestFormat, guard_request, request_strings};
use crate::guardrails::{Guardrails, Moderation, Outcome, Report, Selected, Vault};
use crate::providers::{CallCtx, Op};
use crate::runtime::Runtime;
use crate::sse::SseParser;
use crate::wire::{ChatHead, Format};

use super::ChatCall;

/// One request's guardrails: which apply, the vault of its masked values, and what each did
/// (counted in `ai_gateway_guardrail_actions_total` when the request ends).
pub struct Guard {
    sel: Arc<Selected>,
    vault: Vault,
    outcomes: Vec<Outcome>,
    format: AnswerFormat,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (name, o) in self.sel.names().iter().zip(&self.outcomes) {
            crate::metrics::guardrail_action(name, o.as_str());
        }
    }
}

fn note(outcomes: &mut [Outcome], at: usize, o: Outcome) {
    if let Some(slot) = outcomes.get_mut(at)
        && o > *slot
    {
        *slot = o;
    }
}

/// What the request path needs to go on after the input side.
struct Checked {
    guard: Guard,
    /// The body with masked and redacted values replaced (`None`: unchanged).
    body: Option<Bytes>,
}

/// The input side of a chat call: the request's guard (`None` when no guardrail applies) and,
/// when a text changed, the new body with its head parsed again (the model's span moved).
pub async fn check_chat(
    rails: &Guardrails,
    rt: &Runtime,
    call: &ChatCall<'_>,
) -> Result<(Option<Guard>, Option<(Bytes, ChatHead)>), Error> {
    let checked = input(
        rt,
        rails,
        call.caller,
        &call.head.model,
        call.client,
        call.body,
        call.deadline,
        call.ctx,
    )
    .await?;
    let Some(Checked { guard, body }) = checked else {
        return Ok((None, None));
    };
    let guarded = match body {
        None => None,
        Some(b) => {
            let head = match call.client {
                Format::OpenAi => crate::wire::parse_openai_chat(&b)?,
                Format::Anthropic => crate::wire::parse_anthropic_messages(&b)?,
            };
            Some((b, head))
        }
    };
    Ok((Some(guard), guarded))
}

/// The input side of a chat request: `Ok(None)` when no guardrail applies to `model` for this
/// caller. A block is `Err(ContentFiltered)` naming the guardrail, never the matched text.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
async fn input(
    rt: &Runtime,
    rails: &Guardrails,
    caller: &Caller,
    model: &str,
    client: Format,
    body: &Bytes,
    deadline: Instant,
    ctx: &CallCtx,
) -> Result<Option<Checked>, Error> {
    let Some(sel) = rails.select(model, caller.id()) else {
        return Ok(None);
    };
    let (request, format) = match client {
        Format::OpenAi => (RequestFormat::OpenAiChat, AnswerFormat::OpenAiChat),
        Format::Anthropic => (RequestFormat::Anthropic, AnswerFormat::Anthropic),
    };
    let mut guard = Guard {
        outcomes: vec![Outcome::Passed; sel.names().len()],
        sel,
        vault: Vault::default(),
        format,
    };
    let mut new = None;
    if let Some(plan) = &guard.sel.input {
        let mut report = Report::new(plan);
        let r = guard_request(plan, request, body, &mut guard.vault, &mut report);
        for (i, o) in report.outcomes().iter().enumerate() {
            note(&mut guard.outcomes, guard.sel.input_at(i), *o);
        }
        match r {
            Ok(b) => new = b,
            Err(GuardError::Blocked(b)) => return Err(Error::ContentFiltered(b.to_string())),
            Err(e @ GuardError::Malformed(_)) => return Err(Error::invalid(e.to_string())),
        }
    }
    if !guard.sel.moderation.is_empty() {
        let texts = request_strings(request, new.as_ref().unwrap_or(body))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let sel = guard.sel.clone();
        for (at, m) in &sel.moderation {
            let name = &sel.names()[*at];
            match moderate(rt, m, &texts, deadline, ctx).await {
                Ok(false) => {}
                Ok(true) => {
                    note(&mut guard.outcomes, *at, Outcome::Blocked);
                    return Err(Error::ContentFiltered(format!(
                        "the content was blocked by the guardrail '{name}'"
                    )));
                }
                Err(why) if m.block_on_error => {
                    note(&mut guard.outcomes, *at, Outcome::Blocked);
                    tracing::warn!(guardrail = %name, error = %why, "moderation call failed; the request is refused (on_error: block)");
                    return Err(Error::Unavailable {
                        message: format!(
                            "the guardrail '{name}' could not check the content (its moderation call failed) and refuses what it cannot check; try again"
                        ),
                        retry_after: std::time::Duration::from_secs(1),
                    });
                }
                Err(why) => {
                    tracing::warn!(guardrail = %name, error = %why, "moderation call failed; the request goes on (on_error: allow)");
                }
            }
        }
    }
    Ok(Some(Checked { guard, body: new }))
}

#[derive(Deserialize)]
struct ModerationAnswer {
    #[serde(default)]
    results: Vec<ModerationResult>,
}

#[derive(Deserialize)]
struct ModerationResult {
    #[serde(default)]
    flagged: bool,
}

/// Ask the moderation model about `texts` through the gateway's routing: flagged or not, or why
/// it could not tell (never carrying the texts).
async fn moderate(
    rt: &Runtime,
    m: &Moderation,
    texts: &[String],
    deadline: Instant,
    ctx: &CallCtx,
) -> Result<bool, String> {
    if texts.is_empty() {
        return Ok(false);
    }
    let input = serde_json::to_string(texts).map_err(|e| e.to_string())?;
    let body = super::side_call(rt, &m.model, Op::Moderations, &input, deadline, ctx).await?;
    let a: ModerationAnswer = serde_json::from_slice(&body)
        .map_err(|_| "the moderation answer is not a moderation object".to_owned())?;
    if a.results.is_empty() {
        return Err("the moderation answer has no results".to_owned());
    }
    Ok(a.results.iter().any(|r| r.flagged))
}

impl Guard {
    /// A complete answer (in the client's format) as the caller sees it: output guardrails
    /// applied, masked values restored.
    pub fn answer(&mut self, body: Bytes) -> Bytes {
        let plan = self.sel.output.as_ref();
        if !needs_guarding(plan, &self.vault) {
            return body;
        }
        let mut report = plan.map(Report::new).unwrap_or_default();
        let r = guard_answer(plan, self.format, &body, &mut self.vault, &mut report);
        self.note_output(&report);
        match r {
            Ok(a) => a.body.unwrap_or(body),
            // The router checked it is JSON; an answer of another shape is not ours to judge.
            Err(_) => body,
        }
    }

    fn note_output(&mut self, report: &Report) {
        for (i, o) in report.outcomes().iter().enumerate() {
            note(&mut self.outcomes, self.sel.output_at(i), *o);
        }
    }

    /// `x-gateway-guardrails`: each guardrail that applied, with what it did so far (before a
    /// stream, what the input side did).
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.sel.header_value(&self.outcomes)).ok()
    }

    /// The output side of a streamed answer; `None` when there is nothing to do (no output
    /// guardrail, nothing masked): the stream is then relayed untouched.
    pub fn stream(self) -> Option<GuardedStream> {
        if !needs_guarding(self.sel.output.as_ref(), &self.vault) {
            return None;
        }
        let report = self
            .sel
            .output
            .as_ref()
            .map(Report::new)
            .unwrap_or_default();
        Some(GuardedStream {
            sg: StreamGuard::new(self.format, self.sel.output.is_some()),
            guard: self,
            parser: SseParser::new(),
            report,
            events: Vec::new(),
            blocked: false,
        })
    }
}

/// The output side of one streamed answer, over the client-format bytes the relay sends.
pub struct GuardedStream {
    guard: Guard,
    sg: StreamGuard,
    parser: SseParser,
    report: Report,
    events: Vec<OutEvent>,
    blocked: bool,
}

#[derive(Deserialize)]
struct Indexed {
    #[serde(default)]
    index: u64,
}

impl GuardedStream {
    /// Whether a guardrail blocked the answer (nothing more is to be relayed).
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// The bytes to send for `chunk`. After a block the stream's end (in its format) is
    /// appended and every later chunk gives nothing.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        if self.blocked {
            return Bytes::new();
        }
        let mut out = Vec::with_capacity(chunk.len() + 64);
        let Self {
            guard,
            sg,
            parser,
            report,
            events,
            blocked,
        } = self;
        let sel = Arc::clone(&guard.sel);
        let plan = sel.output.as_ref();
        let format = guard.format;
        parser.push(chunk, |ev| {
            if *blocked {
                return;
            }
            if ev.data == "[DONE]" {
                write_event(&mut out, ev.event, ev.data.as_bytes());
                return;
            }
            events.clear();
            let r = sg.event(plan, &mut guard.vault, report, ev.data.as_bytes(), events);
            let mut cut_finished = false;
            for e in events.drain(..) {
                match e {
                    OutEvent::Original => write_event(&mut out, ev.event, ev.data.as_bytes()),
                    OutEvent::Rewritten(d) => {
                        cut_finished = memchr::memmem::find(&d, b"\"content_filter\"").is_some();
                        write_event(&mut out, ev.event, &d);
                    }
                    OutEvent::New { event, data } => write_event(&mut out, event, &data),
                }
            }
            if r.is_err() {
                *blocked = true;
                let index = serde_json::from_str::<Indexed>(ev.data).map_or(0, |i| i.index);
                end_blocked(format, index, cut_finished, &mut out);
            }
        });
        self.guard.note_output(&self.report);
        Bytes::from(out)
    }

    /// The upstream ended: any text still held.
    pub fn finish(&mut self) -> Bytes {
        if self.blocked {
            return Bytes::new();
        }
        let sel = Arc::clone(&self.guard.sel);
        let mut out = Vec::new();
        let r = self.sg.finish(
            sel.output.as_ref(),
            &mut self.guard.vault,
            &mut self.report,
            &mut self.events,
        );
        for e in self.events.drain(..) {
            if let OutEvent::New { event, data } = e {
                write_event(&mut out, event, &data);
            }
        }
        if r.is_err() {
            self.blocked = true;
        }
        self.guard.note_output(&self.report);
        Bytes::from(out)
    }
}

fn write_event(out: &mut Vec<u8>, event: &str, data: &[u8]) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// End a stream whose answer a guardrail blocked, the way providers end a filtered answer.
fn end_blocked(format: AnswerFormat, index: u64, finished: bool, out: &mut Vec<u8>) {
    match format {
        // Chat streams only reach here (a Responses client's answer is translated from chat).
        AnswerFormat::OpenAiChat | AnswerFormat::Responses => {
            if !finished {
                write_event(
                    out,
                    "",
                    br#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}"#,
                );
            }
            write_event(out, "", b"[DONE]");
        }
        AnswerFormat::Anthropic => {
            let stop = format!(r#"{{"type":"content_block_stop","index":{index}}}"#);
            write_event(out, "content_block_stop", stop.as_bytes());
            write_event(
                out,
                "message_delta",
                br#"{"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null},"usage":{"output_tokens":0}}"#,
            );
            write_event(out, "message_stop", br#"{"type":"message_stop"}"#);
        }
    }
}
