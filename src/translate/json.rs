//! Small JSON helpers shared by the translators: a borrowed JSON string that is copied through
//! without unescaping, and writers that append JSON straight into an output buffer.

use std::borrow::Cow;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON string value kept as its raw source text (quotes and escapes included). It is checked to
/// be a string when parsed and written back verbatim, so text is never unescaped and re-escaped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JStr<'a>(&'a RawValue);

impl<'a> JStr<'a> {
    /// A raw value that is a JSON string.
    pub(crate) fn from_raw(raw: &'a RawValue) -> Option<Self> {
        raw.get().starts_with('"').then_some(JStr(raw))
    }

    /// The raw JSON text, quotes included.
    pub(crate) fn raw(self) -> &'a str {
        self.0.get()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0.get() == "\"\""
    }

    /// The decoded string (borrowed when it holds no escapes).
    pub(crate) fn decode(self) -> Cow<'a, str> {
        let raw = self.0.get();
        let inner = &raw[1..raw.len() - 1];
        if !inner.contains('\\') {
            return Cow::Borrowed(inner);
        }
        // Valid by construction (serde_json checked it); fall back to the raw text if not.
        serde_json::from_str::<String>(raw).map_or(Cow::Borrowed(inner), Cow::Owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'a RawValue = Deserialize::deserialize(d)?;
        if raw.get().starts_with('"') {
            Ok(JStr(raw))
        } else {
            Err(D::Error::custom("expected a string"))
        }
    }
}

impl Serialize for JStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Text that is either copied raw or was built here.
#[derive(Debug)]
pub(crate) enum Txt<'a> {
    Raw(JStr<'a>),
    Owned(String),
}

impl Serialize for Txt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Txt::Raw(j) => j.serialize(s),
            Txt::Owned(t) => s.serialize_str(t),
        }
    }
}

/// A string serialized as a JSON string whose content is the given text (used to turn a JSON
/// object's source into OpenAI's `arguments` string).
pub(crate) struct AsJsonString<'a>(pub(crate) &'a str);

impl Serialize for AsJsonString<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// `{}`.
pub(crate) struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

/// A JSON value given as raw text (borrowed or built here), or `{}`.
#[derive(Debug)]
pub(crate) enum RawOr<'a> {
    Borrowed(&'a RawValue),
    Owned(Box<RawValue>),
    EmptyObject,
    /// `{"type":"object","properties":{}}`
    EmptySchema,
}

impl Serialize for RawOr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            RawOr::Borrowed(r) => r.serialize(s),
            RawOr::Owned(r) => r.serialize(s),
            RawOr::EmptyObject => EmptyObject.serialize(s),
            RawOr::EmptySchema => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "object")?;
                m.serialize_entry("properties", &EmptyObject)?;
                m.end()
            }
        }
    }
}

/// Append `s` as a JSON string literal.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Append a decimal integer.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Whether a JSON value's source text is an object.
pub(crate) fn is_object(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_matches_serde() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "nl\n\r\t",
            "\u{1}\u{1f}x",
            "é😀",
            "\u{7f}",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn write_u64_works() {
        for n in [0, 7, 10, 4096, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn jstr_checks_and_decodes() {
        #[derive(Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            s: JStr<'a>,
        }
        let t: T = serde_json::from_str(r#"{"s" :  "a\nb"}"#).unwrap();
        assert_eq!(t.s.raw(), r#""a\nb""#);
        assert_eq!(t.s.decode(), "a\nb");
        assert!(serde_json::from_str::<T>(r#"{"s":5}"#).is_err());
        assert!(serde_json::from_str::<T>("{\"s\":\"a\u{1}\"}").is_err());
    }
}
