//! A small YAML front end: saphyr-parser's event stream folded into a tree that remembers the line
//! of every key and value, plus a serde `Deserializer` over that tree.
//!
//! Plain scalars are resolved per the YAML 1.2 core schema (null, bool, int, float, else string)
//! only when the target type asks for something other than a string: a `String` field always gets
//! the scalar's text exactly as written (`model: 1.10` is `"1.10"`, `api_version: 2024-10-21` is
//! `"2024-10-21"`). Quoted and block scalars are always strings. A scalar produced by `${VAR}`
//! interpolation is a string too, except that a number or bool field parses it
//! (`workers: ${WORKERS:-32}`), so an environment value never becomes null or structure.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

use super::ConfigError;

/// Deepest nesting of sequences and mappings accepted.
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to, aliases included (guards against "billion laughs").
const MAX_NODES: usize = 1_000_000;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Plain (unquoted): resolved per the core schema when the target is not a string.
    Plain,
    /// Single- or double-quoted, literal or folded block, or tagged `!!str`: always a string.
    Quoted,
    /// Result of `${VAR}` interpolation of a plain scalar: a string, parsed only by number and
    /// bool fields.
    Interpolated,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Scalar { text: String, style: Style },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// 1-based line where the node starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

impl Node {
    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.count()).sum::<usize>(),
        }
    }

    /// Builds the map from key path (`models[2].deployments[0].provider`, the syntax of
    /// serde_path_to_error's `Path` display) to 1-based line.
    pub fn line_map(&self) -> Lines {
        let mut map = HashMap::new();
        map.insert(String::new(), self.line);
        fn walk(node: &Node, path: &str, map: &mut HashMap<String, usize>) {
            match &node.kind {
                Kind::Scalar { .. } => {}
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        map.insert(p.clone(), item.line);
                        walk(item, &p, map);
                    }
                }
                Kind::Map(entries) => {
                    for e in entries {
                        let p = join(path, &e.key);
                        map.insert(p.clone(), e.key_line);
                        walk(&e.value, &p, map);
                    }
                }
            }
        }
        walk(self, "", &mut map);
        Lines(map)
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Key path -> line of the key (for mapping entries) or of the item (for sequence items).
#[derive(Debug, Clone, Default)]
pub(crate) struct Lines(HashMap<String, usize>);

impl Lines {
    /// The line of `path`, else of its nearest ancestor that is in the file.
    pub fn get(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            if p.is_empty() {
                return None;
            }
            p = parent_path(p);
        }
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``.
fn parent_path(p: &str) -> &str {
    if p.ends_with(']')
        && let Some(i) = p.rfind('[')
    {
        return &p[..i];
    }
    match p.rfind('.') {
        Some(i) => &p[..i],
        None => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

enum Frame {
    Seq {
        items: Vec<Node>,
        line: usize,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        key: Option<(String, usize)>,
        line: usize,
        anchor: usize,
    },
}

fn err(line: usize, message: impl Into<String>, hint: Option<String>) -> ConfigError {
    ConfigError {
        path: String::new(),
        line: Some(line),
        message: message.into(),
        hint,
    }
}

/// Key path of the collection being built at the top of `stack`.
fn stack_path(stack: &[Frame]) -> String {
    let mut path = String::new();
    let n = stack.len();
    for (i, frame) in stack.iter().enumerate() {
        if i + 1 == n {
            break;
        }
        match frame {
            Frame::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
            Frame::Map { key, .. } => {
                if let Some((k, _)) = key {
                    path = join(&path, k);
                }
            }
        }
    }
    path
}

fn too_large(line: usize) -> ConfigError {
    err(
        line,
        "document too large (aliases expand to too many nodes)",
        None,
    )
}

/// Parses one YAML document. An empty file is an empty (null) document.
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;

    for ev in Parser::new_from_str(text) {
        let (event, span): (Event<'_>, Span) = ev.map_err(|e| {
            err(
                e.marker().line(),
                format!(
                    "invalid YAML: {} (column {})",
                    e.info(),
                    e.marker().col() + 1
                ),
                None,
            )
        })?;
        let line = span.start.line();
        let done: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        line,
                        "more than one YAML document (`---`) in the file",
                        Some("put the whole configuration in one document".to_owned()),
                    ));
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain)
                    || tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let style = if quoted { Style::Quoted } else { Style::Plain };
                Some((
                    Node {
                        kind: Kind::Scalar {
                            text: value.into_owned(),
                            style,
                        },
                        line,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(err(
                        line,
                        "alias refers to an anchor that is not complete here",
                        None,
                    ));
                };
                nodes += target.count();
                if nodes > MAX_NODES {
                    return Err(too_large(line));
                }
                let mut node = target.clone();
                node.line = line;
                Some((node, 0))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(line, "nesting too deep", None));
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    line,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(line, "nesting too deep", None));
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    line,
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    line,
                    anchor,
                }) => Some((
                    Node {
                        kind: Kind::Seq(items),
                        line,
                    },
                    anchor,
                )),
                _ => return Err(err(line, "invalid YAML: unbalanced sequence", None)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    line,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        kind: Kind::Map(entries),
                        line,
                    },
                    anchor,
                )),
                _ => return Err(err(line, "invalid YAML: unbalanced mapping", None)),
            },
        };

        let Some((node, anchor)) = done else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(too_large(line));
        }
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        let mut duplicate = None;
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((k, key_line)) => entries.push(Entry {
                    key: k,
                    key_line,
                    value: node,
                }),
                None => {
                    let Kind::Scalar { text, .. } = node.kind else {
                        return Err(err(node.line, "a mapping key must be a scalar", None));
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == text) {
                        duplicate = Some((text, node.line, first.key_line));
                    } else {
                        *key = Some((text, node.line));
                    }
                }
            },
        }
        if let Some((k, line, first)) = duplicate {
            return Err(ConfigError {
                path: join(&stack_path(&stack), &k),
                line: Some(line),
                message: format!("duplicate key \"{k}\""),
                hint: Some(format!("first defined at line {first}")),
            });
        }
    }

    Ok(root.unwrap_or(Node {
        kind: Kind::Scalar {
            text: String::new(),
            style: Style::Plain,
        },
        line: 1,
    }))
}

// ---------------------------------------------------------------------------------------------
// Core schema resolution

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str,
}

fn all_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn is_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() && all_digits(frac, 10))
                || (all_digits(int, 10) && (frac.is_empty() || all_digits(frac, 10)))
        }
        None => all_digits(mantissa, 10),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => all_digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10),
    };
    mantissa_ok && exp_ok
}

/// Resolves a plain scalar per the YAML 1.2 core schema.
pub(crate) fn resolve(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("0x") {
        if all_digits(h, 16) {
            return match u64::from_str_radix(h, 16) {
                Ok(v) => Resolved::UInt(v),
                Err(_) => Resolved::Str,
            };
        }
        return Resolved::Str;
    }
    if let Some(o) = s.strip_prefix("0o") {
        if all_digits(o, 8) {
            return match u64::from_str_radix(o, 8) {
                Ok(v) => Resolved::UInt(v),
                Err(_) => Resolved::Str,
            };
        }
        return Resolved::Str;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Resolved::Float(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        _ => {}
    }
    if all_digits(unsigned, 10) {
        if let Ok(v) = s.parse::<i64>() {
            return if v >= 0 {
                Resolved::UInt(v as u64)
            } else {
                Resolved::Int(v)
            };
        }
        if let Ok(v) = unsigned.parse::<u64>()
            && !s.starts_with('-')
        {
            return Resolved::UInt(v);
        }
    }
    if is_float(s)
        && let Ok(v) = s.parse::<f64>()
    {
        return Resolved::Float(v);
    }
    Resolved::Str
}

// ---------------------------------------------------------------------------------------------
// serde

/// Error of the tree deserializer (wrapped by serde_path_to_error, which adds the path).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError(pub String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Deserializes a [`Node`].
pub(crate) struct De<'a>(pub &'a Node);

impl<'de> De<'de> {
    /// Visits the node as the core schema resolves it; `parse_interpolated`: resolve interpolated
    /// scalars too (number and bool targets).
    fn visit<V: Visitor<'de>>(self, v: V, parse_interpolated: bool) -> Result<V::Value, DeError> {
        match &self.0.kind {
            Kind::Scalar { text, style } => {
                let resolved = match style {
                    Style::Plain => resolve(text),
                    Style::Interpolated if parse_interpolated => resolve(text),
                    _ => Resolved::Str,
                };
                match resolved {
                    Resolved::Null => v.visit_unit(),
                    Resolved::Bool(b) => v.visit_bool(b),
                    Resolved::Int(i) => v.visit_i64(i),
                    Resolved::UInt(u) => v.visit_u64(u),
                    Resolved::Float(f) => v.visit_f64(f),
                    Resolved::Str => v.visit_borrowed_str(text),
                }
            }
            Kind::Seq(items) => v.visit_seq(Seq { iter: items.iter() }),
            Kind::Map(entries) => v.visit_map(Map {
                iter: entries.iter(),
                value: None,
            }),
        }
    }

    fn is_null(&self) -> bool {
        matches!(&self.0.kind, Kind::Scalar { text, style: Style::Plain } if resolve(text) == Resolved::Null)
    }

    /// The scalar's text for string targets.
    fn text<V: Visitor<'de>>(&self, v: &V) -> Result<&'de str, DeError> {
        match &self.0.kind {
            _ if self.is_null() => Err(de::Error::invalid_type(Unexpected::Unit, v)),
            Kind::Scalar { text, .. } => Ok(text),
            Kind::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, v)),
            Kind::Map(_) => Err(de::Error::invalid_type(Unexpected::Map, v)),
        }
    }
}

macro_rules! typed {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.visit(v, true)
        })*
    };
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.visit(v, false)
    }

    typed! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let text = self.text(&v)?;
        v.visit_borrowed_str(text)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let empty_interpolated = matches!(
            &self.0.kind,
            Kind::Scalar { text, style: Style::Interpolated } if text.is_empty()
        );
        // `rpm: ${RPM:-}` with RPM unset: absent, like a plain null.
        if self.is_null() || empty_interpolated {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.visit(v, false)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            // `fallbacks:` with nothing after it: an empty list.
            return v.visit_seq(Seq { iter: [].iter() });
        }
        self.visit(v, false)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            // `server:` with nothing after it: an empty section.
            return v.visit_map(Map {
                iter: [].iter(),
                value: None,
            });
        }
        self.visit(v, false)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        if matches!(self.0.kind, Kind::Seq(_)) {
            // serde's derived structs would take a list positionally; a config section is a mapping.
            return Err(de::Error::invalid_type(Unexpected::Seq, &v));
        }
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let text = self.text(&v)?;
        v.visit_enum(BorrowedStrDeserializer::new(text))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct Seq<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => seed.deserialize(De(node)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Map<'a> {
    iter: std::slice::Iter<'a, Entry>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some(entry) => {
                self.value = Some(&entry.value);
                let key = BorrowedStrDeserializer::<DeError>::new(&entry.key);
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => seed.deserialize(De(node)),
            None => Err(de::Error::custom("value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests;
