//! A validating skim of a complete answer for its top-level `usage` member.
//!
//! A 200 answer's body is checked to be one JSON value, and its usage read, on every
//! non-streamed call. serde reading it into a struct walks every ignored member through its
//! generic `ignore_value` (about 13 instructions a byte of a chat answer, measured with
//! callgrind); this walk over the bytes does the same check at a fraction of that and hands
//! serde only the `usage` object.
//!
//! It is stricter than serde_json and never looser: it says [`Skimmed::Sure`] only for a text that
//! serde_json also reads as one JSON object with the same `usage` member, and
//! [`Skimmed::Unsure`] for everything else (not an object, a top-level key with an escape, a
//! `message` member, a repeated `usage`, a `\u` escape of a surrogate, nesting deeper than
//! [`MAX_DEPTH`], or anything invalid), which the caller then gives to serde as before. The
//! tests hold it to serde_json's verdict on generated and mutated texts.

/// Nesting this deep is left to serde (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// What the skim found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Skimmed<'a> {
    /// One valid JSON object; the text of its `usage` member's value, if it has one.
    Sure(Option<&'a str>),
    /// Not decided here.
    Unsure,
}

/// Skim `text` (already known to be UTF-8).
pub(super) fn top_level_usage(text: &str) -> Skimmed<'_> {
    let mut s = Skim {
        b: text.as_bytes(),
        i: 0,
    };
    match s.top() {
        // Only whitespace may follow the value.
        Some(usage) if s.at_end() => {
            Skimmed::Sure(usage.map(|(from, to)| text.get(from..to).unwrap_or("null")))
        }
        _ => Skimmed::Unsure,
    }
}

/// What [`Skim::ws`] gives at the end of the text.
const END: u8 = 0;

struct Skim<'a> {
    b: &'a [u8],
    i: usize,
}

impl Skim<'_> {
    /// Skips whitespace; the next byte, not consumed ([`END`] at the end; a NUL byte is never
    /// what a caller looks for, so both mean "not that").
    fn ws(&mut self) -> u8 {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return c;
            }
            self.i += 1;
        }
        END
    }

    /// Only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// The top-level object: the span of its `usage` value, if any. `None`: unsure.
    fn top(&mut self) -> Option<Option<(usize, usize)>> {
        if self.ws() != b'{' {
            return None;
        }
        if self.open(b'}', 1)? {
            return Some(None);
        }
        let mut usage = None;
        loop {
            if self.ws() != b'"' {
                return None;
            }
            let key_from = self.i + 1;
            if self.string()? {
                // A key with an escape may spell `usage` or `message`: serde decides.
                return None;
            }
            let key = self.b.get(key_from..self.i - 1)?;
            if key == b"message" {
                // Read as an Anthropic envelope by the serde path.
                return None;
            }
            if self.ws() != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            let from = self.i;
            self.value(1)?;
            if key == b"usage" {
                if usage.is_some() {
                    return None;
                }
                usage = Some((from, self.i));
            }
            if self.next_or_close(b'}')? {
                return Some(usage);
            }
        }
    }

    /// One value at `self.i` (whitespace skipped), nested `depth` deep; `None`: unsure.
    fn value(&mut self, depth: u32) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: u32) -> Option<()> {
        if self.open(b'}', depth)? {
            return Some(());
        }
        loop {
            if self.ws() != b'"' {
                return None;
            }
            self.string()?;
            if self.ws() != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            self.value(depth)?;
            if self.next_or_close(b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if self.open(b']', depth)? {
            return Some(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            if self.next_or_close(b']')? {
                return Some(());
            }
        }
    }

    /// Past an opening bracket: whether it closes at once (`None` when nested too deep).
    fn open(&mut self, close: u8, depth: u32) -> Option<bool> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        let empty = self.ws() == close;
        if empty {
            self.i += 1;
        }
        Some(empty)
    }

    /// After a member or an element: a comma (`false`: more follow) or the closing bracket
    /// (`true`), consumed.
    fn next_or_close(&mut self, close: u8) -> Option<bool> {
        let c = self.ws();
        if c != b',' && c != close {
            return None;
        }
        self.i += 1;
        Some(c == close)
    }

    /// A string at its opening quote; whether it had an escape.
    fn string(&mut self) -> Option<bool> {
        self.i += 1;
        let mut escaped = false;
        loop {
            // Plain bytes up to the next quote or backslash, found a word at a time.
            let rest = self.b.get(self.i..)?;
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            // No control character may stand unescaped in a string (serde_json refuses them).
            if rest[..at].iter().fold(false, |bad, &c| bad | (c < 0x20)) {
                return None;
            }
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(escaped);
            }
            escaped = true;
            match *self.b.get(self.i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' => {
                    let code = self.hex_escape()?;
                    if (0xD800..0xDC00).contains(&code) {
                        // A leading surrogate: only with its trailing one (Python's JSON writes
                        // every character past U+FFFF so); a lone one is left to serde.
                        if self.b.get(self.i) != Some(&b'\\') {
                            return None;
                        }
                        if !(0xDC00..0xE000).contains(&self.hex_escape()?) {
                            return None;
                        }
                    } else if (0xDC00..0xE000).contains(&code) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// `\uXXXX` at `self.i`: its code unit.
    fn hex_escape(&mut self) -> Option<u32> {
        if self.b.get(self.i + 1) != Some(&b'u') {
            return None;
        }
        let mut code = 0;
        for &h in self.b.get(self.i + 2..self.i + 6)? {
            code = code * 16 + char::from(h).to_digit(16)?;
        }
        self.i += 6;
        Some(code)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match *self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !self.b.get(self.i)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.b.get(self.i)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Usage, WithUsage, parse_body};
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// `parse_body` as it was before the skim: serde alone.
    fn serde_only(body: &[u8]) -> Result<Option<Usage>, ()> {
        match serde_json::from_slice::<WithUsage>(body) {
            Ok(v) => Ok(v.usage.map(super::super::UsageObj::exact)),
            Err(_) => serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map(|_| None)
                .map_err(drop),
        }
    }

    fn same_as_serde(body: &[u8]) {
        let skimmed = parse_body(body).map_err(drop);
        assert_eq!(
            skimmed,
            serde_only(body),
            "{:?}",
            String::from_utf8_lossy(body)
        );
        // Whatever the skim is sure of, serde reads as one valid JSON value.
        if let Ok(text) = std::str::from_utf8(body)
            && let Skimmed::Sure(_) = top_level_usage(text)
        {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_answers_gateways_see_are_read_by_the_skim() {
        let answers = [
            r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hi \"there\"\n\u00e9\ud83d\ude00","refusal":null,"role":"assistant"}}],"created":1796652211,"id":"chatcmpl-1","model":"gpt-4o-mini","object":"chat.completion","usage":{"completion_tokens":18,"prompt_tokens":23,"total_tokens":41,"prompt_tokens_details":{"cached_tokens":3}}}"#,
            r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"model":"claude","stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":2}}"#,
            r#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"total_tokens":12}}"#,
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093,1e-5,-2.5E+3,0]}],"model":"m","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
            "\n { \"id\" : \"x\" , \"usage\" : null } \r\n",
            "{}",
        ];
        for a in answers {
            assert!(
                matches!(top_level_usage(a), Skimmed::Sure(_)),
                "not skimmed: {a}"
            );
            same_as_serde(a.as_bytes());
        }
        let u = parse_body(answers[0].as_bytes()).unwrap().unwrap();
        assert_eq!((u.input, u.output, u.cached), (23, 18, 3));
        let u = parse_body(answers[1].as_bytes()).unwrap().unwrap();
        assert_eq!((u.input, u.output, u.cached), (7, 7, 2));
        assert_eq!(parse_body(answers[4].as_bytes()).unwrap(), None);
    }

    #[test]
    fn what_the_skim_leaves_to_serde() {
        for (text, sure) in [
            (r#"[1, 2]"#, false),
            (
                r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
                false,
            ),
            (r#"{"us\u0061ge":{"prompt_tokens":1}}"#, false),
            (r#"{"message":{"usage":{"input_tokens":1}}}"#, false),
            (r#"{"a":"\ud800"}"#, false),
            (r#"{"a":"\ud800x"}"#, false),
            (r#"{"a":"\ud800\u0041"}"#, false),
            (r#"{"a":"\udc00"}"#, false),
            (r#"{"a":"\ud83d\ude00"}"#, true),
            ("{\"a\":1}\0", false),
            ("{\"a\":\"\t\"}", false),
            (r#"{"a":01}"#, false),
            (r#"{"a":1.}"#, false),
            (r#"{"a":-}"#, false),
            (r#"{"a":1e}"#, false),
            (r#"{"a":[1,]}"#, false),
            (r#"{"a":{"b":1,}}"#, false),
            (r#"{"a":tru}"#, false),
            (r#"{"a":"x\q"}"#, false),
            (r#"{"a":1} {"b":2}"#, false),
            (r#"{"usage":{"prompt_tokens":1.5}}"#, true),
            (r#"{"usage":"none"}"#, true),
            (r#"{"a":[[[[{"b":[true,false,null,-0.5e-3]}]]]]}"#, true),
        ] {
            let skimmed = top_level_usage(text);
            assert_eq!(matches!(skimmed, Skimmed::Sure(_)), sure, "{text}");
            same_as_serde(text.as_bytes());
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert_eq!(top_level_usage(&deep), Skimmed::Unsure);
        same_as_serde(deep.as_bytes());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z \"\\\\/\u{0}-\u{1f}\u{e9}\u{1f600}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("usage".to_owned()),
            Just("message".to_owned()),
            Just("prompt_tokens".to_owned()),
            Just("output_tokens".to_owned()),
            "[a-z\"\\\\\u{1}]{0,4}",
        ]
    }

    /// Bytes and pieces that make or break JSON.
    const EDITS: &[&str] = &[
        " ",
        "\t",
        "\n",
        "{",
        "}",
        "[",
        "]",
        "\"",
        ",",
        ":",
        "\\",
        "0",
        "1",
        "-",
        ".",
        "e",
        "E",
        "+",
        "true",
        "nul",
        "\0",
        "\u{1f}",
        "\\u00e9",
        "\\ud800",
        "\\udc00",
        "\\u12",
        "\\x",
        "\u{e9}",
        "\"usage\":",
        "\"message\":",
        "{\"prompt_tokens\":7}",
        "\\ud83d\\ude00",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn the_skim_agrees_with_serde(
            top in prop::collection::vec((key(), value()), 0..5),
            usage in prop_oneof![
                Just(None),
                value().prop_map(Some),
                (any::<u32>(), any::<u32>()).prop_map(|(i, o)| Some(serde_json::json!(
                    {"prompt_tokens": i, "completion_tokens": o}))),
            ],
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..EDITS.len(), 0..3u8), 0..3),
        ) {
            let mut obj: serde_json::Map<String, Value> = top.into_iter().collect();
            if let Some(u) = usage {
                obj.insert("usage".to_owned(), u);
            }
            let mut text = serde_json::to_vec(&Value::Object(obj)).unwrap();
            same_as_serde(&text);
            for (at, edit, how) in edits {
                let at = at.index(text.len() + 1);
                let piece = EDITS[edit].as_bytes();
                match how {
                    0 => { text.splice(at..at, piece.iter().copied()); }
                    1 if at < text.len() => { text.remove(at); }
                    _ => { text.splice(at..(at + 1).min(text.len()), piece.iter().copied()); }
                }
                same_as_serde(&text);
            }
        }
    }
}
