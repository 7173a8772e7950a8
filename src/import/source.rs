//! Reading another gateway's YAML file: saphyr's loader with every scalar kept as written (so a
//! model named `1.10` stays `1.10`), nesting bounded before the tree is built (so a hostile file
//! cannot exhaust the stack), alias expansion bounded by saphyr, and `<<` merge keys expanded the
//! way PyYAML does (LiteLLM reads its file with PyYAML). Numbers and booleans are read from a
//! scalar's text when a setting asks for one, as PyYAML's YAML 1.1 would.

use std::borrow::Cow;

use saphyr::{Scalar, ScalarStyle, Yaml, YamlLoader};
use saphyr_parser::{Event, Parser};

/// Deepest nesting of sequences and mappings accepted (the same bound as our own loader's).
const MAX_DEPTH: usize = 64;

/// The first document of `text`; `None` when there is none (an empty file, or only comments).
pub(crate) fn load(text: &str) -> Result<Option<Yaml<'_>>, String> {
    check_depth(text)?;
    let mut loader: YamlLoader<'_, Yaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut loader, true).map_err(|e| e.to_string())?;
    if let Some(e) = loader.error() {
        return Err(e.to_string());
    }
    Ok(loader.into_documents().into_iter().next())
}

/// Refuses a document nested deeper than [`MAX_DEPTH`], from the event stream alone.
fn check_depth(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| e.to_string())?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} levels (line {})",
                        span.start.line()
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The node under any tag (`!!map`, `!custom`).
fn untagged<'a, 'i>(n: &'a Yaml<'i>) -> &'a Yaml<'i> {
    match n {
        Yaml::Tagged(_, inner) => untagged(inner),
        other => other,
    }
}

/// A scalar's text as written, `None` for a null (empty, `~`, `null`) or a collection.
pub(crate) fn text<'a>(n: &'a Yaml<'_>) -> Option<&'a str> {
    match untagged(n) {
        Yaml::Representation(s, style, _) => {
            let s: &str = s;
            if *style == ScalarStyle::Plain && matches!(s, "" | "~" | "null" | "Null" | "NULL") {
                None
            } else {
                Some(s)
            }
        }
        Yaml::Value(Scalar::String(s)) => Some(s),
        _ => None,
    }
}

/// A finite number from a scalar (`600`, `0.5`, `3e-06`, `"600"`, `1_000` as PyYAML reads it).
pub(crate) fn number(n: &Yaml<'_>) -> Option<f64> {
    let t = text(n)?.trim();
    let t: Cow<'_, str> = if t.contains('_') {
        t.replace('_', "").into()
    } else {
        t.into()
    };
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A whole number that is 0 or more.
pub(crate) fn count(n: &Yaml<'_>) -> Option<u64> {
    number(n)
        .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= 9.0e15)
        .map(|f| f as u64)
}

/// A boolean as PyYAML reads one (`true`, `True`, `yes`, `on`, …; quoted `"true"` too, as
/// LiteLLM's settings models accept it).
pub(crate) fn boolean(n: &Yaml<'_>) -> Option<bool> {
    match text(n)?.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" => Some(true),
        "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// The items of a sequence.
pub(crate) fn items<'a, 'i>(n: &'a Yaml<'i>) -> Option<&'a [Yaml<'i>]> {
    match untagged(n) {
        Yaml::Sequence(s) => Some(s),
        _ => None,
    }
}

/// The entries of a mapping in file order, with `<<: *anchor` (or `<<: [*a, *b]`) merged in:
/// the mapping's own keys win, then the merged mappings' in order. `None` if `n` is not a
/// mapping. Keys that are not scalars are skipped.
pub(crate) fn entries<'a, 'i>(n: &'a Yaml<'i>) -> Option<Vec<(&'a str, &'a Yaml<'i>)>> {
    let Yaml::Mapping(m) = untagged(n) else {
        return None;
    };
    let mut own: Vec<(&'a str, &'a Yaml<'i>)> = Vec::with_capacity(m.len());
    let mut merged: Vec<(&'a str, &'a Yaml<'i>)> = Vec::new();
    for (k, v) in m {
        let Some(key) = text(k) else { continue };
        if key == "<<" {
            let sources: Vec<&Yaml<'i>> = match items(v) {
                Some(list) => list.iter().collect(),
                None => vec![v],
            };
            for s in sources {
                merged.extend(entries(s).unwrap_or_default());
            }
        } else {
            own.push((key, v));
        }
    }
    for (k, v) in merged {
        if !own.iter().any(|(o, _)| *o == k) {
            own.push((k, v));
        }
    }
    Some(own)
}

/// The value of `key` in a mapping (merge keys included).
pub(crate) fn get<'a, 'i>(n: &'a Yaml<'i>, key: &str) -> Option<&'a Yaml<'i>> {
    entries(n)?
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// What a node is, for messages: `a mapping`, `a list`, `a string`, `empty`.
pub(crate) fn describe(n: &Yaml<'_>) -> &'static str {
    match untagged(n) {
        Yaml::Mapping(_) => "a mapping",
        Yaml::Sequence(_) => "a list",
        other if text(other).is_none() => "empty",
        _ => "a single value",
    }
}
