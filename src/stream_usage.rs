//! Exact usage on OpenAI-format streams the client asked for without usage: the upstream is
//! asked for it anyway (`stream_options.include_usage: true`), so spend, budgets and token
//! limits settle on the provider's own count, and the usage-only chunk it adds at the end
//! (`"choices":[]` with `usage`) is taken out of what the client receives.

use bytes::Bytes;

use crate::sse::SseParser;

/// The request body asking for usage: `"stream_options":{"include_usage":true}` put first when
/// the body has no `stream_options` (one copy, no parse); the body re-written with it set when
/// it has one (`include_usage: false` or other options).
pub fn force_include_usage(body: &Bytes) -> Bytes {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
    if memchr::memmem::find(body, b"\"stream_options\"").is_none()
        && let Some(open) = body.iter().position(|b| !b.is_ascii_whitespace())
        && body.get(open) == Some(&b'{')
    {
        let mut out = Vec::with_capacity(body.len() + MEMBER.len());
        out.extend_from_slice(&body[..=open]);
        let rest = &body[open + 1..];
        let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
        out.extend_from_slice(if empty {
            &MEMBER[..MEMBER.len() - 1]
        } else {
            MEMBER
        });
        out.extend_from_slice(rest);
        return Bytes::from(out);
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
    else {
        return body.clone();
    };
    let opts = v
        .entry("stream_options")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let Some(o) = opts.as_object_mut() {
        o.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    }
    serde_json::to_vec(&v).map_or_else(|_| body.clone(), Bytes::from)
}

/// Takes the usage-only chunk out of an OpenAI chat stream; every other event goes on as
/// `data: …\n\n`.
#[derive(Default)]
pub struct UsageStripper {
    parser: SseParser,
}

/// Whether a chunk is the usage-only one (`"choices":[]` and a `usage`).
fn usage_only(data: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
        #[serde(borrow)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    // Cheap test first: only a chunk with usage is parsed.
    memchr::memmem::find(data.as_bytes(), b"\"usage\"").is_some()
        && serde_json::from_str::<Probe<'_>>(data).is_ok_and(|p| {
            p.choices.is_some_and(|c| c.is_empty()) && p.usage.is_some_and(|u| u.get() != "null")
        })
}

impl UsageStripper {
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len());
        self.parser.push(chunk, |ev| {
            if usage_only(ev.data) {
                return;
            }
            if !ev.event.is_empty() && ev.event != "message" {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(ev.event.as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(ev.data.as_bytes());
            out.extend_from_slice(b"\n\n");
        });
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forced(body: &str) -> serde_json::Value {
        serde_json::from_slice(&force_include_usage(&Bytes::from(body.to_owned()))).unwrap()
    }

    #[test]
    fn asks_for_usage() {
        let v = forced(r#"{"model":"m","stream":true,"messages":[]}"#);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        let v = forced(r#" {"model":"m","stream_options":{"include_usage":false,"x":1}}"#);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        assert_eq!(forced("{}")["stream_options"]["include_usage"], true);
    }

    #[test]
    fn strips_only_the_usage_chunk() {
        let mut s = UsageStripper::default();
        let a = s.feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"us");
        assert_eq!(
            a,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n"
        );
        let b = s.feed(b"age\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n");
        assert_eq!(b, "data: [DONE]\n\n");
    }
}
