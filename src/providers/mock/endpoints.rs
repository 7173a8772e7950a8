//! The `mock` provider's answers on the pass-through endpoints, in OpenAI's shapes (Cohere's and
//! Jina's for rerank), small and deterministic:
//!
//! - completions: the prompt echoed (one choice per prompt of a list), usage in words; streamed
//!   word by word, with a usage chunk when `stream_options.include_usage`;
//! - images: `n` (default 1, at most 10) copies of a 1×1 grey PNG, as `b64_json`, or as a
//!   `data:` URL for `response_format: "url"`;
//! - speech: 0.1 s of silence: a WAV file for `wav`, raw 24 kHz 16-bit samples for `pcm`, silent
//!   MPEG frames for `mp3` (the default) and the other formats; `stream_format: "sse"` sends
//!   it as `speech.audio.delta` events and a `speech.audio.done`;
//! - transcriptions: the text `mock transcript of N bytes` (N the size of the `file` field) in
//!   the `response_format` asked (`json`, `verbose_json`, `text`, `srt`, `vtt`); `stream`
//!   sends `transcript.text.delta` events and a `transcript.text.done`;
//! - moderations: one result per input, nothing flagged;
//! - rerank: each document scored by the share of the query's words it contains, best first,
//!   `top_n` of them, with the document when `return_documents`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{include_usage, invalid, paced, pieces, sse, words};
use crate::clock::unix_secs;
use crate::error::UpstreamError;
use crate::providers::{Op, UpstreamBody};

/// A 1×1 grey PNG.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR42mNoAAAAggCB2kUIOwAAAABJRU5ErkJggg==";

/// The moderation categories OpenAI's `omni-moderation` models answer.
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// Answer a pass-through `op` as its real API would. `body` is what an upstream gets (a
/// transcription's: the multipart form from its first boundary line).
pub fn passthrough(op: Op, body: &[u8], latency: Duration) -> Result<UpstreamBody, UpstreamError> {
    if op == Op::Transcriptions {
        return transcription(body, latency);
    }
    let req: Req = serde_json::from_slice(body).map_err(|e| invalid(&e))?;
    Ok(match op {
        Op::Completions => completion(&req, latency),
        Op::Images => full(&images(&req)),
        Op::Speech => speech(&req, latency),
        Op::Moderations => full(&moderation(&req)),
        Op::Rerank => full(&rerank(&req)),
        _ => return Err(invalid(&format!("the mock does not serve {}", op.path()))),
    })
}

/// The fields of the JSON requests the mock reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    model: String,
    prompt: Value,
    input: Value,
    n: Option<u32>,
    stream: bool,
    stream_options: Option<Value>,
    response_format: Option<String>,
    stream_format: Option<String>,
    query: String,
    documents: Vec<Value>,
    top_n: Option<usize>,
    return_documents: Option<bool>,
}

fn full(v: &Value) -> UpstreamBody {
    UpstreamBody::Full(Bytes::from(v.to_string()))
}

/// The texts of a `prompt` or `input`: a string, a list of strings (others as JSON), or a
/// multimodal list's text parts as one input.
fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().any(Value::is_object) => vec![
            items
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        ],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn completion(req: &Req, latency: Duration) -> UpstreamBody {
    let prompts = texts(&req.prompt);
    let tokens: u64 = prompts.iter().map(|p| words(p)).sum();
    let usage = json!({"prompt_tokens": tokens, "completion_tokens": tokens,
        "total_tokens": 2 * tokens});
    let id = crate::ids::random_id("cmpl-mock");
    let created = unix_secs();
    let head = |choices: Value| {
        json!({"id": id, "object": "text_completion", "created": created, "model": req.model,
            "choices": choices})
    };
    if !req.stream {
        let choices: Vec<Value> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"text": p, "index": i, "logprobs": null, "finish_reason": "stop"}))
            .collect();
        let mut v = head(json!(choices));
        v["usage"] = usage;
        return full(&v);
    }
    let mut frames = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        for piece in pieces(p) {
            frames.push(sse(&head(
                json!([{"text": piece, "index": i, "logprobs": null,
                "finish_reason": null}]),
            )));
        }
        frames.push(sse(&head(
            json!([{"text": "", "index": i, "logprobs": null,
            "finish_reason": "stop"}]),
        )));
    }
    if include_usage(req.stream_options.as_ref()) {
        let mut v = head(json!([]));
        v["usage"] = usage;
        frames.push(sse(&v));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    paced(frames, latency)
}

fn images(req: &Req) -> Value {
    let prompt = texts(&req.prompt).concat();
    let image = if req.response_format.as_deref() == Some("url") {
        json!({"url": format!("data:image/png;base64,{PNG_B64}"), "revised_prompt": prompt})
    } else {
        json!({"b64_json": PNG_B64, "revised_prompt": prompt})
    };
    let n = req.n.unwrap_or(1).clamp(1, 10) as usize;
    json!({"created": unix_secs(), "data": vec![image; n]})
}

/// 24 kHz 16-bit mono samples of 0.1 s.
const SILENT_SAMPLES: usize = 2400;

/// 0.1 s of silence in `format`.
fn silence(format: Option<&str>) -> Vec<u8> {
    let pcm = vec![0u8; SILENT_SAMPLES * 2];
    match format {
        Some("pcm") => pcm,
        Some("wav") => {
            let data = u32::try_from(pcm.len()).unwrap_or(u32::MAX);
            let mut w = Vec::with_capacity(44 + pcm.len());
            w.extend_from_slice(b"RIFF");
            w.extend_from_slice(&(36 + data).to_le_bytes());
            w.extend_from_slice(b"WAVEfmt ");
            w.extend_from_slice(&16u32.to_le_bytes());
            w.extend_from_slice(&1u16.to_le_bytes()); // PCM
            w.extend_from_slice(&1u16.to_le_bytes()); // mono
            w.extend_from_slice(&24_000u32.to_le_bytes());
            w.extend_from_slice(&48_000u32.to_le_bytes()); // bytes per second
            w.extend_from_slice(&2u16.to_le_bytes()); // block align
            w.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
            w.extend_from_slice(b"data");
            w.extend_from_slice(&data.to_le_bytes());
            w.extend_from_slice(&pcm);
            w
        }
        // MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, mono, with no audio data: silence.
        _ => {
            let mut frame = vec![0u8; 417];
            frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0xC0]);
            frame.repeat(4)
        }
    }
}

fn speech(req: &Req, latency: Duration) -> UpstreamBody {
    let format = req.response_format.as_deref();
    let audio = silence(format);
    if req.stream_format.as_deref() == Some("sse") {
        let tokens = texts(&req.input).iter().map(|t| words(t)).sum::<u64>();
        let mut frames: Vec<Bytes> = audio
            .chunks(audio.len().div_ceil(2).max(1))
            .map(|c| sse(&json!({"type": "speech.audio.delta", "audio": STANDARD.encode(c)})))
            .collect();
        frames.push(sse(&json!({"type": "speech.audio.done", "usage": {
            "input_tokens": tokens, "output_tokens": 1, "total_tokens": tokens + 1}})));
        return paced(frames, latency);
    }
    let audio = Bytes::from(audio);
    let mid = audio.len() / 2;
    paced(vec![audio.slice(..mid), audio.slice(mid..)], latency)
}

fn moderation(req: &Req) -> Value {
    let categories: serde_json::Map<String, Value> = CATEGORIES
        .iter()
        .map(|c| ((*c).to_owned(), json!(false)))
        .collect();
    let scores: serde_json::Map<String, Value> = CATEGORIES
        .iter()
        .map(|c| ((*c).to_owned(), json!(0.0)))
        .collect();
    let result = json!({"flagged": false, "categories": categories, "category_scores": scores});
    let n = texts(&req.input).len().max(1);
    json!({"id": crate::ids::random_id("modr-mock"), "model": req.model,
        "results": vec![result; n]})
}

/// The lowercase words of a text.
fn word_set(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn rerank(req: &Req) -> Value {
    let query = word_set(&req.query);
    let doc_text = |d: &Value| -> String {
        match d {
            Value::String(s) => s.clone(),
            other => other
                .get("text")
                .and_then(Value::as_str)
                .map_or_else(|| other.to_string(), str::to_owned),
        }
    };
    let mut scored: Vec<(usize, f64, String)> = req
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = doc_text(d);
            let found = word_set(&text).intersection(&query).count();
            let score = found as f64 / query.len().max(1) as f64;
            (i, score, text)
        })
        .collect();
    // Best first; the original order among equals.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(req.top_n.unwrap_or(usize::MAX));
    let with_docs = req.return_documents.unwrap_or(false);
    let results: Vec<Value> = scored
        .into_iter()
        .map(|(index, score, text)| {
            let mut r = json!({"index": index, "relevance_score": score});
            if with_docs {
                r["document"] = json!({"text": text});
            }
            r
        })
        .collect();
    let tokens = words(&req.query)
        + req
            .documents
            .iter()
            .map(|d| words(&doc_text(d)))
            .sum::<u64>();
    json!({"id": crate::ids::random_id("rerank-mock"), "model": req.model, "results": results,
        "usage": {"total_tokens": tokens}})
}

/// The text a transcription of `audio_len` bytes says.
fn transcript(audio_len: usize) -> String {
    format!("mock transcript of {audio_len} bytes")
}

fn transcription(body: &[u8], latency: Duration) -> Result<UpstreamBody, UpstreamError> {
    let fields = crate::wire::form_fields(body).map_err(|e| invalid(&e))?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
    };
    let audio_len = fields
        .iter()
        .find(|(n, _)| *n == "file")
        .map_or(0, |(_, v)| v.len());
    let text = transcript(audio_len);
    let tokens = words(&text);
    let usage = json!({"type": "tokens", "input_tokens": 1, "output_tokens": tokens,
        "total_tokens": tokens + 1});
    if matches!(field("stream").as_deref(), Some("true" | "True" | "1")) {
        let mut frames: Vec<Bytes> = pieces(&text)
            .map(|p| sse(&json!({"type": "transcript.text.delta", "delta": p})))
            .collect();
        frames.push(sse(
            &json!({"type": "transcript.text.done", "text": text, "usage": usage}),
        ));
        return Ok(paced(frames, latency));
    }
    let plain = |s: String| Ok(UpstreamBody::Full(Bytes::from(s)));
    match field("response_format").as_deref() {
        Some("text") => plain(format!("{text}\n")),
        Some("srt") => plain(format!("1\n00:00:00,000 --> 00:00:00,100\n{text}\n\n")),
        Some("vtt") => plain(format!(
            "WEBVTT\n\n00:00:00.000 --> 00:00:00.100\n{text}\n\n"
        )),
        Some("verbose_json") => Ok(full(&json!({
            "task": "transcribe", "language": "english", "duration": 0.1, "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 0.1, "text": text,
                "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
                "compression_ratio": 1.0, "no_speech_prob": 0.0}],
            "usage": {"type": "duration", "seconds": 1},
        }))),
        _ => Ok(full(&json!({"text": text, "usage": usage}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(op: Op, body: &str) -> Value {
        match passthrough(op, body.as_bytes(), Duration::ZERO).unwrap() {
            UpstreamBody::Full(b) => serde_json::from_slice(&b).unwrap(),
            UpstreamBody::Stream(_) => panic!("expected a whole answer"),
        }
    }

    #[test]
    fn answers_in_their_shapes() {
        let c = whole(Op::Completions, r#"{"model":"m","prompt":"say hi"}"#);
        assert_eq!(c["choices"][0]["text"], "say hi");
        assert_eq!(c["usage"]["prompt_tokens"], 2);
        let i = whole(Op::Images, r#"{"model":"m","prompt":"a cat","n":2}"#);
        assert_eq!(i["data"].as_array().unwrap().len(), 2);
        let png = STANDARD
            .decode(i["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let m = whole(Op::Moderations, r#"{"model":"m","input":["a","b"]}"#);
        assert_eq!(m["results"].as_array().unwrap().len(), 2);
        assert_eq!(m["results"][1]["flagged"], false);
        let r = whole(
            Op::Rerank,
            r#"{"model":"m","query":"red apples","documents":["a banana","red apples here",{"text":"apples"}],"top_n":2,"return_documents":true}"#,
        );
        let order: Vec<u64> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["index"].as_u64().unwrap())
            .collect();
        assert_eq!(order, [1, 2]);
        assert_eq!(r["results"][0]["relevance_score"], 1.0);
        assert_eq!(r["results"][1]["document"]["text"], "apples");
    }

    #[test]
    fn silence_is_well_formed() {
        let wav = silence(Some("wav"));
        assert!(wav.starts_with(b"RIFF") && &wav[8..12] == b"WAVE");
        assert_eq!(wav.len(), 44 + 4800);
        let mp3 = silence(None);
        assert_eq!(mp3.len() % 417, 0);
        assert_eq!(&mp3[417..419], &[0xFF, 0xFB]);
    }

    #[test]
    fn transcription_counts_the_file() {
        let form = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n12345\r\n--b\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\ntext\r\n--b--\r\n";
        let UpstreamBody::Full(b) =
            passthrough(Op::Transcriptions, form.as_bytes(), Duration::ZERO).unwrap()
        else {
            panic!("expected a whole answer")
        };
        assert_eq!(&b[..], b"mock transcript of 5 bytes\n");
        assert!(passthrough(Op::Transcriptions, b"not a form", Duration::ZERO).is_err());
        assert!(passthrough(Op::Images, b"{", Duration::ZERO).is_err());
    }
}
