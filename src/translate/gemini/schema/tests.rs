use serde_json::{Value, json};

use super::*;

fn run(schema: Value) -> (Option<Value>, String) {
    let raw = serde_json::value::to_raw_value(&schema).expect("raw");
    let mut d = Dropped::default();
    let out = gemini_schema(&raw, &mut d)
        .expect("cleans")
        .map(|s| serde_json::to_value(&s).expect("json"));
    (out, d.join(","))
}

#[test]
fn clean_schemas_pass_unchanged() {
    let s = json!({"type": "object", "properties": {
            "location": {"type": "string", "description": "City"},
            "unit": {"type": "string", "enum": ["c", "f"], "format": "enum"},
            "days": {"type": "integer", "minimum": 1, "maximum": 10},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}
        }, "required": ["location"]});
    let raw = serde_json::value::to_raw_value(&s).expect("raw");
    let mut d = Dropped::default();
    let out = gemini_schema(&raw, &mut d).expect("ok").expect("some");
    assert!(matches!(out, Schema::Raw(_)));
    assert!(d.is_empty());
    // A property *named* like a refused keyword is fine.
    let s = json!({"type":"object","properties":{"additionalProperties":{"type":"string"}}});
    let (out, d) = run(s.clone());
    assert_eq!(out, Some(s));
    assert_eq!(d, "");
}

#[test]
fn empty_objects_are_left_out() {
    assert_eq!(run(json!({"type": "object"})).0, None);
    assert_eq!(
        run(json!({"type": "object", "description": "nothing"})).0,
        None
    );
    assert_eq!(run(json!({"type": "object", "properties": {}})).0, None);
    assert_eq!(
        run(json!({"type": "object", "properties": {}, "additionalProperties": false})).0,
        None
    );
}

#[test]
fn refused_keywords_are_removed_and_named() {
    let (out, d) = run(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": false,
        "strict": true,
        "properties": {
            "n": {"type": ["integer", "null"], "exclusiveMinimum": 0},
            "kind": {"const": "cat"},
            "site": {"type": "string", "format": "uri"},
            "empty": {"type": "object", "properties": {}}
        },
        "required": ["n", "kind", "missing"]
    }));
    assert_eq!(
        out,
        Some(json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "nullable": true},
                "kind": {"type": "string", "enum": ["cat"]},
                "site": {"type": "string"},
                "empty": {"type": "object"}
            },
            "required": ["n", "kind"]
        }))
    );
    assert_eq!(
        d,
        "schema.exclusiveMinimum,schema.format,schema.$schema,schema.additionalProperties,schema.strict"
    );
}

#[test]
fn refs_are_inlined_and_nullable_unions_collapsed() {
    // The shape pydantic writes for a model with a nested model and an Optional field.
    let (out, d) = run(json!({
        "$defs": {
            "Address": {"type": "object", "title": "Address", "properties": {
                "city": {"type": "string", "title": "City"}
            }, "required": ["city"], "additionalProperties": false}
        },
        "type": "object",
        "title": "Person",
        "properties": {
            "name": {"type": "string"},
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null},
            "pet": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        },
        "required": ["name", "home"]
    }));
    let address = json!({"type": "object", "title": "Address", "properties": {
            "city": {"type": "string", "title": "City"}}, "required": ["city"]});
    let mut home = address.clone();
    home["description"] = json!("Where they live");
    let mut work = address.clone();
    work["nullable"] = json!(true);
    work["default"] = Value::Null;
    assert_eq!(
        out,
        Some(json!({
            "type": "object",
            "title": "Person",
            "properties": {
                "name": {"type": "string"},
                "home": home,
                "work": work,
                "pet": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["name", "home"]
        }))
    );
    assert_eq!(d, "schema.additionalProperties");
}

#[test]
fn recursive_refs_stop() {
    let (out, d) = run(json!({
        "$defs": {"Node": {"type": "object", "properties": {
            "value": {"type": "string"},
            "next": {"$ref": "#/$defs/Node"}
        }}},
        "$ref": "#/$defs/Node"
    }));
    let out = out.expect("some");
    let mut depth = 0;
    let mut node = &out;
    while let Some(next) = node.pointer("/properties/next") {
        node = next;
        depth += 1;
    }
    assert_eq!(depth, usize::from(MAX_REF_DEPTH));
    assert_eq!(node, &json!({"type": "object"}));
    assert_eq!(d, "schema.$ref");
}

#[test]
fn many_references_stay_bounded() {
    // Each definition refers to the next one 4 times: 4^8 copies if nothing stopped it.
    let mut defs = serde_json::Map::new();
    for i in 0..8 {
        let next = json!({"$ref": format!("#/$defs/D{}", i + 1)});
        defs.insert(
            format!("D{i}"),
            json!({"type": "object", "properties": {"a": next, "b": next, "c": next, "d": next}}),
        );
    }
    defs.insert("D8".into(), json!({"type": "string"}));
    let (out, d) = run(json!({"$defs": defs, "$ref": "#/$defs/D0"}));
    let size = out.expect("some").to_string().len();
    assert!(size < 200_000, "{size} bytes");
    assert_eq!(d, "schema.$ref");
}

#[test]
fn rewritten_schemas_keep_property_order() {
    let raw: Box<RawValue> = serde_json::from_str(
            r#"{"type":"object","additionalProperties":false,"properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"},"mid":{"type":"boolean"}}}"#,
        )
        .expect("json");
    let mut d = Dropped::default();
    let out = gemini_schema(&raw, &mut d).expect("ok").expect("some");
    assert_eq!(
        serde_json::to_string(&out).expect("json"),
        r#"{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"},"mid":{"type":"boolean"}}}"#
    );
}

#[test]
fn all_of_is_merged() {
    let (out, _) = run(json!({"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "number"}}, "required": ["b"]}
    ]}));
    assert_eq!(
        out,
        Some(json!({"type": "object", "properties": {
                "a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a", "b"]}))
    );
}
