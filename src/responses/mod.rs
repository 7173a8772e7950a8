//! Stored Responses API objects: the record kept for each response made with `store: true`, and
//! where it is kept ([`store::ResponseStore`]: Redis when `state.redis_url` is set, so every
//! replica sees it, else `data_dir/responses.redb`).
//!
//! A record is one JSON object, written once (one write per request) and read whole:
//!
//! ```text
//! {"owner":KEY_ID,"expires_at":UNIX_MS,"response":{Response},
//!  "history":[items before this request],"input":[its input items],"output":[its output items]}
//! ```
//!
//! `history` is the whole conversation this response continued (the earlier response's
//! `history`, `input` and `output`, in order), so continuing a conversation costs one read
//! whatever its length, on any replica and any provider.

pub mod store;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;

pub use store::ResponseStore;

/// A stored record, borrowed from its text.
#[derive(Deserialize)]
pub struct Record<'a> {
    #[serde(borrow)]
    pub owner: Cow<'a, str>,
    pub expires_at: u64,
    #[serde(borrow)]
    pub response: &'a RawValue,
    #[serde(borrow)]
    pub history: &'a RawValue,
    #[serde(borrow)]
    pub input: &'a RawValue,
    #[serde(borrow)]
    pub output: &'a RawValue,
}

impl<'a> Record<'a> {
    /// Parse a stored record's text.
    pub fn parse(text: &'a str) -> Result<Self, Error> {
        serde_json::from_str(text)
            .map_err(|e| Error::Internal(format!("unreadable stored response: {e}")))
    }

    /// The conversation a request continuing this response carries before its own input, as
    /// one JSON array: `history`, then `input`, then `output`.
    pub fn conversation(&self) -> String {
        join_arrays(&[self.history.get(), self.input.get(), self.output.get()])
    }
}

/// JSON arrays (as text) joined into one array, without parsing them.
pub fn join_arrays(arrays: &[&str]) -> String {
    let mut out = String::with_capacity(arrays.iter().map(|a| a.len()).sum::<usize>() + 2);
    out.push('[');
    for a in arrays {
        let inner = a
            .trim()
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or("")
            .trim();
        if inner.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(inner);
    }
    out.push(']');
    out
}

/// A record's text. `response`, `history`, `input` and `output` are JSON (object, arrays) as
/// produced by the translation; they are copied, not re-serialised.
pub fn record_text(
    owner: &str,
    expires_at: u64,
    response: &[u8],
    history: &str,
    input: &[u8],
    output: &[u8],
) -> String {
    let owner = crate::wire::json_string(owner);
    let mut s = String::with_capacity(
        owner.len() + response.len() + history.len() + input.len() + output.len() + 96,
    );
    s.push_str("{\"owner\":");
    s.push_str(&owner);
    s.push_str(",\"expires_at\":");
    s.push_str(itoa::Buffer::new().format(expires_at));
    for (name, part) in [
        ("response", response),
        ("history", history.as_bytes()),
        ("input", input),
        ("output", output),
    ] {
        s.push_str(",\"");
        s.push_str(name);
        s.push_str("\":");
        let text = std::str::from_utf8(part).unwrap_or("null");
        s.push_str(if text.is_empty() { "[]" } else { text });
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_join_without_empty_ones() {
        assert_eq!(
            join_arrays(&["[]", "[1, 2]", " [ ] ", "[{\"a\":[3]}]"]),
            "[1, 2,{\"a\":[3]}]"
        );
        assert_eq!(join_arrays(&["[]", "[]"]), "[]");
    }

    #[test]
    fn records_round_trip() {
        let text = record_text("key-1", 42, br#"{"id":"resp_1"}"#, "[1]", b"[2]", b"[3]");
        let r = Record::parse(&text).unwrap();
        assert_eq!(r.owner, "key-1");
        assert_eq!(r.expires_at, 42);
        assert_eq!(r.response.get(), r#"{"id":"resp_1"}"#);
        assert_eq!(r.conversation(), "[1,2,3]");
    }
}
