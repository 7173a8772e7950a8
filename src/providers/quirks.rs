//! What each OpenAI-compatible service (the presets) needs beyond OpenAI's own format:
//! top-level request fields it refuses (left out and named in `x-gateway-dropped`), fields it
//! names differently, and answers that carry the reasoning as `reasoning` instead of the
//! `reasoning_content` the gateway's clients and translations read. `docs/providers/presets.md`
//! has the table.
//!
//! A request without any of the fields is sent as it came (a substring search decides; nothing
//! is parsed); one with them has only its top-level fields re-joined, each value's bytes copied
//! as they were.

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ByteStream;
use crate::config::ProviderType;
use crate::translate::Dropped;

/// One service's quirks.
#[derive(Debug, PartialEq, Eq)]
pub struct Quirks {
    /// Top-level request fields the service refuses.
    pub strip: &'static [&'static str],
    /// Top-level request fields it names differently: (OpenAI's name, the service's).
    pub rename: &'static [(&'static str, &'static str)],
    /// Its answers and stream deltas carry the reasoning as `reasoning`.
    pub reasoning_field: bool,
}

/// OpenAI itself, and services that take OpenAI's format as it is.
pub static NONE: Quirks = Quirks {
    strip: &[],
    rename: &[],
    reasoning_field: false,
};

/// Groq: "will result in a 400 error if supplied" (its OpenAI-compatibility page); reasoning
/// models answer `reasoning`.
static GROQ: Quirks = Quirks {
    strip: &["logprobs", "top_logprobs", "logit_bias", "n"],
    rename: &[],
    reasoning_field: true,
};

/// Mistral refuses fields it does not know (422) and names the seed `random_seed`.
static MISTRAL: Quirks = Quirks {
    strip: &[
        "stream_options",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "store",
        "metadata",
        "service_tier",
        "user",
    ],
    rename: &[
        ("seed", "random_seed"),
        ("max_completion_tokens", "max_tokens"),
    ],
    reasoning_field: false,
};

/// Cohere's compatibility API lists these as not supported.
static COHERE: Quirks = Quirks {
    strip: &[
        "store",
        "metadata",
        "logit_bias",
        "top_logprobs",
        "n",
        "modalities",
        "prediction",
        "audio",
        "service_tier",
        "parallel_tool_calls",
        "stream_options",
    ],
    rename: &[],
    reasoning_field: false,
};

/// Zhipu GLM, Tencent Hunyuan: no `stream_options` (usage comes in the last chunk anyway), no
/// `parallel_tool_calls`, one choice.
static NO_STREAM_OPTIONS: Quirks = Quirks {
    strip: &[
        "stream_options",
        "parallel_tool_calls",
        "n",
        "logprobs",
        "top_logprobs",
    ],
    rename: &[],
    reasoning_field: false,
};

/// Moonshot Kimi: no `parallel_tool_calls`.
static MOONSHOT: Quirks = Quirks {
    strip: &["parallel_tool_calls"],
    rename: &[],
    reasoning_field: false,
};

/// OpenRouter and Ollama answer `reasoning`.
static REASONING_FIELD: Quirks = Quirks {
    strip: &[],
    rename: &[],
    reasoning_field: true,
};

/// The quirks of a provider type (an OpenAI-compatible one; [`NONE`] for the rest).
pub fn of(kind: ProviderType) -> &'static Quirks {
    match kind {
        ProviderType::Groq => &GROQ,
        ProviderType::Mistral => &MISTRAL,
        ProviderType::Cohere => &COHERE,
        ProviderType::Zhipu | ProviderType::Hunyuan => &NO_STREAM_OPTIONS,
        ProviderType::Moonshot => &MOONSHOT,
        ProviderType::Openrouter | ProviderType::Ollama => &REASONING_FIELD,
        _ => &NONE,
    }
}

/// A JSON object's top-level fields in order, values as their raw bytes.
struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn mentions(body: &[u8], field: &str) -> bool {
    let mut quoted = Vec::with_capacity(field.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(field.as_bytes());
    quoted.push(b'"');
    memchr::memmem::find(body, &quoted).is_some()
}

impl Quirks {
    fn is_none(&self) -> bool {
        self.strip.is_empty() && self.rename.is_empty()
    }

    /// A chat request as the service takes it (the fields it refuses named in `dropped`).
    pub fn request(&self, body: Bytes, dropped: &mut Dropped) -> Bytes {
        if self.is_none()
            || !(self.strip.iter().any(|f| mentions(&body, f))
                || self.rename.iter().any(|(f, _)| mentions(&body, f)))
        {
            return body;
        }
        let Ok(fields) = serde_json::from_slice::<Fields>(&body) else {
            return body;
        };
        let mut out = Vec::with_capacity(body.len());
        out.push(b'{');
        let mut first = true;
        for (k, v) in &fields.0 {
            if let Some(&f) = self.strip.iter().find(|f| **f == *k) {
                // `n: 1` asks for nothing a service without `n` fails to give.
                if !(f == "n" && v.get().trim() == "1") {
                    dropped.push(f);
                }
                continue;
            }
            let name: &str = match self.rename.iter().find(|(from, _)| *from == *k) {
                Some((_, to)) => to,
                None => k,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            // The key came unescaped from the body (a borrowed `&str`), so it needs no escaping.
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Bytes::from(out)
    }

    /// A whole answer as the gateway's clients read it.
    pub fn answer(&self, body: Bytes) -> Bytes {
        if self.reasoning_field {
            rename_reasoning(body)
        } else {
            body
        }
    }

    /// A streamed answer as the gateway's clients read it.
    pub fn stream(&self, s: ByteStream) -> ByteStream {
        if self.reasoning_field {
            Box::pin(s.map(|r| r.map(rename_reasoning)))
        } else {
            s
        }
    }
}

/// `"reasoning":` as an object's key (after `{` or `,`) -> `"reasoning_content":`. Inside a JSON
/// string a quote is escaped, so these bytes only occur as a key.
fn rename_reasoning(b: Bytes) -> Bytes {
    const KEY: &[u8] = b"\"reasoning\":";
    let finder = memchr::memmem::Finder::new(KEY);
    let at_key = |i: usize| {
        b[..i]
            .iter()
            .rev()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|c| *c == b'{' || *c == b',')
    };
    let hits: Vec<usize> = finder.find_iter(&b).filter(|&i| at_key(i)).collect();
    if hits.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(b.len() + hits.len() * 8);
    let mut from = 0;
    for i in hits {
        out.extend_from_slice(&b[from..i]);
        out.extend_from_slice(b"\"reasoning_content\":");
        from = i + KEY.len();
    }
    out.extend_from_slice(&b[from..]);
    Bytes::from(out)
}

/// Error bodies some OpenAI-compatible servers send that are not OpenAI's shape: FastAPI's
/// `{"detail": "…"}` or `{"detail": [{"msg": …}]}` (vLLM, Mistral's 422) -> (type, message).
pub fn error_from_other(body: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Detail {
        detail: serde_json::Value,
    }
    let d = serde_json::from_slice::<Detail>(body).ok()?;
    let message = match d.detail {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| {
                let loc = i["loc"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .unwrap_or_default();
                let msg = i["msg"].as_str().unwrap_or("invalid");
                if loc.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{loc}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    Some(("invalid_request_error".to_owned(), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_requests_pass_untouched() {
        let body = Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"say \"logprobs\""}]}"#,
        );
        let mut d = Dropped::default();
        // Mentioned only inside a string: parsed, nothing removed, same bytes.
        let out = GROQ.request(body.clone(), &mut d);
        assert_eq!(out, body);
        assert!(d.is_empty());
        let out = NONE.request(body.clone(), &mut d);
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn refused_fields_are_dropped_and_named() {
        let body = Bytes::from_static(
            br#"{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}],"logprobs":true,"logit_bias":{"1":2},"stream":true}"#,
        );
        let mut d = Dropped::default();
        let out = GROQ.request(body, &mut d);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        );
        assert_eq!(d.join(","), "n,logprobs,logit_bias");
        // n: 1 is left out without being named.
        let mut d = Dropped::default();
        GROQ.request(Bytes::from_static(br#"{"n":1,"model":"m"}"#), &mut d);
        assert!(d.is_empty());
    }

    #[test]
    fn renamed_fields() {
        let body = Bytes::from_static(
            br#"{"model":"m","seed":7,"max_completion_tokens":10,"stream_options":{"include_usage":true}}"#,
        );
        let mut d = Dropped::default();
        let out = MISTRAL.request(body, &mut d);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","random_seed":7,"max_tokens":10}"#
        );
        assert_eq!(d.join(","), "stream_options");
    }

    #[test]
    fn reasoning_becomes_reasoning_content() {
        let chunk = Bytes::from_static(
            br#"data: {"choices":[{"delta":{"reasoning":"hmm \"reasoning\": no","content":null}}]}"#,
        );
        let out = rename_reasoning(chunk);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"data: {"choices":[{"delta":{"reasoning_content":"hmm \"reasoning\": no","content":null}}]}"#
        );
        let plain = Bytes::from_static(b"data: [DONE]\n\n");
        assert_eq!(rename_reasoning(plain.clone()).as_ptr(), plain.as_ptr());
    }

    #[test]
    fn fastapi_errors() {
        assert_eq!(
            error_from_other(br#"{"detail":"Not Found"}"#),
            Some(("invalid_request_error".into(), "Not Found".into()))
        );
        let e = error_from_other(
            br#"{"detail":[{"loc":["body","n"],"msg":"Extra inputs are not permitted","type":"extra_forbidden"}]}"#,
        )
        .unwrap();
        assert_eq!(e.1, "body.n: Extra inputs are not permitted");
        assert_eq!(error_from_other(b"<html>"), None);
    }
}
