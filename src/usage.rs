//! Tokens and cost of an answer, read from what the client receives (so translated answers count
//! the same as passed-through ones).
//!
//! Non-streamed: the answer's `usage` object (OpenAI `prompt_tokens`/`completion_tokens`,
//! Anthropic `input_tokens` + cache tokens / `output_tokens`, the Responses API's
//! `input_tokens`/`output_tokens`), and the prompt tokens read from the provider's prompt cache
//! (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`, the
//! Responses API `input_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`,
//! Moonshot's `cached_tokens`; Gemini's `cachedContentTokenCount` and
//! Bedrock's `cacheReadInputTokens` reach here translated into OpenAI's), priced at the
//! cached-input price where there is one. Streamed: only SSE frames that
//! contain `"usage"` are parsed (OpenAI's final usage chunk with `include_usage`; Anthropic's
//! `message_start` and `message_delta`). When an OpenAI stream carries no usage (the client did
//! not ask for it), output tokens are estimated as the number of content frames (about one token
//! each) and input tokens stay at the admission estimate.

use std::sync::LazyLock;

use memchr::memmem;
use serde::Deserialize;

// The searchers of a stream's frames, made once (`memmem::find` builds one on every call).
static USAGE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
static CONTENT: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"content\""));
static DELTA: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"_delta\""));

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Of `input`, the tokens read from the provider's prompt cache.
    pub cached: u64,
    /// True when read from the answer; false when estimated.
    pub exact: bool,
}

/// A deployment's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    pub input: Option<f64>,
    pub output: Option<f64>,
    /// Input tokens read from the prompt cache; `None`: at the input price.
    pub cached_input: Option<f64>,
}

impl Usage {
    /// USD at these prices: the cached input tokens at the cached-input price (the input price
    /// when there is none), the rest of the input at the input price, the output at the output
    /// price; `None` when there are no input and output prices.
    pub fn cost(&self, p: Prices) -> Option<f64> {
        let cached = self.cached.min(self.input);
        let full = estimate_cost(self.input - cached, self.output, p.input, p.output)?;
        let per_cached = p.cached_input.or(p.input).unwrap_or(0.0);
        Some(full + per_cached * cached as f64 / 1_000_000.0)
    }
}

/// Estimated USD cost of a request: input tokens at the input price plus `max_tokens` at the
/// output price (prices per million tokens).
pub fn estimate_cost(
    input_tokens: u64,
    max_tokens: u64,
    input_per_mtok: Option<f64>,
    output_per_mtok: Option<f64>,
) -> Option<f64> {
    if input_per_mtok.is_none() && output_per_mtok.is_none() {
        return None;
    }
    let i = input_per_mtok.unwrap_or(0.0) * input_tokens as f64;
    let o = output_per_mtok.unwrap_or(0.0) * max_tokens as f64;
    Some((i + o) / 1_000_000.0)
}

#[derive(Deserialize, Default)]
struct UsageObj {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    /// OpenAI chat.
    prompt_tokens_details: Option<CachedDetails>,
    /// The Responses API.
    input_tokens_details: Option<CachedDetails>,
    /// DeepSeek's own name for cached prompt tokens.
    prompt_cache_hit_tokens: Option<u64>,
    /// Moonshot's (Kimi).
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

impl UsageObj {
    fn input(&self) -> Option<u64> {
        self.prompt_tokens.or_else(|| {
            self.input_tokens.map(|i| {
                i + self.cache_read_input_tokens.unwrap_or(0)
                    + self.cache_creation_input_tokens.unwrap_or(0)
            })
        })
    }
    fn output(&self) -> Option<u64> {
        self.completion_tokens.or(self.output_tokens)
    }
    fn cached(&self) -> Option<u64> {
        self.prompt_tokens_details
            .as_ref()
            .or(self.input_tokens_details.as_ref())
            .and_then(|d| d.cached_tokens)
            .or(self.cache_read_input_tokens)
            .or(self.prompt_cache_hit_tokens)
            .or(self.cached_tokens)
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<UsageObj>,
    #[serde(default)]
    message: Option<Box<WithUsage>>,
}

/// Usage of a complete (non-streamed) answer in either format.
pub fn from_body(body: &[u8]) -> Option<Usage> {
    parse_body(body).ok().flatten()
}

/// The same, telling an answer that is not JSON (`Err`) from one without usage (`Ok(None)`).
/// The whole body is parsed either way, so `Ok` means one valid JSON value. An answer whose
/// `usage` or `message` has an unexpected shape is still valid JSON without usage (a second,
/// plain parse says so; only that rare case pays for it).
pub fn parse_body(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    // One UTF-8 check of the whole body (a word at a time) costs less than serde's check of each
    // string it reads; a body that fails it is parsed as bytes, exactly as before.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<WithUsage>(text),
        Err(_) => serde_json::from_slice::<WithUsage>(body),
    };
    match parsed {
        Ok(v) => Ok(v.usage.map(|u| Usage {
            input: u.input().unwrap_or(0),
            output: u.output().unwrap_or(0),
            cached: u.cached().unwrap_or(0),
            exact: true,
        })),
        Err(_) => serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| None),
    }
}

/// Follows a client-format stream for its usage.
#[derive(Debug, Default)]
pub struct StreamUsage {
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<u64>,
    content_frames: u64,
    pending: Vec<u8>,
}

impl StreamUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes sent to the client.
    pub fn push(&mut self, bytes: &[u8]) {
        // Work on whole lines; keep a partial line for the next chunk. The usual chunk is whole
        // lines with nothing pending: read where it is, without a copy.
        if self.pending.is_empty() {
            match memchr::memrchr(b'\n', bytes) {
                Some(last_nl) => {
                    self.lines(&bytes[..=last_nl]);
                    self.pending.extend_from_slice(&bytes[last_nl + 1..]);
                }
                None => self.pending.extend_from_slice(bytes),
            }
            return;
        }
        self.pending.extend_from_slice(bytes);
        let Some(last_nl) = memchr::memrchr(b'\n', &self.pending) else {
            if self.pending.len() > 1 << 20 {
                self.pending.clear();
            }
            return;
        };
        let mut buf = std::mem::take(&mut self.pending);
        self.lines(&buf[..=last_nl]);
        buf.drain(..=last_nl);
        self.pending = buf;
    }

    /// Whole lines of the stream.
    fn lines(&mut self, lines: &[u8]) {
        for line in lines.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            if USAGE.find(data).is_some() {
                if let Ok(v) = serde_json::from_slice::<WithUsage>(data) {
                    let u = v.usage.or_else(|| v.message.and_then(|m| m.usage));
                    if let Some(u) = u {
                        if let Some(i) = u.input().filter(|i| *i > 0) {
                            self.input = Some(i);
                        }
                        if let Some(o) = u.output().filter(|o| *o > 0) {
                            self.output = Some(o);
                        }
                        if let Some(c) = u.cached() {
                            self.cached = Some(c);
                        }
                    }
                }
            } else if CONTENT.find(data).is_some() || DELTA.find(data).is_some() {
                self.content_frames += 1;
            }
        }
    }

    /// Usage so far; `estimated_input` when the stream did not say.
    pub fn usage(&self, estimated_input: u64) -> Usage {
        Usage {
            input: self.input.unwrap_or(estimated_input),
            output: self.output.unwrap_or(self.content_frames),
            cached: self.cached.unwrap_or(0),
            exact: self.input.is_some() && self.output.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_body_tells_invalid_from_valid_without_usage() {
        assert!(parse_body(b"not json").is_err());
        assert!(parse_body(br#"{"a": 1} trailing"#).is_err());
        assert_eq!(parse_body(br#"[1, 2]"#).ok(), Some(None));
        let odd = br#"{"message": "text", "usage": {"prompt_tokens": 1.5}}"#;
        assert_eq!(parse_body(odd).ok(), Some(None));
        let u = parse_body(br#"{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}"#);
        assert_eq!(u.ok().flatten().map(|u| (u.input, u.output)), Some((3, 4)));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_read_as_bytes_as_before() {
        let body = b"{\"x\":\"\xff\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";
        let as_bytes = serde_json::from_slice::<WithUsage>(body)
            .ok()
            .and_then(|v| v.usage)
            .map(|u| (u.input(), u.output()));
        let ours = parse_body(body)
            .ok()
            .flatten()
            .map(|u| (Some(u.input), Some(u.output)));
        assert_eq!(ours, as_bytes);
    }

    #[test]
    fn full_bodies() {
        let openai = br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(
            from_body(openai),
            Some(Usage {
                input: 12,
                output: 5,
                cached: 0,
                exact: true
            })
        );
        let anthropic = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":4,"output_tokens":3}}"#;
        assert_eq!(
            from_body(anthropic),
            Some(Usage {
                input: 14,
                output: 3,
                cached: 4,
                exact: true
            })
        );
        assert_eq!(from_body(b"{}"), None);
    }

    #[test]
    fn cached_prompt_tokens_of_each_format() {
        // (usage, prompt tokens, of them cached)
        for (usage, input, cached) in [
            // OpenAI chat (also what Gemini's cachedContentTokenCount and Bedrock's
            // cacheReadInputTokens become, translated).
            (
                r#"{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":60}}"#,
                100,
                60,
            ),
            // Anthropic: cache reads and writes are counted apart from input_tokens.
            (
                r#"{"input_tokens":10,"cache_read_input_tokens":60,"cache_creation_input_tokens":30,"output_tokens":5}"#,
                100,
                60,
            ),
            // The Responses API.
            (
                r#"{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":5}"#,
                100,
                60,
            ),
            // DeepSeek's and Moonshot's own fields.
            (
                r#"{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":60,"prompt_cache_miss_tokens":40}"#,
                100,
                60,
            ),
            (
                r#"{"prompt_tokens":100,"completion_tokens":5,"cached_tokens":60}"#,
                100,
                60,
            ),
            (r#"{"prompt_tokens":100,"completion_tokens":5}"#, 100, 0),
        ] {
            let u = from_body(format!(r#"{{"usage":{usage}}}"#).as_bytes());
            assert_eq!(
                u.map(|u| (u.input, u.cached)),
                Some((input, cached)),
                "{usage}"
            );
        }
        // Streams: OpenAI's usage chunk, Anthropic's message_start.
        let mut s = StreamUsage::new();
        s.push(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":60}}}\n\n");
        assert_eq!(s.usage(0).cached, 60);
        let mut a = StreamUsage::new();
        a.push(b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":90,\"output_tokens\":1}}}\n\n");
        a.push(
            b"data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":15}}\n\n",
        );
        assert_eq!((a.usage(0).input, a.usage(0).cached), (100, 90));
    }

    #[test]
    fn cached_tokens_cost_the_cached_price() {
        let u = Usage {
            input: 1_000_000,
            output: 1_000_000,
            cached: 400_000,
            exact: true,
        };
        let p = |input, output, cached_input| Prices {
            input,
            output,
            cached_input,
        };
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        // 0.6 M at 3.0 + 0.4 M at 0.3 + 1 M at 15.0.
        assert!(close(
            u.cost(p(Some(3.0), Some(15.0), Some(0.3))),
            1.8 + 0.12 + 15.0
        ));
        // No cached price: the input price.
        assert!(close(u.cost(p(Some(3.0), Some(15.0), None)), 3.0 + 15.0));
        assert_eq!(u.cost(Prices::default()), None);
        // More cached than input (a provider's odd count) costs no more than all cached.
        let odd = Usage {
            cached: 2_000_000,
            ..u
        };
        assert!(close(odd.cost(p(Some(3.0), Some(0.0), Some(0.3))), 0.3));
    }

    #[test]
    fn streams() {
        let mut s = StreamUsage::new();
        s.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"con");
        s.push(b"tent\":\"b\"}}]}\n\n");
        assert_eq!(
            s.usage(7),
            Usage {
                input: 7,
                output: 2,
                cached: 0,
                exact: false
            }
        );
        s.push(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n");
        assert_eq!(
            s.usage(7),
            Usage {
                input: 9,
                output: 2,
                cached: 0,
                exact: true
            }
        );

        let mut a = StreamUsage::new();
        a.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
        a.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":15}}\n\n");
        assert_eq!(
            a.usage(0),
            Usage {
                input: 25,
                output: 15,
                cached: 0,
                exact: true
            }
        );
    }
}
