//! The YAML writer of `import`: a small document tree ([`Value`], [`Map`]) and its text. Block
//! mappings and sequences of mappings, flow sequences of scalars (`[a, b]`), comments above a
//! key or after a scalar, and strings written plain only when a YAML reader (ours, PyYAML or any
//! YAML 1.1/1.2 one) cannot take them for anything else: every other string is double-quoted
//! with escapes.

use std::fmt::Write as _;

/// One value of the document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Value>),
    Map(Map),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Self::Int(i64::from(n))
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Self::Float(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Self::Map(m)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Self::List(v.into_iter().map(Value::Str).collect())
    }
}

/// A mapping that keeps its keys in insertion order, each with an optional comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Map {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    value: Value,
    comment: Option<String>,
}

impl Map {
    /// Sets `key` (replacing its value, and keeping its place, when it is there already).
    pub(crate) fn put(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.put_entry(key, value.into(), None)
    }

    /// Sets `key` with a comment: above the key for a block value, after it for a scalar.
    pub(crate) fn put_commented(
        &mut self,
        key: &str,
        value: impl Into<Value>,
        comment: impl Into<String>,
    ) -> &mut Self {
        self.put_entry(key, value.into(), Some(comment.into()))
    }

    fn put_entry(&mut self, key: &str, value: Value, comment: Option<String>) -> &mut Self {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.value = value;
                e.comment = comment;
            }
            None => self.entries.push(Entry {
                key: key.to_owned(),
                value,
                comment,
            }),
        }
        self
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// This mapping followed by `other`'s entries.
    pub(crate) fn extend(mut self, other: Map) -> Map {
        for e in other.entries {
            self.put_entry(&e.key, e.value, e.comment);
        }
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The whole file: `header` and `footer` comment lines around the top-level mapping, its
/// sections separated by a blank line.
pub(crate) fn document(header: &[String], root: &Map, footer: &[String]) -> String {
    let mut out = String::new();
    comment_lines(&mut out, 0, header.iter().map(String::as_str));
    for e in &root.entries {
        out.push('\n');
        entry(&mut out, e, 0);
    }
    if !footer.is_empty() {
        out.push('\n');
        comment_lines(&mut out, 0, footer.iter().map(String::as_str));
    }
    out
}

fn comment_lines<'a>(out: &mut String, indent: usize, lines: impl Iterator<Item = &'a str>) {
    for l in lines.flat_map(str::lines) {
        pad(out, indent);
        if l.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {l}");
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Whether `v` is written on the lines below its key rather than after it.
fn is_block(v: &Value) -> bool {
    match v {
        Value::Map(m) => !m.is_empty(),
        Value::List(items) => items.iter().any(|i| matches!(i, Value::Map(_))),
        _ => false,
    }
}

/// Comments longer than this go above their key, even a scalar's.
const TRAILING_COMMENT_MAX: usize = 60;

fn entry(out: &mut String, e: &Entry, indent: usize) {
    let key = scalar(&e.key);
    let above = e
        .comment
        .as_deref()
        .filter(|c| is_block(&e.value) || c.len() > TRAILING_COMMENT_MAX || c.contains('\n'));
    if let Some(c) = above {
        comment_lines(out, indent, std::iter::once(c));
    }
    if is_block(&e.value) {
        pad(out, indent);
        let _ = writeln!(out, "{key}:");
        match &e.value {
            Value::Map(m) => {
                for child in &m.entries {
                    entry(out, child, indent + 2);
                }
            }
            Value::List(items) => {
                for item in items {
                    list_item(out, item, indent + 2);
                }
            }
            _ => {}
        }
    } else {
        pad(out, indent);
        let _ = write!(out, "{key}: ");
        inline(out, &e.value);
        if let (Some(c), None) = (&e.comment, above) {
            let _ = write!(out, "  # {c}");
        }
        out.push('\n');
    }
}

/// `- ` and the item: a mapping's first key on the dash's line (a comment it carries goes
/// above the dash), anything else inline.
fn list_item(out: &mut String, item: &Value, indent: usize) {
    let Value::Map(m) = item else {
        pad(out, indent);
        out.push_str("- ");
        inline(out, item);
        out.push('\n');
        return;
    };
    if m.is_empty() {
        pad(out, indent);
        out.push_str("- {}\n");
        return;
    }
    let mut body = String::new();
    for child in &m.entries {
        entry(&mut body, child, indent + 2);
    }
    let mut dashed = false;
    for line in body.lines() {
        let own = &line[(indent + 2).min(line.len())..];
        if !dashed && !own.starts_with('#') {
            pad(out, indent);
            out.push_str("- ");
            out.push_str(own);
            dashed = true;
        } else if !dashed {
            pad(out, indent);
            out.push_str(own);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// A value on one line: scalars, and collections in flow style.
fn inline(out: &mut String, v: &Value) {
    match v {
        Value::Str(s) => out.push_str(&scalar(s)),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&float(*f)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inline(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, e) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", scalar(&e.key));
                inline(out, &e.value);
            }
            out.push('}');
        }
    }
}

/// A float that reads back as a float: always with a `.`, never an exponent (Rust's `Display`
/// of `f64` is the shortest text that parses back to the same number). Not finite: `.nan` /
/// `.inf` as YAML writes them (the importer never makes one).
pub(crate) fn float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let s = f.to_string();
    if s.contains('.') { s } else { s + ".0" }
}

/// Words that YAML 1.1 (PyYAML) or 1.2 read as a boolean or null when plain.
const RESERVED: [&str; 11] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "",
];

/// Units after digits that make a plain scalar a string in every YAML: our durations and sizes.
const UNITS: [&str; 12] = [
    "ms", "s", "m", "h", "d", "B", "KiB", "MiB", "GiB", "KB", "MB", "GB",
];

/// A string as a YAML scalar: plain when it starts with a letter, `_` or `/`, holds only
/// letters, digits and `-_./@+:` (no `:` at the end), and is no reserved word, or when it is a
/// duration or size (`30s`, `10MiB`); else double-quoted. Numbers, dates, `${VAR}`, URLs with
/// `?` or `#`, anything with a space is quoted.
pub(crate) fn scalar(s: &str) -> String {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let unit = digits > 0 && UNITS.contains(&&s[digits..]);
    let plain = unit
        || s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./@+:".contains(c))
            && !s.ends_with(':')
            && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
