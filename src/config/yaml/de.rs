//! serde: a `Deserializer` over the tree, resolving plain scalars only when the target type asks
//! for something other than a string.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

use super::{Entry, Kind, Node, Resolved, Style, resolve};

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
