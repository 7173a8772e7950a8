//! What the gateway reads of a client's request body, and the one edit it makes on pass-through.
//!
//! Bodies are parsed once into small borrowed "head" structs: the fields routing, limits and the
//! cache need, plus enough type checking to answer malformed requests with a 400 naming the field.
//! Everything else stays in the original bytes. When client and upstream speak the same format the
//! body is forwarded with only `model` replaced, by splicing the bytes of its JSON string
//! ([`splice_model`]), never by re-serialising the document.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;

mod calls;
mod passthrough;
pub use calls::{Endpoint, Format, Op};
pub use passthrough::{
    PassHead, form_fields, multipart_content_type, parse_multipart, parse_passthrough,
    splice_pass_model,
};

/// The parts of a chat request (OpenAI or Anthropic) the gateway itself uses.
#[derive(Debug, Clone)]
pub struct ChatHead {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// `max_completion_tokens` / `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Byte range of `model`'s JSON string in the body.
    pub model_span: Range<usize>,
    /// The prompt's tokens, when the parse was asked to count them and the tokenizer was ready.
    pub prompt_tokens: Option<u64>,
}

/// The parts of an embeddings request the gateway uses.
#[derive(Debug, Clone)]
pub struct EmbeddingsHead {
    pub model: String,
    pub model_span: Range<usize>,
}

#[derive(Deserialize)]
struct OpenAiChatProbe<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<Vec<OpenAiMessageProbe<'a>>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    #[expect(dead_code, reason = "type-checked only")]
    n: Option<u32>,
    #[expect(dead_code, reason = "type-checked only")]
    temperature: Option<f64>,
    #[expect(dead_code, reason = "type-checked only")]
    top_p: Option<f64>,
    #[expect(dead_code, reason = "type-checked only")]
    seed: Option<i64>,
    /// Type-checked, and read for the token count.
    #[serde(borrow)]
    tools: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct OpenAiMessageProbe<'a> {
    #[serde(borrow)]
    role: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    /// Read for the token count only (any JSON, as before).
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct AnthropicProbe<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<Vec<AnthropicMessageProbe<'a>>>,
    max_tokens: Option<u64>,
    stream: Option<bool>,
    #[serde(borrow)]
    #[expect(dead_code, reason = "type-checked only")]
    system: Option<&'a RawValue>,
    #[expect(dead_code, reason = "type-checked only")]
    temperature: Option<f64>,
}

#[derive(Deserialize)]
struct AnthropicMessageProbe<'a> {
    #[serde(borrow)]
    role: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EmbeddingsProbe<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    encoding_format: Option<String>,
}

fn utf8(body: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(body).map_err(|e| {
        Error::invalid(format!(
            "the request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, Error> {
    // serde also reads a struct from an array of its fields: only an object is a request.
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        None => {
            return Err(Error::invalid(
                "the request body is empty; send a JSON object",
            ));
        }
        Some(_) => {
            return Err(Error::invalid("the request body must be a JSON object"));
        }
    }
    // The fast path: plain serde. Only a body that fails is parsed again to name the field.
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(Error::invalid(format!(
                    "the request body is not valid JSON: {inner}"
                )))
            } else if path == "." {
                Err(Error::invalid(format!(
                    "the request body must be a JSON object: {inner}"
                )))
            } else {
                Err(Error::invalid(format!("{path}: {inner}")))
            }
        }
    }
}

/// The raw JSON of an array of `body` from its elements: from the `[` before the first to the
/// `]` after the last (`[]` when it has none). serde reads the array element by element (to check
/// that it is one), so its text as one piece is found around them.
fn array_text<'a>(body: &'a str, elements: &[&RawValue]) -> &'a str {
    let (Some(first), Some(last)) = (elements.first(), elements.last()) else {
        return "[]";
    };
    let offset = |raw: &str| (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let start = offset(first.get());
    let end = offset(last.get()).saturating_add(last.get().len());
    let open = body.get(..start).and_then(|b| b.rfind('['));
    let close = body
        .get(end..)
        .and_then(|b| b.find(']'))
        .map(|i| end + i + 1);
    match (open, close) {
        (Some(open), Some(close)) => body.get(open..close).unwrap_or("[]"),
        _ => "[]",
    }
}

/// Check a message's `content`: a string, (OpenAI) null, or an array of content parts, each an
/// object with a string `type`. A string or null is told by its first byte; only an array is
/// read again, element by element (the other fields of a part are skipped, not kept).
fn check_content(raw: &RawValue, null_ok: bool, at: impl FnOnce() -> String) -> Result<(), Error> {
    let what = if null_ok {
        "must be a string, an array of content parts or null"
    } else {
        "must be a string or an array of content blocks"
    };
    match raw.get().as_bytes().first() {
        Some(b'"') => Ok(()),
        Some(b'n') if null_ok => Ok(()),
        Some(b'[') => {
            let bad = std::cell::Cell::new(0);
            let mut de = serde_json::Deserializer::from_str(raw.get());
            match serde::de::DeserializeSeed::deserialize(PartsCheck(&bad), &mut de) {
                Ok(()) => Ok(()),
                Err(_) => Err(Error::invalid(format!(
                    "{}[{}]: {what}; a content part must be an object with a string \"type\"",
                    at(),
                    bad.get()
                ))),
            }
        }
        _ => Err(Error::invalid(format!("{}: {what}", at()))),
    }
}

/// Reads an array of content parts; on failure, the index of the part that is not one.
struct PartsCheck<'c>(&'c std::cell::Cell<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for PartsCheck<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PartsCheck<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of content parts")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(PartCheck)?.is_some() {
            i += 1;
            self.0.set(i);
        }
        Ok(())
    }
}

/// Reads one content part: an object (not an array, which serde would also take for a struct)
/// with a string `type`; its other fields are skipped.
struct PartCheck;

impl<'de> serde::de::DeserializeSeed<'de> for PartCheck {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PartCheck {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a content part: an object with a string \"type\"")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut typed = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "type" {
                map.next_value::<std::borrow::Cow<'de, str>>()?;
                typed = true;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if typed {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("type"))
        }
    }
}

/// The model name and its byte span, from the raw JSON value of `model`.
fn model_of(body: &str, raw: Option<&RawValue>) -> Result<(String, Range<usize>), Error> {
    let raw = raw.ok_or_else(|| Error::invalid("you must provide a model parameter"))?;
    let name: String = serde_json::from_str(raw.get())
        .map_err(|_| Error::invalid("model: must be a string naming a configured model"))?;
    if name.is_empty() {
        return Err(Error::invalid("model: must not be empty"));
    }
    let start = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let end = start + raw.get().len();
    if end > body.len() {
        return Err(Error::Internal("model span outside body".into()));
    }
    Ok((name, start..end))
}

/// Parse and check an OpenAI chat completions request.
pub fn parse_openai_chat(body: &[u8]) -> Result<ChatHead, Error> {
    parse_openai_chat_counting(body, |_| false)
}

/// [`parse_openai_chat`], also counting the prompt's tokens from the same parse when
/// `count_for(model)` says the request needs them (a tokens-per-minute limit on an OpenAI-format
/// deployment) and the tokenizer is ready: the count then needs no parse of its own.
pub fn parse_openai_chat_counting(
    body: &[u8],
    count_for: impl FnOnce(&str) -> bool,
) -> Result<ChatHead, Error> {
    let text = utf8(body)?;
    let p: OpenAiChatProbe<'_> = parse(text)?;
    let (model, model_span) = model_of(text, p.model)?;
    let messages = p
        .messages
        .ok_or_else(|| Error::invalid("you must provide a messages parameter"))?;
    if messages.is_empty() {
        return Err(Error::invalid(
            "messages: must contain at least one message",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_ref() {
            "system" | "developer" | "user" | "assistant" | "tool" | "function" => {}
            other => {
                return Err(Error::invalid(format!(
                    "messages[{i}].role: \"{other}\" is not one of system, developer, user, assistant, tool"
                )));
            }
        }
        if let Some(c) = m.content {
            check_content(c, true, || format!("messages[{i}].content"))?;
        }
    }
    let prompt_tokens = if count_for(&model) {
        crate::tokens::tokenizer().map(|bpe| {
            let texts = messages.iter().map(|m| crate::tokens::ChatText {
                content: m.content.map(RawValue::get),
                name: m
                    .name
                    .and_then(|n| serde_json::from_str::<std::borrow::Cow<'_, str>>(n.get()).ok()),
                tool_calls: m.tool_calls.map(RawValue::get),
            });
            crate::tokens::count_chat(bpe, texts, p.tools.as_deref().map(|t| array_text(text, t)))
        })
    } else {
        None
    };
    Ok(ChatHead {
        model,
        stream: p.stream.unwrap_or(false),
        include_usage: p
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: p.max_completion_tokens.or(p.max_tokens),
        model_span,
        prompt_tokens,
    })
}

/// Parse and check an Anthropic messages request.
pub fn parse_anthropic_messages(body: &[u8]) -> Result<ChatHead, Error> {
    let text = utf8(body)?;
    let p: AnthropicProbe<'_> = parse(text)?;
    let (model, model_span) = model_of(text, p.model)?;
    let messages = p
        .messages
        .ok_or_else(|| Error::invalid("messages: Field required"))?;
    if messages.is_empty() {
        return Err(Error::invalid("messages: at least one message is required"));
    }
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_ref(), "user" | "assistant") {
            return Err(Error::invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        match m.content {
            Some(c) => check_content(c, false, || format!("messages.{i}.content"))?,
            None => {
                return Err(Error::invalid(format!(
                    "messages.{i}.content: must be a string or an array of content blocks"
                )));
            }
        }
    }
    let max_tokens = p
        .max_tokens
        .ok_or_else(|| Error::invalid("max_tokens: Field required"))?;
    Ok(ChatHead {
        model,
        stream: p.stream.unwrap_or(false),
        include_usage: true,
        max_tokens: Some(max_tokens),
        model_span,
        prompt_tokens: None,
    })
}

/// Parse and check an OpenAI embeddings request.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsHead, Error> {
    let text = utf8(body)?;
    let p: EmbeddingsProbe<'_> = parse(text)?;
    let (model, model_span) = model_of(text, p.model)?;
    let input = p
        .input
        .ok_or_else(|| Error::invalid("you must provide an input parameter"))?;
    match input.get().as_bytes().first() {
        Some(b'"' | b'[') => {}
        _ => {
            return Err(Error::invalid(
                "input: must be a string, an array of strings, or an array of token arrays",
            ));
        }
    }
    if input.get() == "[]" || input.get() == "\"\"" {
        return Err(Error::invalid("input: must not be empty"));
    }
    if let Some(f) = p.encoding_format.as_deref()
        && f != "float"
        && f != "base64"
    {
        return Err(Error::invalid(
            "encoding_format: must be \"float\" or \"base64\"",
        ));
    }
    Ok(EmbeddingsHead { model, model_span })
}

/// The body with the JSON string at `span` replaced by `model`: one copy, no re-serialisation;
/// no copy at all when the body already names `model` exactly so (the deployment's model has
/// the client's name, as in most configurations).
pub fn splice_model(body: &Bytes, span: &Range<usize>, model: &str) -> Bytes {
    if let Some(current) = body.get(span.clone())
        && current.len() == model.len() + 2
        && current.get(1..current.len() - 1) == Some(model.as_bytes())
        && !model.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        return body.clone();
    }
    let quoted = json_string(model);
    let mut out = BytesMut::with_capacity(body.len() + quoted.len());
    out.put_slice(&body[..span.start.min(body.len())]);
    out.put_slice(quoted.as_bytes());
    out.put_slice(&body[span.end.min(body.len())..]);
    out.freeze()
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The model and `stream` of a Responses request (async submissions and batch lines check them).
pub fn parse_responses_head(body: &[u8]) -> Result<(String, bool), Error> {
    #[derive(serde::Deserialize)]
    struct Head {
        model: Option<String>,
        stream: Option<bool>,
    }
    let h: Head = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("the request body is not valid JSON: {e}")))?;
    let model = h
        .model
        .ok_or_else(|| Error::invalid("you must provide a model parameter"))?;
    Ok((model, h.stream == Some(true)))
}

#[cfg(test)]
mod tests;
