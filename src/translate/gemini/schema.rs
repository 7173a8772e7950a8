//! JSON Schema -> the OpenAPI subset Gemini takes for `parameters` and `responseSchema`.
//!
//! Gemini refuses keywords outside its subset. A schema that uses only kept keywords is copied
//! as is (checked without building a tree); any other is rewritten, keys in their order:
//! `$ref`s into `$defs` / `definitions` are inlined (8 levels deep and 256 times at most; a
//! reference past that, e.g. a recursive one, becomes `{"type":"object"}`), `allOf` is merged, `oneOf` becomes `anyOf`, a `null` member of `anyOf`
//! or of a `type` array becomes `nullable: true`, `const` becomes a one-value `enum`, `required`
//! keeps only defined properties, empty `properties` are removed, `format`s Gemini does not know
//! are removed, and every other keyword is removed and named in `Dropped` (`schema.KEYWORD`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::super::{Dropped, TranslateError};
use super::tree::{Node, Obj};

/// Keywords of Gemini's `Schema` object, kept.
const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// `format`s Gemini knows.
const FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// Deepest `$ref` expansion.
const MAX_REF_DEPTH: u8 = 8;
/// Most `$ref` expansions in one schema.
const MAX_EXPANSIONS: usize = 256;

/// A JSON Schema made fit for Gemini: `Ok(None)` when nothing is left to send (an object
/// schema without properties, which Gemini refuses as `parameters`).
pub(super) fn gemini_schema<'a>(
    raw: &'a RawValue,
    dropped: &mut Dropped,
) -> Result<Option<Schema<'a>>, TranslateError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    if let Ok(shape) = Check.deserialize(&mut de) {
        return Ok((!shape.empty_object()).then_some(Schema::Raw(raw)));
    }
    let root: Node = serde_json::from_str(raw.get())
        .map_err(|e| TranslateError::Invalid(format!("invalid JSON Schema: {e}")))?;
    let mut rewrite = Rewrite {
        defs: Obj::default(),
        expansions: 0,
        dropped,
    };
    let root = match root {
        Node::Obj(mut o) => {
            for key in ["definitions", "$defs"] {
                if let Some(Node::Obj(d)) = o.remove(key) {
                    rewrite.defs.0.extend(d.0);
                }
            }
            Node::Obj(o)
        }
        other => other,
    };
    let cleaned = rewrite.clean(root, 0);
    let shape = match &cleaned {
        Node::Obj(o) => Shape {
            object: o.get("type").is_some_and(|t| t.is_str("object")),
            members: o.contains("properties") || o.contains("anyOf"),
        },
        _ => Shape::default(),
    };
    Ok((!shape.empty_object()).then_some(Schema::Tree(cleaned)))
}

/// A schema for Gemini: the client's, copied, or one rewritten.
#[derive(Debug)]
pub(super) enum Schema<'a> {
    Raw(&'a RawValue),
    Tree(Node<'a>),
}

impl Serialize for Schema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Schema::Raw(r) => r.serialize(s),
            Schema::Tree(t) => t.serialize(s),
        }
    }
}

/// What the check saw at a schema's top.
#[derive(Default)]
struct Shape {
    /// `type` is `object`.
    object: bool,
    /// It has (non-empty) `properties` or `anyOf`.
    members: bool,
}

impl Shape {
    /// An object schema with nothing in it, which Gemini refuses as `parameters`.
    fn empty_object(&self) -> bool {
        self.object && !self.members
    }
}

// ---------------------------------------------------------------------------------------------
// The check: does the schema use only what Gemini takes? (No tree is built.)
// ---------------------------------------------------------------------------------------------

/// A schema object whose keys are all kept, with no `type` array, no `null` type, no empty
/// `properties` and no unknown `format`; it tells the top's [`Shape`].
#[derive(Clone, Copy)]
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = Shape;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = Shape;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a schema object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "properties" => {
                    map.next_value_seed(Properties)?;
                    shape.members = true;
                }
                "items" => {
                    map.next_value_seed(Check)?;
                }
                "anyOf" => {
                    map.next_value_seed(Schemas)?;
                    shape.members = true;
                }
                "type" => {
                    let t = map.next_value::<Cow<'de, str>>()?;
                    if t == "null" {
                        return Err(de::Error::custom("null type"));
                    }
                    shape.object = t == "object";
                }
                "format" => {
                    let f = map.next_value::<Cow<'de, str>>()?;
                    if !FORMATS.contains(&&*f) {
                        return Err(de::Error::custom("unknown format"));
                    }
                }
                k if KEPT.contains(&k) => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => return Err(de::Error::custom("keyword Gemini refuses")),
            }
        }
        Ok(shape)
    }
}

/// `properties`: a non-empty map of schemas.
struct Properties;

impl<'de> DeserializeSeed<'de> for Properties {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Properties {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of schemas")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Check)?;
            n += 1;
        }
        if n == 0 {
            return Err(de::Error::custom("empty properties"));
        }
        Ok(())
    }
}

/// `anyOf`: an array of schemas.
struct Schemas;

impl<'de> DeserializeSeed<'de> for Schemas {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Schemas {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of schemas")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The rewrite.
// ---------------------------------------------------------------------------------------------

/// The rewrite of one schema.
struct Rewrite<'a, 'd> {
    /// The root's `$defs` and `definitions`.
    defs: Obj<'a>,
    /// `$ref`s expanded so far (a schema whose definitions refer to each other many times would
    /// otherwise grow exponentially).
    expansions: usize,
    dropped: &'d mut Dropped,
}

/// The definition a local `$ref` names (`#/$defs/NAME` or `#/definitions/NAME`).
fn def_name(reference: &str) -> Option<String> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))?;
    // JSON Pointer escapes.
    Some(name.replace("~1", "/").replace("~0", "~"))
}

/// The name a removed keyword is reported under.
fn dropped_keyword(key: &str) -> &'static str {
    match key {
        "additionalProperties" => "schema.additionalProperties",
        "$schema" => "schema.$schema",
        "$id" => "schema.$id",
        "$comment" => "schema.$comment",
        "$ref" => "schema.$ref",
        "strict" => "schema.strict",
        "const" => "schema.const",
        "examples" => "schema.examples",
        "exclusiveMinimum" => "schema.exclusiveMinimum",
        "exclusiveMaximum" => "schema.exclusiveMaximum",
        "multipleOf" => "schema.multipleOf",
        "patternProperties" => "schema.patternProperties",
        "propertyNames" => "schema.propertyNames",
        "unevaluatedProperties" => "schema.unevaluatedProperties",
        "dependentRequired" => "schema.dependentRequired",
        "dependentSchemas" => "schema.dependentSchemas",
        "if" | "then" | "else" => "schema.if",
        "not" => "schema.not",
        "allOf" => "schema.allOf",
        "prefixItems" => "schema.prefixItems",
        "contains" => "schema.contains",
        "uniqueItems" => "schema.uniqueItems",
        "readOnly" => "schema.readOnly",
        "writeOnly" => "schema.writeOnly",
        "deprecated" => "schema.deprecated",
        "format" => "schema.format",
        "type" => "schema.type",
        _ => "schema.other",
    }
}

/// `{"type":"object"}` (with the description kept), for a reference that is not followed.
fn opaque_object<'a>(description: Option<Node<'a>>) -> Node<'a> {
    let mut o = Obj::default();
    o.insert(Cow::Borrowed("type"), Node::string("object"));
    if let Some(d) = description {
        o.insert(Cow::Borrowed("description"), d);
    }
    Node::Obj(o)
}

impl<'a> Rewrite<'a, '_> {
    fn clean(&mut self, node: Node<'a>, depth: u8) -> Node<'a> {
        let Node::Obj(mut m) = node else {
            // `true` / `false` schemas: Gemini has no "anything".
            self.dropped.push("schema.other");
            return Node::Obj(Obj::default());
        };

        if let Some(reference) = m.remove("$ref") {
            let def = reference
                .as_str()
                .and_then(def_name)
                .and_then(|name| self.defs.get(&name).cloned());
            match def {
                Some(_) if depth >= MAX_REF_DEPTH || self.expansions >= MAX_EXPANSIONS => {
                    self.dropped.push("schema.$ref");
                    return opaque_object(m.remove("description"));
                }
                Some(Node::Obj(mut def)) => {
                    self.expansions += 1;
                    // Keywords beside the `$ref` (a description, say) win over the definition's.
                    for (k, v) in m.0 {
                        def.insert(k, v);
                    }
                    return self.clean(Node::Obj(def), depth + 1);
                }
                _ => self.dropped.push("schema.$ref"),
            }
        }

        if let Some(Node::Arr(parts)) = m.remove("allOf") {
            for p in parts {
                let Node::Obj(p) = self.clean(p, depth) else {
                    continue;
                };
                for (k, v) in p.0 {
                    match (&*k, m.get_mut(&k), v) {
                        ("properties", Some(Node::Obj(mine)), Node::Obj(theirs)) => {
                            mine.0.extend(theirs.0)
                        }
                        ("required", Some(Node::Arr(mine)), Node::Arr(theirs)) => {
                            mine.extend(theirs)
                        }
                        (_, Some(_), _) => {}
                        (_, None, v) => m.0.push((k, v)),
                    }
                }
            }
        }
        if let Some(one_of) = m.remove("oneOf") {
            m.insert_missing(Cow::Borrowed("anyOf"), one_of);
        }
        if let Some(c) = m.remove("const") {
            if c.as_str().is_some() && !m.contains("enum") {
                m.insert(Cow::Borrowed("enum"), Node::Arr(vec![c]));
                m.insert_missing(Cow::Borrowed("type"), Node::string("string"));
            } else {
                self.dropped.push("schema.const");
            }
        }

        // A `type` array: one non-null type, `nullable` for `null`.
        match m.remove("type") {
            Some(Node::Arr(types)) => {
                let nullable = types.iter().any(|t| t.is_str("null"));
                let mut others = types.into_iter().filter(|t| !t.is_str("null"));
                if let Some(first) = others.next() {
                    m.insert(Cow::Borrowed("type"), first);
                }
                if others.next().is_some() {
                    self.dropped.push("schema.type");
                }
                if nullable {
                    m.insert(Cow::Borrowed("nullable"), Node::Bool(true));
                }
            }
            Some(t) if t.is_str("null") => m.insert(Cow::Borrowed("nullable"), Node::Bool(true)),
            Some(t) => m.insert(Cow::Borrowed("type"), t),
            None => {}
        }

        if let Some(Node::Arr(members)) = m.remove("anyOf") {
            let mut nullable = false;
            let mut kept = Vec::with_capacity(members.len());
            for member in members {
                let member = self.clean(member, depth);
                let is_null = matches!(&member, Node::Obj(o)
                    if o.get("nullable").is_some_and(Node::is_true) && !o.contains("type") && o.0.len() == 1);
                if is_null {
                    nullable = true;
                } else {
                    kept.push(member);
                }
            }
            if nullable {
                m.insert(Cow::Borrowed("nullable"), Node::Bool(true));
            }
            if kept.len() == 1 {
                // `X or null`: X itself, nullable; this schema's own keywords win.
                if let Some(Node::Obj(only)) = kept.pop() {
                    for (k, v) in only.0 {
                        m.insert_missing(k, v);
                    }
                }
            } else if !kept.is_empty() {
                m.insert(Cow::Borrowed("anyOf"), Node::Arr(kept));
            }
        }

        if let Some(Node::Obj(props)) = m.remove("properties") {
            let props: Vec<_> = props
                .0
                .into_iter()
                .map(|(k, v)| (k, self.clean(v, depth)))
                .collect();
            if !props.is_empty() {
                m.insert(Cow::Borrowed("properties"), Node::Obj(Obj(props)));
            }
        }
        if let Some(items) = m.remove("items") {
            let items = match items {
                Node::Arr(tuple) => {
                    self.dropped.push("schema.prefixItems");
                    tuple
                        .into_iter()
                        .next()
                        .unwrap_or(Node::Obj(Obj::default()))
                }
                one => one,
            };
            let items = self.clean(items, depth);
            m.insert(Cow::Borrowed("items"), items);
        }
        if let Some(Node::Arr(required)) = m.remove("required") {
            let required: Vec<Node> = match m.get("properties") {
                Some(Node::Obj(props)) => required
                    .into_iter()
                    .filter(|r| r.as_str().is_some_and(|name| props.contains(name)))
                    .collect(),
                _ => Vec::new(),
            };
            if !required.is_empty() {
                m.insert(Cow::Borrowed("required"), Node::Arr(required));
            }
        }
        if m.get("format")
            .is_some_and(|f| f.as_str().is_none_or(|f| !FORMATS.contains(&f)))
        {
            m.remove("format");
            self.dropped.push("schema.format");
        }
        let dropped = &mut *self.dropped;
        m.0.retain(|(k, _)| {
            let keep = KEPT.contains(&&**k);
            if !keep {
                dropped.push(dropped_keyword(k));
            }
            keep
        });
        Node::Obj(m)
    }
}

#[cfg(test)]
mod tests;
