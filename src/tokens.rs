//! Prompt token counts for tokens-per-minute reservations.
//!
//! OpenAI-format models are counted with OpenAI's own tokenizer (tiktoken's `o200k_base`, through
//! tiktoken-rs, which embeds its ranks: no download). Building it takes ~100 ms and ~25 MB, so
//! it is built on a blocking thread the first time a tokens limit needs it; until it is ready,
//! and for Anthropic-format models, the estimate is body bytes / 4. Either way the reservation is
//! corrected with the real usage when the answer ends.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

static BPE: OnceLock<CoreBPE> = OnceLock::new();
static LOADING: AtomicBool = AtomicBool::new(false);

/// The tokenizer if it is ready; starts building it (once, off the async runtime) if not.
fn tokenizer() -> Option<&'static CoreBPE> {
    if let Some(b) = BPE.get() {
        return Some(b);
    }
    if !LOADING.swap(true, Ordering::AcqRel)
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        rt.spawn_blocking(|| match tiktoken_rs::o200k_base() {
            Ok(b) => {
                let _ = BPE.set(b);
                tracing::debug!("tokenizer o200k_base ready");
            }
            Err(e) => tracing::warn!(error = %e, "cannot build the tokenizer; estimating tokens"),
        });
    }
    None
}

/// The bytes / 4 estimate.
pub fn estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

#[derive(Deserialize)]
struct Req {
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    tools: Option<Value>,
}

/// Prompt tokens of an OpenAI chat request, counted the way OpenAI documents it (text of each
/// message + 3 per message + 3 for the reply's priming; tools as their JSON). `None` while the
/// tokenizer is not ready or the body does not parse.
pub fn count_openai_chat(body: &[u8]) -> Option<u64> {
    let bpe = tokenizer()?;
    let req: Req = serde_json::from_slice(body).ok()?;
    let mut n = 3u64;
    for m in &req.messages {
        n += 3;
        if let Some(text) = m.get("content").map(text_of) {
            n += bpe.encode_ordinary(&text).len() as u64;
        }
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            n += 1 + bpe.encode_ordinary(name).len() as u64;
        }
        if let Some(calls) = m.get("tool_calls") {
            n += bpe.encode_ordinary(&calls.to_string()).len() as u64;
        }
    }
    if let Some(tools) = &req.tools {
        n += bpe.encode_ordinary(&tools.to_string()).len() as u64;
    }
    Some(n)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_with_the_real_tokenizer_once_ready() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello, world! How are you today?"}]}"#;
        let mut got = None;
        for _ in 0..200 {
            got = count_openai_chat(body);
            if got.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // "Hello, world! How are you today?" is 9 tokens in o200k_base; + 3 + 3.
        assert_eq!(got, Some(15));
        assert_eq!(estimate(b"12345678"), 2);
    }
}
