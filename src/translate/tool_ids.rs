//! Tool-call ids between the OpenAI side (`call_…`) and a native side (`toolu_…` for Anthropic,
//! `tooluse_…` for Bedrock), stateless and reversible, so a conversation round-trips: OpenAI's
//! `call_X` is `toolu_X` to an Anthropic client, whose `tool_result` for `toolu_X` reaches the
//! OpenAI upstream as `call_X` again; Anthropic's `toolu_Y` is `call_Y` to an OpenAI client and
//! `toolu_Y` again upstream.
//!
//! OpenAI side → native ([`ToolIds::to_native`]):
//! - `call_R` (`R` made of `[A-Za-z0-9_-]`, not starting with `-`) → `<native>R`;
//! - any other id the native side accepts (`[A-Za-z0-9_-]+`) → unchanged;
//! - an id with other characters (Kimi's `functions.get_weather:0`) → `<native>-` + the id with
//!   every byte but `[A-Za-z0-9_]` written `-XX` (hex), which only this module makes and turns
//!   back exactly;
//! - an empty id → a fresh `<native>` id.
//!
//! Native → OpenAI side ([`ToolIds::to_openai`]): such an escaped id → the id it escapes;
//! `<native>R` → `call_R`; anything else unchanged.
//!
//! Both directions are pure functions of the id, so a `tool_use` and its `tool_result` (an
//! assistant's `tool_calls[].id` and its tool message's `tool_call_id`) always stay a pair. Not
//! exact, but still pairs: an OpenAI-side id already in the native style (`toolu_X` from an
//! OpenAI-compatible proxy of Claude) comes back as `call_X`, and a native id in the OpenAI
//! style (`call_X` from an Anthropic-compatible server) goes back as `toolu_X`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The OpenAI side's prefix.
const OPENAI: &str = "call_";

/// One native side's tool-id style.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolIds {
    native: &'static str,
}

/// Anthropic's `toolu_…` ids.
pub(crate) const ANTHROPIC: ToolIds = ToolIds { native: "toolu_" };
/// Bedrock Converse's `tooluse_…` ids.
pub(crate) const BEDROCK: ToolIds = ToolIds { native: "tooluse_" };

/// A character the native sides accept in an id (`^[a-zA-Z0-9_-]+$`).
fn valid(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn all_valid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(valid)
}

/// A fresh OpenAI-side tool-call id (`call_` + 32 hex digits).
pub(crate) fn new_openai_id() -> String {
    crate::ids::random_id(OPENAI)
}

impl ToolIds {
    /// A fresh native id (for a call the other side sent without one).
    pub(crate) fn new_native(self) -> String {
        crate::ids::random_id(self.native)
    }

    /// The native id for an OpenAI-side id.
    pub(crate) fn to_native(self, id: &str) -> Cow<'_, str> {
        if let Some(rest) = id.strip_prefix(OPENAI)
            && all_valid(rest)
            && !rest.starts_with('-')
        {
            return Cow::Owned(format!("{}{rest}", self.native));
        }
        if all_valid(id) {
            return Cow::Borrowed(id);
        }
        if id.is_empty() {
            return Cow::Owned(self.new_native());
        }
        tracing::debug!(
            id,
            "tool call id has characters the upstream refuses; escaping them"
        );
        let mut out = String::with_capacity(self.native.len() + 1 + id.len() * 2);
        out.push_str(self.native);
        out.push('-');
        for b in id.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "-{b:02X}");
            }
        }
        Cow::Owned(out)
    }

    /// The OpenAI-side id for a native id.
    pub(crate) fn to_openai(self, id: &str) -> Cow<'_, str> {
        let Some(rest) = id.strip_prefix(self.native).filter(|r| !r.is_empty()) else {
            return Cow::Borrowed(id);
        };
        if let Some(escaped) = rest.strip_prefix('-')
            && let Some(original) = unescape(escaped)
            // Only what `to_native` would have written: anything else is an id like any other.
            && self.to_native(&original) == id
        {
            return Cow::Owned(original);
        }
        Cow::Owned(format!("{OPENAI}{rest}"))
    }
}

/// The id an escaped one stands for (`-XX` → the byte `XX`), if it decodes to UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_swap_both_ways() {
        assert_eq!(ANTHROPIC.to_native("call_abc-1"), "toolu_abc-1");
        assert_eq!(ANTHROPIC.to_openai("toolu_abc-1"), "call_abc-1");
        assert_eq!(
            ANTHROPIC.to_openai("toolu_01A09q90qw90lq917835lq9"),
            "call_01A09q90qw90lq917835lq9"
        );
        assert_eq!(BEDROCK.to_native("call_x"), "tooluse_x");
        assert_eq!(
            BEDROCK.to_openai("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"),
            "call_kZJMlvQmRJ6eAyJE5GIl7Q"
        );
    }

    #[test]
    fn other_valid_ids_pass_unchanged() {
        for id in ["abc123XYZ", "chatcmpl-tool-9f", "tool_1", "call_", "-x"] {
            assert_eq!(ANTHROPIC.to_native(id), id);
            assert_eq!(ANTHROPIC.to_openai(id), id);
        }
        assert_eq!(ANTHROPIC.to_openai("toolu_"), "toolu_");
        // Another side's native style is left alone.
        assert_eq!(ANTHROPIC.to_openai("tooluse_x"), "tooluse_x");
    }

    #[test]
    fn ids_with_other_characters_are_escaped_and_come_back() {
        let n = ANTHROPIC.to_native("functions.get_weather:0");
        assert_eq!(n, "toolu_-functions-2Eget_weather-3A0");
        assert_eq!(ANTHROPIC.to_openai(&n), "functions.get_weather:0");
        let n = ANTHROPIC.to_native("a-b é");
        assert!(n.bytes().all(valid), "{n}");
        assert_eq!(ANTHROPIC.to_openai(&n), "a-b é");
        // `call_-…` is not swapped (it would read as an escape): kept, and back unchanged.
        assert_eq!(ANTHROPIC.to_native("call_-2E"), "call_-2E");
        // A native id that only looks escaped turns into `call_…` like any other.
        assert_eq!(ANTHROPIC.to_openai("toolu_-zz"), "call_-zz");
        assert_eq!(ANTHROPIC.to_openai("toolu_-41"), "call_-41");
        assert!(ANTHROPIC.to_native("").starts_with("toolu_"));
    }

    #[test]
    fn round_trips() {
        let openai_side = [
            "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "call_0123456789abcdef0123456789abcdef_ts_AAAA-_",
            "functions.get_weather:0",
            "abc123XYZ",
            "call_-x",
            "x y",
        ];
        for ids in [ANTHROPIC, BEDROCK] {
            for id in openai_side {
                assert_eq!(ids.to_openai(&ids.to_native(id)), id, "{id}");
            }
        }
        for id in ["toolu_01A09q90qw90lq917835lq9", "toolu_x", "my-tool-1"] {
            assert_eq!(ANTHROPIC.to_native(&ANTHROPIC.to_openai(id)), id, "{id}");
        }
    }
}
