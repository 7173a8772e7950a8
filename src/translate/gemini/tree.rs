//! A JSON tree for rewriting JSON Schemas, built in one pass: objects keep their keys in source
//! order (the order of `properties` is the order Gemini answers in) and strings without escapes
//! stay borrowed from the request.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node<'a> {
    Obj(Obj<'a>),
    Arr(Vec<Node<'a>>),
    Str(Cow<'a, str>),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

/// A JSON object, keys in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Obj<'a>(pub(super) Vec<(Cow<'a, str>, Node<'a>)>);

impl<'a> Node<'a> {
    pub(super) fn string(s: &'static str) -> Node<'static> {
        Node::Str(Cow::Borrowed(s))
    }

    /// The value of a JSON string.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn is_str(&self, s: &str) -> bool {
        self.as_str() == Some(s)
    }

    pub(super) fn is_true(&self) -> bool {
        matches!(self, Node::Bool(true))
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
    pub(super) fn insert(&mut self, key: Cow<'a, str>, value: Node<'a>) {
        match self.get_mut(&key) {
            Some(v) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// Set `key` only when absent.
    pub(super) fn insert_missing(&mut self, key: Cow<'a, str>, value: Node<'a>) {
        if !self.contains(&key) {
            self.0.push((key, value));
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Node<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Node<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'a>, A::Error> {
                let mut pairs = Vec::new();
                while let Some(k) = map.next_key::<Cow<'a, str>>()? {
                    pairs.push((k, map.next_value::<Node<'a>>()?));
                }
                Ok(Node::Obj(Obj(pairs)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'a>, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<Node<'a>>()? {
                    items.push(v);
                }
                Ok(Node::Arr(items))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'a>, E> {
                Ok(Node::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node<'a>, E> {
                Ok(Node::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Node<'a>, E> {
                Ok(Node::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node<'a>, E> {
                Ok(Node::Num(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node<'a>, E> {
                Ok(Node::Num(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node<'a>, E> {
                serde_json::Number::from_f64(v)
                    .map(Node::Num)
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node<'a>, E> {
                Ok(Node::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Node<'a>, E> {
                Ok(Node::Null)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Obj(o) => o.serialize(s),
            Node::Arr(a) => a.serialize(s),
            Node::Str(v) => s.serialize_str(v),
            Node::Num(n) => n.serialize(s),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Null => s.serialize_unit(),
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
    fn keeps_order_and_borrows() {
        let src = r#"{"z": 1.5, "a": {"y": "\u00e9", "b": [true, null, -3]}, "m": "x"}"#;
        let node: Node = serde_json::from_str(src).expect("parses");
        let out = serde_json::to_string(&node).expect("writes");
        assert_eq!(out, r#"{"z":1.5,"a":{"y":"é","b":[true,null,-3]},"m":"x"}"#);
        let Node::Obj(mut o) = node else {
            panic!("an object")
        };
        assert!(matches!(o.get("m"), Some(Node::Str(Cow::Borrowed("x")))));
        o.insert(Cow::Borrowed("z"), Node::string("q\""));
        o.insert(Cow::Borrowed("new"), Node::Bool(true));
        assert!(o.remove("a").is_some());
        assert_eq!(
            serde_json::to_string(&o).expect("writes"),
            r#"{"z":"q\"","m":"x","new":true}"#
        );
    }
}
