//! Request heads of the pass-through endpoints (`/v1/completions`, `/v1/images/generations`,
//! `/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/moderations`, `/v1/rerank`): the few
//! fields the gateway itself uses, read without re-writing the body, and the `model` splice. A
//! transcription's body is `multipart/form-data`: its parts are found by scanning for the
//! boundary (the file's bytes are never copied or parsed), and the forwarded body starts at the
//! first boundary line, so its content type can be read back from it ([`multipart_content_type`]).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{StreamOptions, model_of, parse, utf8};
use crate::error::Error;

/// The parts of a pass-through request the gateway uses.
#[derive(Debug, Clone)]
pub struct PassHead {
    pub model: String,
    /// Byte range of the model in the body: its JSON string (with quotes), or the bytes of the
    /// multipart field.
    pub model_span: Range<usize>,
    /// Whether the body is `multipart/form-data` (the model is spliced in raw).
    pub multipart: bool,
    /// `stream: true`, or speech's `stream_format: "sse"`: the answer is an event stream.
    pub stream: bool,
    /// `stream_options.include_usage` (legacy completions).
    pub include_usage: bool,
    /// `max_tokens` (legacy completions).
    pub max_tokens: Option<u64>,
    /// `response_format` when it is a string (speech: the audio format; transcriptions: json,
    /// text, srt, verbose_json or vtt).
    pub response_format: Option<String>,
}

impl PassHead {
    /// The content type of a whole answer of `op` that is not JSON: speech's audio in its
    /// `response_format` (OpenAI's: mp3 by default), a transcription asked for as `text`, `srt`
    /// or `vtt` (`None`: JSON, or an event stream when the request streams).
    pub fn content_type(&self, op: super::Op) -> Option<&'static str> {
        let format = self.response_format.as_deref();
        match op {
            super::Op::Speech => Some(match format {
                Some("opus") => "audio/opus",
                Some("aac") => "audio/aac",
                Some("flac") => "audio/flac",
                Some("wav") => "audio/wav",
                Some("pcm") => "audio/pcm",
                _ => "audio/mpeg",
            }),
            super::Op::Transcriptions if matches!(format, Some("text" | "srt" | "vtt")) => {
                Some("text/plain; charset=utf-8")
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct PassProbe<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    #[serde(borrow)]
    response_format: Option<&'a RawValue>,
    /// Speech: `"sse"` asks for the audio as events.
    #[serde(borrow)]
    stream_format: Option<std::borrow::Cow<'a, str>>,
}

/// Parse a pass-through JSON request: `model` must be a string; every field of `required` must
/// be present (`"prompt"` for completions, …); `stream`, `stream_options` and `max_tokens` are
/// type-checked.
pub fn parse_passthrough(body: &[u8], required: &[&str]) -> Result<PassHead, Error> {
    let text = utf8(body)?;
    let p: PassProbe<'_> = parse(text)?;
    let (model, model_span) = model_of(text, p.model)?;
    if !required.is_empty() {
        let present: std::collections::HashMap<String, serde::de::IgnoredAny> =
            serde_json::from_str(text).map_err(|e| Error::invalid(e.to_string()))?;
        if let Some(missing) = required.iter().find(|f| !present.contains_key(**f)) {
            return Err(Error::invalid(format!(
                "you must provide a {missing} parameter"
            )));
        }
    }
    Ok(PassHead {
        model,
        model_span,
        multipart: false,
        stream: p.stream.unwrap_or(false) || p.stream_format.as_deref() == Some("sse"),
        include_usage: p
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: p.max_tokens,
        response_format: p
            .response_format
            .and_then(|r| serde_json::from_str::<String>(r.get()).ok()),
    })
}

/// The boundary of a `multipart/form-data` content type.
fn boundary_of(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

/// One part of a multipart body: its field name and the range of its content.
struct Part<'a> {
    name: &'a str,
    content: Range<usize>,
}

/// The `name` parameter of a part's `Content-Disposition` header.
fn field_name(headers: &str) -> Option<&str> {
    headers.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("name") {
                return None;
            }
            let v = v.trim();
            Some(
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v),
            )
        })
    })
}

fn malformed(what: &str) -> Error {
    Error::invalid(format!("the multipart/form-data body is malformed: {what}"))
}

/// The parts of a multipart body that starts at its first delimiter line.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, Error> {
    let delim = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delim.as_bytes());
    // The body starts with `--boundary` (no CRLF before the first).
    let mut at = delim.len() - 2;
    let mut out = Vec::new();
    loop {
        let rest = body.get(at..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        // The rest of the delimiter line (transport padding allowed), then the part's headers.
        let line_end = memmem::find(rest, b"\r\n").ok_or_else(|| malformed("a part is cut"))?;
        let headers_start = at + line_end + 2;
        let head_len = memmem::find(body.get(headers_start..).unwrap_or_default(), b"\r\n\r\n")
            .ok_or_else(|| malformed("a part's headers do not end"))?;
        let headers = std::str::from_utf8(&body[headers_start..headers_start + head_len])
            .map_err(|_| malformed("a part's headers are not UTF-8"))?;
        let content_start = headers_start + head_len + 4;
        let content_len = finder
            .find(body.get(content_start..).unwrap_or_default())
            .ok_or_else(|| malformed("the closing boundary is missing"))?;
        let name = field_name(headers)
            .ok_or_else(|| malformed("a part has no Content-Disposition name"))?;
        out.push(Part {
            name,
            content: content_start..content_start + content_len,
        });
        at = content_start + content_len + delim.len();
    }
}

/// The text of the field `name` and its range, if the form has it.
fn field_text<'b>(
    parts: &[Part<'_>],
    body: &'b [u8],
    name: &str,
) -> Result<Option<(&'b str, Range<usize>)>, Error> {
    match parts.iter().find(|p| p.name == name) {
        None => Ok(None),
        Some(p) => std::str::from_utf8(&body[p.content.clone()])
            .map(|s| Some((s, p.content.clone())))
            .map_err(|_| Error::invalid(format!("{name}: must be UTF-8 text"))),
    }
}

/// Parse a `multipart/form-data` request (a transcription): its `model` field (required),
/// `stream` and `response_format`; `file` must be there. Answers the head and the body to
/// forward (from the first delimiter on: a preamble before it is dropped).
pub fn parse_multipart(content_type: &str, body: &Bytes) -> Result<(PassHead, Bytes), Error> {
    let boundary = boundary_of(content_type).ok_or_else(|| {
        Error::invalid(
            "the request must be multipart/form-data with a boundary (Content-Type: multipart/form-data; boundary=…)",
        )
    })?;
    let first = format!("--{boundary}");
    let start = if body.starts_with(first.as_bytes()) {
        0
    } else {
        memmem::find(body, format!("\r\n{first}").as_bytes())
            .map(|i| i + 2)
            .ok_or_else(|| malformed("no boundary line"))?
    };
    let body = body.slice(start..);
    let parts = parts(&body, boundary)?;
    let text = |name: &str| field_text(&parts, &body, name);
    let (model, model_span) =
        text("model")?.ok_or_else(|| Error::invalid("you must provide a model parameter"))?;
    let model = model.trim().to_owned();
    if model.is_empty() {
        return Err(Error::invalid("model: must not be empty"));
    }
    if !parts.iter().any(|p| p.name == "file") {
        return Err(Error::invalid("you must provide a file parameter"));
    }
    let stream = match text("stream")? {
        None => false,
        Some((s, _)) => match s.trim() {
            "true" | "True" | "1" => true,
            "false" | "False" | "0" => false,
            other => {
                return Err(Error::invalid(format!(
                    "stream: must be true or false, not \"{}\"",
                    crate::error::clip(other)
                )));
            }
        },
    };
    let response_format = text("response_format")?.map(|(s, _)| s.trim().to_owned());
    let head = PassHead {
        model,
        model_span,
        multipart: true,
        stream,
        include_usage: false,
        max_tokens: None,
        response_format,
    };
    Ok((head, body))
}

/// The body with `head`'s model replaced by `model` (a JSON string, or a multipart field's
/// bytes); the body itself when it already names it.
pub fn splice_pass_model(body: &Bytes, head: &PassHead, model: &str) -> Bytes {
    if !head.multipart {
        return super::splice_model(body, &head.model_span, model);
    }
    let span = &head.model_span;
    if body.get(span.clone()) == Some(model.as_bytes()) {
        return body.clone();
    }
    let mut out = BytesMut::with_capacity(body.len() + model.len());
    out.put_slice(&body[..span.start.min(body.len())]);
    out.put_slice(model.as_bytes());
    out.put_slice(&body[span.end.min(body.len())..]);
    out.freeze()
}

/// The boundary of a multipart body that starts with its first delimiter line.
fn first_boundary(body: &[u8]) -> Option<&str> {
    let line = body.strip_prefix(b"--")?;
    let end = memmem::find(line.get(..72.min(line.len()))?, b"\r\n")?;
    Some(std::str::from_utf8(&line[..end]).ok()?.trim_end())
}

/// The content type of a multipart body that starts with its first delimiter line, read back
/// from it (the body forwarded upstream keeps the client's boundary).
pub fn multipart_content_type(body: &[u8]) -> Option<http::HeaderValue> {
    let boundary = first_boundary(body)?;
    http::HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")).ok()
}

/// The fields of a multipart body that starts with its first delimiter line (as forwarded
/// upstream), by name with their bytes: what the `mock` provider reads of a transcription.
pub fn form_fields(body: &[u8]) -> Result<Vec<(&str, &[u8])>, Error> {
    let boundary = first_boundary(body).ok_or_else(|| malformed("no boundary line"))?;
    Ok(parts(body, boundary)?
        .into_iter()
        .map(|p| (p.name, &body[p.content]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(boundary: &str, fields: &[(&str, &str)]) -> Bytes {
        let mut b = String::from("preamble\r\n");
        for (name, value) in fields {
            let file = if *name == "file" {
                "; filename=\"a.wav\"\r\nContent-Type: audio/wav"
            } else {
                ""
            };
            b.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n"
            ));
        }
        b.push_str(&format!("--{boundary}--\r\n"));
        Bytes::from(b)
    }

    #[test]
    fn multipart_model_is_found_and_spliced() {
        let body = form(
            "XyZ",
            &[
                ("file", "RIFF\r\n--Xy not a boundary"),
                ("model", "whisper"),
                ("stream", "false"),
            ],
        );
        let (head, fwd) = parse_multipart("multipart/form-data; boundary=\"XyZ\"", &body).unwrap();
        assert_eq!(head.model, "whisper");
        assert!(!head.stream);
        assert!(fwd.starts_with(b"--XyZ\r\n"));
        let out = splice_pass_model(&fwd, &head, "whisper-1");
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ"));
        assert!(text.contains("RIFF\r\n--Xy not a boundary\r\n"));
        assert_eq!(
            multipart_content_type(&out).unwrap(),
            "multipart/form-data; boundary=XyZ"
        );
        let fields = form_fields(&out).unwrap();
        let field = |n: &str| fields.iter().find(|(name, _)| *name == n).unwrap().1;
        assert_eq!(field("file"), b"RIFF\r\n--Xy not a boundary");
        assert_eq!(field("model"), b"whisper-1");
        assert!(form_fields(b"no boundary").is_err());
    }

    #[test]
    fn multipart_errors_are_clear() {
        let ct = "multipart/form-data; boundary=b";
        let e = parse_multipart(ct, &form("b", &[("file", "x")])).unwrap_err();
        assert!(e.to_string().contains("model parameter"), "{e}");
        let e = parse_multipart(ct, &form("b", &[("model", "m")])).unwrap_err();
        assert!(e.to_string().contains("file parameter"), "{e}");
        let e = parse_multipart("application/json", &form("b", &[("model", "m")])).unwrap_err();
        assert!(e.to_string().contains("multipart/form-data"), "{e}");
        let cut =
            Bytes::from_static(b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm");
        let e = parse_multipart(ct, &cut).unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
    }

    #[test]
    fn json_head_checks_required_fields() {
        let h = parse_passthrough(
            br#"{"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":5}"#,
            &["prompt"],
        )
        .unwrap();
        assert_eq!(h.model, "m");
        assert!(h.stream && h.include_usage);
        assert_eq!(h.max_tokens, Some(5));
        let e = parse_passthrough(br#"{"model":"m"}"#, &["prompt"]).unwrap_err();
        assert_eq!(e.to_string(), "you must provide a prompt parameter");
        let e = parse_passthrough(br#"{"prompt":"x"}"#, &["prompt"]).unwrap_err();
        assert!(e.to_string().contains("model"), "{e}");
        let h = parse_passthrough(
            br#"{"model":"tts","input":"x","response_format":"wav"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(h.response_format.as_deref(), Some("wav"));
    }
}
