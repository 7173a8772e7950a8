//! JSON strings inside a body: where a borrowed value sits, its decoded text, the string
//! values inside any raw value, and a body rebuilt by splicing only the strings that changed.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

/// Byte range of a value borrowed from `body`.
pub(super) fn span(body: &str, raw: &RawValue) -> Range<usize> {
    let start = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    start..start + raw.get().len()
}

/// A field kept even when it is `null` (serde reads a `null` `Option` as `None`), so a block
/// can rewrite it in place.
pub(super) fn nullable<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// Whether a raw value is a JSON string.
pub(super) fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// The text of a JSON string literal (quotes included), borrowed when it has no escapes.
pub(super) fn decode(lit: &str) -> Option<Cow<'_, str>> {
    let inner = lit.get(1..lit.len().checked_sub(1)?)?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(lit).ok().map(Cow::Owned)
}

/// `text` as a JSON string literal.
pub(super) fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    // Writing a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, text);
    out
}

/// The byte ranges (in `body`) of every string value (not key) inside `raw`, a valid JSON
/// value borrowed from `body`.
pub(super) fn string_values(body: &str, raw: &RawValue, out: &mut Vec<Range<usize>>) {
    let base = span(body, raw).start;
    let b = raw.get().as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i += 1;
        let end = i.min(b.len());
        let mut j = end;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b':') {
            out.push(base + start..base + end);
        }
    }
}

/// Replacements of byte ranges of a body, applied in one copy.
#[derive(Default)]
pub(super) struct Edits(Vec<(Range<usize>, Vec<u8>)>);

impl Edits {
    pub(super) fn push(&mut self, range: Range<usize>, with: Vec<u8>) {
        self.0.push((range, with));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The body with every edit made; edits must not overlap.
    pub(super) fn apply(mut self, body: &[u8]) -> Bytes {
        self.0.sort_by_key(|(r, _)| r.start);
        let grow: usize = self.0.iter().map(|(_, w)| w.len()).sum();
        let mut out = BytesMut::with_capacity(body.len() + grow);
        let mut done = 0;
        for (r, with) in &self.0 {
            out.put_slice(&body[done..r.start]);
            out.put_slice(with);
            done = r.end;
        }
        out.put_slice(&body[done..]);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_string_values_not_keys() {
        let body = r#"{"input" : {"a":"x\"y", "b" :[1,"z",{"c":"w"}], "d":true}}"#;
        #[derive(serde::Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            input: &'a RawValue,
        }
        let t: T = serde_json::from_str(body).unwrap();
        let mut out = Vec::new();
        string_values(body, t.input, &mut out);
        let got: Vec<_> = out.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(got, vec![r#""x\"y""#, r#""z""#, r#""w""#]);
    }

    #[test]
    fn decodes_and_splices() {
        assert_eq!(decode(r#""a\nb""#).unwrap(), "a\nb");
        assert!(matches!(decode(r#""ab""#).unwrap(), Cow::Borrowed("ab")));
        let mut e = Edits::default();
        e.push(4..7, encode("x\"y"));
        e.push(0..1, b"[".to_vec());
        assert_eq!(&e.apply(b"{ab \"c\" }")[..], b"[ab \"x\\\"y\" }");
    }
}
