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

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::ConfigError;

mod de;
mod resolve;

pub(crate) use de::De;
pub(crate) use resolve::{Resolved, resolve};

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

#[cfg(test)]
mod tests;
