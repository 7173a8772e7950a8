//! Reading and checking a batch's input lines. The file is read a line at a time (a line longer
//! than `server.max_body_size` plus a little is skipped, not buffered); blank lines are ignored
//! everywhere, so a line's index is the same when validating, running and writing the output.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::auth::Caller;
use crate::runtime::Runtime;
use crate::wire;

/// Most validation errors reported (the count of the rest is named in the last one).
pub const MAX_REPORTED: usize = 1000;

/// One non-blank input line.
pub struct Line {
    /// 1-based line number in the file (blank lines counted).
    pub number: u64,
    /// 0-based index among non-blank lines.
    pub index: u64,
    /// The text, or `None` when it was longer than the cap.
    pub text: Option<Vec<u8>>,
}

/// Reads lines of at most `cap` bytes.
pub struct LineReader<R> {
    inner: R,
    cap: usize,
    number: u64,
    index: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, cap: usize) -> Self {
        Self {
            inner,
            cap,
            number: 0,
            index: 0,
        }
    }

    /// The next non-blank line.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let mut buf = Vec::new();
            let mut too_long = false;
            let mut eof = true;
            loop {
                let chunk = self.inner.fill_buf().await?;
                if chunk.is_empty() {
                    break;
                }
                eof = false;
                let (take, end) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                if !too_long {
                    if buf.len() + take > self.cap {
                        too_long = true;
                        buf = Vec::new();
                    } else {
                        buf.extend_from_slice(&chunk[..take]);
                    }
                }
                self.inner.consume(take);
                if end {
                    break;
                }
            }
            if eof {
                return Ok(None);
            }
            self.number += 1;
            if !too_long && buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let index = self.index;
            self.index += 1;
            return Ok(Some(Line {
                number: self.number,
                index,
                text: (!too_long).then_some(buf),
            }));
        }
    }
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// A line's problem: `(code, message)`.
pub type Problem = (&'static str, String);

/// A JSON string's value, borrowed when it has no escapes; `None` when `raw` is not a string.
fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        // `raw` is valid JSON: a string without a backslash is its own text.
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        Some(_) => serde_json::from_str::<String>(t).ok().map(Cow::Owned),
        None => None,
    }
}

fn parse_line(text: &[u8]) -> Result<Request<'_>, Problem> {
    serde_json::from_slice(text).map_err(|e| {
        (
            "invalid_json_line",
            format!("this line is not a JSON object of custom_id, method, url and body: {e}"),
        )
    })
}

fn custom_id_in<'a>(req: &Request<'a>) -> Result<Cow<'a, str>, Problem> {
    match req.custom_id.and_then(string_of) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err((
            "missing_required_parameter",
            "custom_id must be a non-empty string".into(),
        )),
    }
}

/// Check one line against the batch's endpoint and what the key may do; its `custom_id` when it
/// passes. Nothing is copied: the line's fields and its body are read where they are.
pub fn check<'a>(
    text: &'a [u8],
    endpoint: &str,
    rt: &Runtime,
    caller: &Caller,
) -> Result<Cow<'a, str>, Problem> {
    let req = parse_line(text)?;
    let custom_id = custom_id_in(&req)?;
    if req.method.as_deref() != Some("POST") {
        return Err((
            "invalid_method",
            format!(
                "method must be POST, not {}",
                req.method.as_deref().unwrap_or("(missing)")
            ),
        ));
    }
    if req.url.as_deref() != Some(endpoint) {
        return Err((
            "mismatched_endpoint",
            format!(
                "url {} is not the batch's endpoint {endpoint}",
                req.url.as_deref().unwrap_or("(missing)")
            ),
        ));
    }
    let Some(body) = req.body else {
        return Err(("missing_required_parameter", "body is missing".into()));
    };
    let limit = rt.config.server.max_body_size.0;
    if body.get().len() as u64 > limit {
        return Err((
            "request_too_large",
            format!("the body is larger than the {limit} bytes this gateway accepts"),
        ));
    }
    // The endpoint's own parser checks the body as the synchronous endpoint would (`stream` is
    // turned off when the line runs, see [`prepare`]).
    let bytes = body.get().as_bytes();
    let parsed = match endpoint {
        "/v1/chat/completions" => wire::parse_openai_chat(bytes).map(|h| h.model),
        "/v1/messages" => wire::parse_anthropic_messages(bytes).map(|h| h.model),
        "/v1/embeddings" => wire::parse_embeddings(bytes).map(|h| h.model),
        _ => crate::wire::parse_responses_head(bytes).map(|(m, _)| m),
    };
    let model = parsed.map_err(|e| ("invalid_body", e.to_string()))?;
    if !rt.has_model(&model) {
        return Err((
            "model_not_found",
            format!("the model {model:?} does not exist"),
        ));
    }
    if caller.check_model(&model).is_err() {
        return Err((
            "model_not_allowed",
            format!("this key may not use the model {model:?}"),
        ));
    }
    Ok(custom_id)
}

/// A validated line, ready to run: its `custom_id`, model and body.
pub struct Prepared {
    pub custom_id: String,
    pub model: String,
    pub body: Bytes,
}

#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
}

/// What a line that passed validation runs: the body taken from the line without a copy (a body
/// asking for a stream is rewritten without it). The input file does not change, so the checks
/// are not made again: the pipeline makes its own (a key that lost its model since gets the
/// synchronous endpoint's 403).
pub fn prepare(text: Vec<u8>) -> Result<Prepared, Problem> {
    let text = Bytes::from(text);
    let (custom_id, range, stream) = {
        let req = parse_line(&text)?;
        let custom_id = custom_id_in(&req)?.into_owned();
        let body = req
            .body
            .ok_or_else(|| ("missing_required_parameter", "body is missing".to_owned()))?
            .get();
        let start = (body.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        let range = start..start + body.len();
        if range.end > text.len() {
            return Err(("invalid_body", "the body is not inside its line".to_owned()));
        }
        let stream = memchr::memmem::find(body.as_bytes(), b"\"stream").is_some();
        (custom_id, range, stream)
    };
    let mut body = text.slice(range);
    // Only a body that may ask for streaming is parsed whole (to turn it off).
    if stream {
        let mut obj: serde_json::Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| ("invalid_body", format!("body is not a JSON object: {e}")))?;
        if obj.get("stream").and_then(Value::as_bool).unwrap_or(false) {
            obj.insert("stream".into(), Value::Bool(false));
            obj.remove("stream_options");
            body = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        }
    }
    let model = serde_json::from_slice::<ModelOnly<'_>>(&body)
        .ok()
        .and_then(|m| m.model)
        .map(Cow::into_owned)
        .unwrap_or_default();
    Ok(Prepared {
        custom_id,
        model,
        body,
    })
}

/// The `custom_id` of a line already validated (for the output file).
pub fn custom_id_of(text: &[u8]) -> String {
    parse_line(text)
        .ok()
        .and_then(|r| custom_id_in(&r).ok().map(Cow::into_owned))
        .unwrap_or_default()
}

/// Validation of a whole file: lines counted, and the errors found.
pub struct Validation {
    pub total: u64,
    pub errors: Vec<Value>,
}

/// Lines checked together on a blocking thread while the next ones are read.
const CHUNK_LINES: usize = 1024;
/// A chunk is cut at about this many bytes, so the lines held stay few.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A line's check: its line number and the hash of the `custom_id` it passed with, or its
/// problem.
type Outcome = (u64, Result<u128, Problem>);

/// The 128-bit hash `custom_id`s are told apart by (keyed at random for each validation).
#[derive(Clone)]
struct IdHash(std::hash::RandomState, std::hash::RandomState);

impl IdHash {
    fn new() -> Self {
        Self(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    fn of(&self, id: &str) -> u128 {
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
}

fn check_chunk(
    chunk: &[Line],
    endpoint: &str,
    rt: &Runtime,
    caller: &Caller,
    hash: &IdHash,
) -> Vec<Outcome> {
    chunk
        .iter()
        .map(|line| {
            let r = match &line.text {
                None => Err((
                    "request_too_large",
                    "this line is longer than the gateway's server.max_body_size".to_owned(),
                )),
                Some(t) => check(t, endpoint, rt, caller).map(|id| hash.of(&id)),
            };
            (line.number, r)
        })
        .collect()
}

/// Check every line of `reader`; `custom_id`s must be unique (kept as 128-bit hashes, so memory
/// stays small for large files). Lines are checked a chunk at a time on blocking threads (two
/// chunks at once, so both cores work), and their outcomes taken in file order.
pub async fn validate<R: AsyncBufRead + Unpin>(
    reader: R,
    endpoint: &str,
    rt: std::sync::Arc<Runtime>,
    caller: &Caller,
) -> std::io::Result<Validation> {
    let cap = usize::try_from(rt.config.server.max_body_size.0)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let mut lines = LineReader::new(reader, cap);
    let mut seen: HashSet<u128> = HashSet::new();
    let hash = IdHash::new();
    let mut errors = Vec::new();
    let mut more = 0u64;
    let mut total = 0u64;
    let mut pending = std::collections::VecDeque::new();
    let mut eof = false;
    while !eof || !pending.is_empty() {
        if !eof {
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            while chunk.len() < CHUNK_LINES && bytes < CHUNK_BYTES {
                match lines.next().await? {
                    Some(l) => {
                        bytes += l.text.as_ref().map_or(0, Vec::len);
                        chunk.push(l);
                    }
                    None => {
                        eof = true;
                        break;
                    }
                }
            }
            total += chunk.len() as u64;
            if !chunk.is_empty() {
                let (rt, caller, endpoint, hash) = (
                    rt.clone(),
                    caller.clone(),
                    endpoint.to_owned(),
                    hash.clone(),
                );
                pending.push_back(tokio::task::spawn_blocking(move || {
                    let outcomes = check_chunk(&chunk, &endpoint, &rt, &caller, &hash);
                    (chunk, outcomes)
                }));
            }
            if pending.len() < 2 && !eof {
                continue;
            }
        }
        let Some(next) = pending.pop_front() else {
            continue;
        };
        let (chunk, outcomes) = next.await.map_err(std::io::Error::other)?;
        for (line, (number, r)) in chunk.iter().zip(outcomes) {
            let problem = match r {
                Ok(hash) => (!seen.insert(hash)).then(|| {
                    let custom_id = line.text.as_deref().map(custom_id_of).unwrap_or_default();
                    (
                        "duplicate_custom_id",
                        format!("custom_id {custom_id:?} is used by an earlier line"),
                    )
                }),
                Err(p) => Some(p),
            };
            if let Some((code, message)) = problem {
                if errors.len() < MAX_REPORTED {
                    errors.push(
                        json!({"code": code, "message": message, "param": null, "line": number}),
                    );
                } else {
                    more += 1;
                }
            }
        }
    }
    if more > 0 {
        errors.push(json!({"code": "too_many_errors", "message": format!("{more} more invalid lines not listed"), "param": null, "line": null}));
    }
    if total == 0 {
        errors.push(json!({"code": "empty_file", "message": "the input file has no lines", "param": null, "line": null}));
    }
    Ok(Validation { total, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_skip_blanks_and_cap_length() {
        let data =
            b"{\"a\":1}\n\n  \n{\"b\":2}\n0123456789012345678901234567890\n{\"c\":3}".to_vec();
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(4, &data[..]), 16);
        let a = r.next().await.unwrap().unwrap();
        assert_eq!((a.number, a.index), (1, 0));
        let b = r.next().await.unwrap().unwrap();
        assert_eq!((b.number, b.index), (4, 1));
        let long = r.next().await.unwrap().unwrap();
        assert_eq!((long.number, long.index), (5, 2));
        assert!(long.text.is_none());
        let c = r.next().await.unwrap().unwrap();
        assert_eq!(
            (c.number, c.index, c.text.unwrap()),
            (6, 3, b"{\"c\":3}".to_vec())
        );
        assert!(r.next().await.unwrap().is_none());
    }
}
