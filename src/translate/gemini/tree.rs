//! A JSON tree for rewriting JSON Schemas: objects keep their keys in source order (the order
//! of `properties` is the order Gemini answers in) and scalars stay as their source text
//! (numbers are never re-formatted, strings never re-escaped).

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value.
#[derive(Debug, Clone)]
pub(super) enum Node<'a> {
    Obj(Obj<'a>),
    Arr(Vec<Node<'a>>),
    /// A string, number, boolean or null, as source text.
    Raw(Cow<'a, RawValue>),
}

/// A JSON object, keys in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Obj<'a>(pub(super) Vec<(Cow<'a, str>, Node<'a>)>);

impl<'a> Node<'a> {
    /// Parse source text (already known to be JSON: it was parsed as a `RawValue`).
    pub(super) fn parse(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        let text = raw.get();
        match text.trim_start().as_bytes().first() {
            Some(b'{') => {
                let pairs: Pairs = serde_json::from_str(text)?;
                let mut obj = Vec::with_capacity(pairs.0.len());
                for (k, v) in pairs.0 {
                    obj.push((k, Node::parse(v)?));
                }
                Ok(Node::Obj(Obj(obj)))
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                items
                    .into_iter()
                    .map(Node::parse)
                    .collect::<Result<_, _>>()
                    .map(Node::Arr)
            }
            _ => Ok(Node::Raw(Cow::Borrowed(raw))),
        }
    }

    /// A JSON string made here.
    pub(super) fn string(s: &str) -> Node<'static> {
        let mut out = Vec::with_capacity(s.len() + 2);
        super::super::json::write_str(&mut out, s);
        let raw = String::from_utf8(out)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok());
        Node::Raw(raw.map_or(Cow::Borrowed(RawValue::NULL), Cow::Owned))
    }

    pub(super) fn bool(b: bool) -> Node<'static> {
        Node::Raw(Cow::Borrowed(if b {
            RawValue::TRUE
        } else {
            RawValue::FALSE
        }))
    }

    /// The value of a JSON string.
    pub(super) fn as_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Node::Raw(r) if r.get().starts_with('"') => serde_json::from_str(r.get()).ok(),
            _ => None,
        }
    }

    pub(super) fn is_str(&self, s: &str) -> bool {
        self.as_str().is_some_and(|v| v == s)
    }

    pub(super) fn is_true(&self) -> bool {
        matches!(self, Node::Raw(r) if r.get() == "true")
    }
}

impl<'a> Obj<'a> {
    pub(super) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Node<'a>> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<Node<'a>> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// Set `key` (in place when present, else at the end).
    pub(super) fn insert(&mut self, key: &str, value: Node<'a>) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.0.push((Cow::Owned(key.to_owned()), value)),
        }
    }

    /// Set `key` only when absent.
    pub(super) fn insert_missing(&mut self, key: Cow<'a, str>, value: Node<'a>) {
        if !self.contains(&key) {
            self.0.push((key, value));
        }
    }
}

/// An object's members as (key, raw value) pairs, in order.
struct Pairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<'a>, A::Error> {
                let mut pairs = Vec::new();
                while let Some(k) = map.next_key::<Cow<'a, str>>()? {
                    pairs.push((k, map.next_value::<&'a RawValue>()?));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Obj(o) => o.serialize(s),
            Node::Arr(a) => a.serialize(s),
            Node::Raw(r) => r.serialize(s),
        }
    }
}

impl Serialize for Obj<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_source_text() {
        let src = r#"{"z": 1.50, "a": {"y": "\u00e9", "b": [true, null, 1e3]}, "m": "x"}"#;
        let raw: Box<RawValue> = serde_json::from_str(src).expect("json");
        let node = Node::parse(&raw).expect("parses");
        let out = serde_json::to_string(&node).expect("writes");
        assert_eq!(
            out,
            r#"{"z":1.50,"a":{"y":"\u00e9","b":[true,null,1e3]},"m":"x"}"#
        );
        let Node::Obj(mut o) = node else {
            panic!("an object")
        };
        assert!(o.get("m").is_some_and(|m| m.is_str("x")));
        o.insert("z", Node::string("q\""));
        o.insert("new", Node::bool(true));
        assert!(o.remove("a").is_some());
        assert_eq!(
            serde_json::to_string(&o).expect("writes"),
            r#"{"z":"q\"","m":"x","new":true}"#
        );
    }
}
