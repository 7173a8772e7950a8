//! The cache key: SHA-256 over a canonical form of everything that changes the answer.
//!
//! Canonical JSON: object keys sorted, insignificant whitespace gone, numbers normalised (`1.0`
//! and `1` are the same; `1e2` and `100` too), and the top-level fields that do not change the
//! answer removed (`stream`, `stream_options`, `user`, `metadata`, `store`, `service_tier`). The
//! hash also covers the scope (the gateway key's id with `scope: key`), the endpoint kind and
//! the model name the client asked for.

use crate::wire::{Endpoint, Format};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Key = [u8; 32];

/// Top-level request fields that never change the answer.
const IGNORED: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
];

/// The key's tag of the endpoint a request came to (answers are stored in that endpoint's format).
fn tag(endpoint: Endpoint) -> &'static [u8] {
    match endpoint {
        Endpoint::Chat(Format::OpenAi) => b"chat",
        Endpoint::Chat(Format::Anthropic) => b"messages",
        Endpoint::Embeddings => b"embeddings",
        Endpoint::Responses => b"responses",
        Endpoint::PassThrough(op) => op.name().as_bytes(),
    }
}

/// The key of a request body, or `None` when the body is not a JSON object.
pub fn key(endpoint: Endpoint, scope: &str, body: &[u8]) -> Option<(Key, Value)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let mut canon = Vec::with_capacity(body.len());
    canon.push(b'{');
    let mut first = true;
    // serde_json's Map (without `preserve_order`) iterates in sorted key order.
    for (k, v) in obj {
        if IGNORED.contains(&k.as_str()) {
            continue;
        }
        if !first {
            canon.push(b',');
        }
        first = false;
        write_string(&mut canon, k);
        canon.push(b':');
        write_canonical(&mut canon, v);
    }
    canon.push(b'}');
    let mut h = Sha256::new();
    h.update(b"aigw-cache-v1\0");
    h.update(tag(endpoint));
    h.update(b"\0");
    h.update(scope.as_bytes());
    h.update(b"\0");
    h.update(&canon);
    Some((h.finalize().into(), value))
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping is canonical for a given string; written in place.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_display(out, i);
            } else if let Some(u) = n.as_u64() {
                write_display(out, u);
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    write_display(out, f as i64);
                } else {
                    write_display(out, format_args!("{f:e}"));
                }
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_canonical(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Temperature 0 or a seed: the answer is meant to be reproducible.
pub fn is_deterministic(req: &Value) -> bool {
    req.get("seed").is_some_and(|s| !s.is_null())
        || req
            .get("temperature")
            .and_then(Value::as_f64)
            .is_some_and(|t| t == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(body: &str) -> Key {
        key(
            Endpoint::Chat(crate::wire::Format::OpenAi),
            "",
            body.as_bytes(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn order_whitespace_and_numbers_do_not_matter() {
        let a = k(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.0}"#);
        let b = k(
            r#"{ "temperature" : 1, "messages" : [ {"content":"hi","role":"user"} ], "model":"m" }"#,
        );
        assert_eq!(a, b);
        assert_eq!(k(r#"{"x":100}"#), k(r#"{"x":1e2}"#));
    }

    #[test]
    fn ignored_fields_and_semantic_fields() {
        let base = k(r#"{"model":"m","messages":[]}"#);
        assert_eq!(
            base,
            k(
                r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true},"user":"u1"}"#
            )
        );
        assert_ne!(base, k(r#"{"model":"m","messages":[],"temperature":0.5}"#));
        assert_ne!(base, k(r#"{"model":"m2","messages":[]}"#));
        let scoped = key(
            Endpoint::Chat(crate::wire::Format::OpenAi),
            "team-a",
            br#"{"model":"m","messages":[]}"#,
        )
        .unwrap()
        .0;
        assert_ne!(base, scoped);
        let other = key(
            Endpoint::Chat(crate::wire::Format::Anthropic),
            "",
            br#"{"model":"m","messages":[]}"#,
        )
        .unwrap()
        .0;
        assert_ne!(base, other);
    }

    #[test]
    fn determinism() {
        assert!(is_deterministic(&serde_json::json!({"temperature": 0})));
        assert!(is_deterministic(
            &serde_json::json!({"seed": 3, "temperature": 1})
        ));
        assert!(!is_deterministic(&serde_json::json!({"temperature": 0.7})));
        assert!(!is_deterministic(&serde_json::json!({})));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-e]{1,3}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Serialise with object keys in reverse order.
    fn reversed(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), reversed(v)))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(a) => {
                format!("[{}]", a.iter().map(reversed).collect::<Vec<_>>().join(","))
            }
            other => other.to_string(),
        }
    }

    proptest! {
        #[test]
        fn permuting_object_keys_never_changes_the_key(fields in prop::collection::vec(("[a-h]{1,4}", arb_json()), 0..6)) {
            let obj = Value::Object(fields.into_iter().collect());
            let a = key(Endpoint::Chat(crate::wire::Format::OpenAi), "s", obj.to_string().as_bytes()).unwrap().0;
            let b = key(Endpoint::Chat(crate::wire::Format::OpenAi), "s", reversed(&obj).as_bytes()).unwrap().0;
            prop_assert_eq!(a, b);
        }
    }
}
