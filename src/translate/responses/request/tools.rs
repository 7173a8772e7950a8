//! `tools`, `tool_choice` and `text.format` -> the chat request's tools, tool choice and
//! response format (hosted tools named in [`Dropped`]).

use serde_json::value::RawValue;

use super::super::super::json::JStr;
use super::super::super::{Dropped, TranslateError};
use super::*;

/// Tools of hosted kinds the chat pivot cannot run, by their `type`.
const HOSTED_TOOLS: &[(&str, &str)] = &[
    ("web_search", "tools.web_search"),
    ("web_search_preview", "tools.web_search_preview"),
    ("web_search_2025_08_26", "tools.web_search"),
    ("web_search_preview_2025_03_11", "tools.web_search_preview"),
    ("file_search", "tools.file_search"),
    ("computer", "tools.computer"),
    ("computer_use_preview", "tools.computer_use_preview"),
    ("code_interpreter", "tools.code_interpreter"),
    ("image_generation", "tools.image_generation"),
    ("mcp", "tools.mcp"),
    ("local_shell", "tools.local_shell"),
    ("shell", "tools.shell"),
    ("custom", "tools.custom"),
    ("apply_patch", "tools.apply_patch"),
    ("namespace", "tools.namespace"),
    ("tool_search", "tools.tool_search"),
];

pub(super) fn tools_out<'b>(
    raw: &'b RawValue,
    dropped: &mut Dropped,
) -> Result<Vec<ToolOut<'b>>, TranslateError> {
    if !raw.get().starts_with('[') {
        return Err(invalid("`tools` must be an array"));
    }
    let list: Vec<RDef<'b>> = parse_objects(raw, "a tool", |i, what| match i {
        Some(i) => invalid(format!("tools[{i}]: {what}")),
        None => invalid(format!("tools: {what}")),
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        if t.kind == "function" {
            let name = t
                .name
                .ok_or_else(|| invalid(format!("tools[{i}]: a function tool needs `name`")))?;
            out.push(ToolOut {
                kind: "function",
                function: FnDefOut {
                    name,
                    description: t.description,
                    parameters: t.schema,
                    strict: t.strict,
                },
            });
        } else {
            let name = HOSTED_TOOLS
                .iter()
                .find(|(k, _)| *k == t.kind)
                .map_or("tools.other", |(_, n)| n);
            dropped.push(name);
        }
    }
    Ok(out)
}

pub(super) fn tool_choice_out<'b>(
    raw: &'b RawValue,
    dropped: &mut Dropped,
) -> Result<Option<ChoiceOut<'b>>, TranslateError> {
    if let Some(mode) = JStr::from_raw(raw) {
        return Ok(Some(ChoiceOut::Mode(mode)));
    }
    let c: RChoice<'b> =
        serde_json::from_str(raw.get()).map_err(|e| invalid(format!("tool_choice: {e}")))?;
    match &*c.kind {
        "function" => {
            let name = c
                .name
                .ok_or_else(|| invalid("tool_choice: a function choice needs `name`"))?;
            Ok(Some(ChoiceOut::Function {
                kind: "function",
                function: NamedOut { name },
            }))
        }
        "allowed_tools" => {
            let mode = c
                .mode
                .ok_or_else(|| invalid("tool_choice: allowed_tools needs `mode`"))?;
            let mut tools = Vec::new();
            for t in c.tools.iter().flatten() {
                match (&*t.kind, t.name) {
                    ("function", Some(name)) => tools.push(NamedToolOut {
                        kind: "function",
                        function: NamedOut { name },
                    }),
                    _ => dropped.push("tool_choice.allowed_tools"),
                }
            }
            Ok(Some(ChoiceOut::Allowed {
                kind: "allowed_tools",
                allowed_tools: AllowedOut { mode, tools },
            }))
        }
        _ => {
            dropped.push("tool_choice");
            Ok(None)
        }
    }
}

pub(super) fn format_out<'b>(
    raw: &'b RawValue,
    dropped: &mut Dropped,
) -> Result<Option<FormatOut<'b>>, TranslateError> {
    let f: RDef<'b> =
        serde_json::from_str(raw.get()).map_err(|e| invalid(format!("text.format: {e}")))?;
    match &*f.kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(FormatOut::JsonObject)),
        "json_schema" => {
            let (Some(name), Some(schema)) = (f.name, f.schema) else {
                return Err(invalid(
                    "text.format: a json_schema format needs `name` and `schema`",
                ));
            };
            Ok(Some(FormatOut::JsonSchema {
                json_schema: SchemaOut {
                    name,
                    description: f.description,
                    schema,
                    strict: f.strict,
                },
            }))
        }
        _ => {
            dropped.push("text.format");
            Ok(None)
        }
    }
}
