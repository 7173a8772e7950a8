//! OpenAI `response_format` towards Anthropic, which has no JSON mode: a `json_schema` becomes a
//! tool with that schema that Claude is made to call (the answer's `tool_use` input is turned
//! back into the message's `content` by the response and stream translations, see
//! [`json_answer_tool`]); `json_object` becomes an instruction in the system prompt.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::super::Dropped;
use super::super::json::{JStr, is_object};

/// The system instruction sent for `response_format: {"type": "json_object"}`.
pub(super) const JSON_OBJECT_INSTRUCTION: &str =
    "\"Answer with one JSON object only: no text before or after it, no code fences.\"";

/// The tool name used when a `json_schema` has no `name` (OpenAI requires one).
const DEFAULT_NAME: &str = "\"json_answer\"";

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    json_schema: Option<JsonSchema<'a>>,
}

#[derive(Deserialize)]
struct JsonSchema<'a> {
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    description: Option<JStr<'a>>,
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
    /// Claude follows a tool's schema without a strict mode; not carried.
    #[expect(dead_code, reason = "read to be named as not carried")]
    strict: Option<IgnoredAny>,
}

/// What a request's `response_format` asks of the answer.
pub(super) enum JsonAnswer<'a> {
    /// Nothing (absent or `text`).
    Free,
    /// `json_object`: a system instruction.
    Object(JStr<'static>),
    /// `json_schema`: a forced tool.
    Schema {
        name: JStr<'a>,
        description: Option<JStr<'a>>,
        schema: &'a RawValue,
    },
}

impl<'a> JsonAnswer<'a> {
    /// Read `response_format`; a shape this cannot read is named in `dropped`.
    pub(super) fn read(raw: Option<&'a RawValue>, dropped: &mut Dropped) -> Self {
        let Some(raw) = raw else {
            return JsonAnswer::Free;
        };
        let Ok(rf) = serde_json::from_str::<ResponseFormat<'a>>(raw.get()) else {
            dropped.push("response_format");
            return JsonAnswer::Free;
        };
        match (&*rf.kind, rf.json_schema) {
            ("text", _) => JsonAnswer::Free,
            ("json_object", _) => match static_jstr(JSON_OBJECT_INSTRUCTION) {
                Some(t) => JsonAnswer::Object(t),
                None => JsonAnswer::Free,
            },
            ("json_schema", Some(s)) => {
                let Some(name) = s.name.or_else(|| static_jstr(DEFAULT_NAME)) else {
                    return JsonAnswer::Free;
                };
                let schema = match s.schema.filter(|r| is_object(r.get())) {
                    Some(schema) => schema,
                    None => match serde_json::from_str::<&'static RawValue>(r#"{"type":"object"}"#)
                    {
                        Ok(r) => r,
                        Err(_) => return JsonAnswer::Free,
                    },
                };
                JsonAnswer::Schema {
                    name,
                    description: s.description,
                    schema,
                }
            }
            _ => {
                dropped.push("response_format");
                JsonAnswer::Free
            }
        }
    }
}

fn static_jstr(literal: &'static str) -> Option<JStr<'static>> {
    serde_json::from_str::<&'static RawValue>(literal)
        .ok()
        .and_then(JStr::from_raw)
}

/// The name of the tool an OpenAI chat request's `response_format: {"type": "json_schema"}`
/// becomes towards Anthropic, or `None` when the request asks for no JSON schema. The answer's
/// call of that tool is the JSON answer. Cheap when the body does not mention
/// `response_format`.
pub fn json_answer_tool(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        response_format: Option<&'a RawValue>,
    }
    memchr::memmem::find(body, b"\"response_format\"")?;
    let head: Head = serde_json::from_slice(body).ok()?;
    match JsonAnswer::read(head.response_format, &mut Dropped::default()) {
        JsonAnswer::Schema { name, .. } => Some(name.decode().into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_schema_tool() {
        let body = br#"{"messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"weather","schema":{"type":"object"}}}}"#;
        assert_eq!(json_answer_tool(body).as_deref(), Some("weather"));
        let body = br#"{"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}"#;
        assert_eq!(json_answer_tool(body).as_deref(), Some("json_answer"));
        for body in [
            &br#"{"messages":[]}"#[..],
            br#"{"response_format":{"type":"json_object"}}"#,
            br#"{"response_format":{"type":"text"}}"#,
            br#"{"response_format":7}"#,
        ] {
            assert_eq!(json_answer_tool(body), None);
        }
    }

    #[test]
    fn unreadable_formats_are_named() {
        let mut d = Dropped::default();
        let raw: &RawValue = serde_json::from_str(r#"{"type":"grammar"}"#).unwrap();
        assert!(matches!(
            JsonAnswer::read(Some(raw), &mut d),
            JsonAnswer::Free
        ));
        assert_eq!(d.join(","), "response_format");
    }
}
