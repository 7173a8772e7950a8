//! Responses input items -> chat messages, and the same items in stored form (as
//! `input_items` lists them, each with an `id`). Text, arguments and tool outputs are copied as
//! raw JSON; an item that is not a valid input item is an error naming it (`input[3]: …`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::super::json::{JStr, Txt, write_str};
use super::super::{Dropped, TranslateError};
use super::ResponseIds;
use super::object::OutputList;

mod content;

/// An input item, any type (the fields each type uses).
#[derive(Deserialize)]
struct RItem<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<JStr<'a>>,
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    call_id: Option<JStr<'a>>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    arguments: Option<JStr<'a>>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

/// A content part of a message (or of a function call's output).
#[derive(Deserialize)]
struct RPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    image_url: Option<JStr<'a>>,
    #[serde(borrow)]
    detail: Option<JStr<'a>>,
    #[serde(borrow)]
    file_id: Option<JStr<'a>>,
    #[serde(borrow)]
    file_data: Option<JStr<'a>>,
    #[serde(borrow)]
    file_url: Option<JStr<'a>>,
    #[serde(borrow)]
    filename: Option<JStr<'a>>,
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
}

// ---- chat messages out ----------------------------------------------------------------------

#[derive(Serialize)]
pub(super) struct MsgOut<'b> {
    role: &'static str,
    content: ContentOut<'b>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<CallOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<JStr<'b>>,
}

impl<'b> MsgOut<'b> {
    pub(super) fn system(text: JStr<'b>) -> Self {
        Self::new("system", ContentOut::Text(Txt::Raw(text)))
    }

    pub(super) fn is_system(&self) -> bool {
        self.role == "system"
    }

    fn new(role: &'static str, content: ContentOut<'b>) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'b> {
    Text(Txt<'b>),
    Parts(Vec<PartOut<'b>>),
    Null,
}

impl<'b> ContentOut<'b> {
    /// One text part becomes a plain string, none `null`.
    fn from_parts(mut parts: Vec<PartOut<'b>>) -> Self {
        match parts.as_slice() {
            [] => ContentOut::Null,
            [PartOut::Text { text }] => ContentOut::Text(Txt::Raw(*text)),
            _ => {
                parts.shrink_to_fit();
                ContentOut::Parts(parts)
            }
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'b> {
    Text { text: JStr<'b> },
    Refusal { refusal: JStr<'b> },
    ImageUrl { image_url: ImageOut<'b> },
    File { file: FileOut<'b> },
}

#[derive(Serialize)]
struct ImageOut<'b> {
    url: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<JStr<'b>>,
}

#[derive(Serialize)]
struct FileOut<'b> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<JStr<'b>>,
}

#[derive(Serialize)]
struct CallOut<'b> {
    id: JStr<'b>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FnOut<'b>,
}

#[derive(Serialize)]
struct FnOut<'b> {
    name: JStr<'b>,
    arguments: Txt<'b>,
}

// ---- stored items out -----------------------------------------------------------------------

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StoredOut<'b> {
    Message {
        id: Txt<'b>,
        role: &'b str,
        status: &'static str,
        content: Vec<StoredPart<'b>>,
    },
    FunctionCall {
        id: Txt<'b>,
        status: &'static str,
        arguments: Txt<'b>,
        call_id: JStr<'b>,
        name: JStr<'b>,
    },
    FunctionCallOutput {
        id: Txt<'b>,
        status: &'static str,
        call_id: JStr<'b>,
        output: &'b RawValue,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StoredPart<'b> {
    InputText {
        text: JStr<'b>,
    },
    OutputText {
        annotations: Annotations<'b>,
        logprobs: [(); 0],
        text: JStr<'b>,
    },
    Refusal {
        refusal: JStr<'b>,
    },
    InputImage {
        detail: DetailOut<'b>,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_url: Option<JStr<'b>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_id: Option<JStr<'b>>,
    },
    InputFile {
        #[serde(skip_serializing_if = "Option::is_none")]
        file_data: Option<JStr<'b>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_id: Option<JStr<'b>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_url: Option<JStr<'b>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        filename: Option<JStr<'b>>,
    },
}

/// `annotations` as given, or `[]`.
struct Annotations<'b>(Option<&'b RawValue>);

impl Serialize for Annotations<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(raw) => raw.serialize(s),
            None => [(); 0].serialize(s),
        }
    }
}

/// `detail` as given, or `"auto"`.
struct DetailOut<'b>(Option<JStr<'b>>);

impl Serialize for DetailOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => d.serialize(s),
            None => s.serialize_str("auto"),
        }
    }
}

/// Item types of hosted tools and server state that the chat pivot cannot carry: dropped from
/// the chat request (named in [`Dropped`]) and stored as given.
const NOT_CARRIED: &[(&str, &str)] = &[
    ("reasoning", "input.reasoning"),
    ("web_search_call", "input.web_search_call"),
    ("file_search_call", "input.file_search_call"),
    ("computer_call", "input.computer_call"),
    ("computer_call_output", "input.computer_call_output"),
    ("code_interpreter_call", "input.code_interpreter_call"),
    ("image_generation_call", "input.image_generation_call"),
    ("local_shell_call", "input.local_shell_call"),
    ("local_shell_call_output", "input.local_shell_call_output"),
    ("shell_call", "input.shell_call"),
    ("shell_call_output", "input.shell_call_output"),
    ("apply_patch_call", "input.apply_patch_call"),
    ("apply_patch_call_output", "input.apply_patch_call_output"),
    ("mcp_list_tools", "input.mcp_list_tools"),
    ("mcp_approval_request", "input.mcp_approval_request"),
    ("mcp_approval_response", "input.mcp_approval_response"),
    ("mcp_call", "input.mcp_call"),
    ("custom_tool_call", "input.custom_tool_call"),
    ("custom_tool_call_output", "input.custom_tool_call_output"),
    ("compaction", "input.compaction"),
    ("tool_search_call", "input.tool_search_call"),
    ("tool_search_output", "input.tool_search_output"),
];

/// Where items come from, for error messages.
#[derive(Clone, Copy)]
enum Source {
    Input,
    History,
}

fn invalid(source: Source, i: usize, what: &str) -> TranslateError {
    let name = match source {
        Source::Input => "input",
        Source::History => "previous_response_id item",
    };
    TranslateError::Invalid(format!("{name}[{i}]: {what}"))
}

/// Builds the chat messages, and (when storing) the stored form of the request's own items.
pub(super) struct Conversation<'b, 'd> {
    pub(super) messages: Vec<MsgOut<'b>>,
    /// The request's own items in stored form; `None` when nothing is stored.
    stored: Option<OutputList>,
    /// The `input` list, and its items as raw JSON once one of them is stored as given.
    input: Option<&'b RawValue>,
    input_raws: Vec<&'b RawValue>,
    dropped: &'d mut Dropped,
}

impl<'b, 'd> Conversation<'b, 'd> {
    pub(super) fn new(capacity: usize, store: bool, dropped: &'d mut Dropped) -> Self {
        Self {
            messages: Vec::with_capacity(capacity),
            stored: store.then(OutputList::default),
            input: None,
            input_raws: Vec::new(),
            dropped,
        }
    }

    /// The stored items as a JSON array (`[]` when nothing is stored).
    pub(super) fn stored_array(&self) -> Vec<u8> {
        self.stored
            .as_ref()
            .map_or_else(|| b"[]".to_vec(), OutputList::to_array)
    }

    fn store(&mut self, item: &StoredOut<'_>) -> Result<(), TranslateError> {
        if let Some(list) = self.stored.as_mut() {
            list.begin();
            serde_json::to_writer(&mut list.buf, item)
                .map_err(|e| TranslateError::Invalid(format!("cannot write a stored item: {e}")))?;
        }
        Ok(())
    }

    /// Store input item `i` as given, with an `id` put first when it had none.
    fn store_raw(&mut self, i: usize, has_id: bool, id: impl FnOnce() -> String) {
        let Some(list) = self.stored.as_mut() else {
            return;
        };
        if self.input_raws.is_empty() {
            // Parsed already once without error, so it parses again.
            self.input_raws = self
                .input
                .and_then(|l| serde_json::from_str(l.get()).ok())
                .unwrap_or_default();
        }
        let Some(raw) = self.input_raws.get(i) else {
            return;
        };
        list.begin();
        let buf = &mut list.buf;
        let text = raw.get();
        match text.strip_prefix('{') {
            Some(rest) if !has_id => {
                buf.extend_from_slice(b"{\"id\":");
                write_str(buf, &id());
                if !rest.trim_start().starts_with('}') {
                    buf.push(b',');
                }
                buf.extend_from_slice(rest.as_bytes());
            }
            _ => buf.extend_from_slice(text.as_bytes()),
        }
    }

    /// The request's `input` item list (parsed in one pass), each item stored.
    pub(super) fn input_items(
        &mut self,
        list: &'b RawValue,
        ids: &ResponseIds,
    ) -> Result<(), TranslateError> {
        let items: Vec<RItem<'b>> = parse_objects(list, "an input item", |j, what| match j {
            Some(j) => invalid(Source::Input, j, what),
            None => TranslateError::Invalid(format!("input: {what}")),
        })?;
        self.input = Some(list);
        if let Some(stored) = self.stored.as_mut() {
            // Each item gains an id and a status.
            stored.buf.reserve(list.get().len() + 80 * items.len());
        }
        for (i, item) in items.into_iter().enumerate() {
            self.item(item, Source::Input, i, ids)?;
        }
        Ok(())
    }

    /// Item `i` of the conversation continued (not stored again).
    pub(super) fn history_item(
        &mut self,
        raw: &'b RawValue,
        i: usize,
        ids: &ResponseIds,
    ) -> Result<(), TranslateError> {
        if !raw.get().starts_with('{') {
            return Err(invalid(
                Source::History,
                i,
                "an input item must be an object",
            ));
        }
        let item: RItem<'b> = serde_json::from_str(raw.get())
            .map_err(|e| invalid(Source::History, i, &e.to_string()))?;
        self.item(item, Source::History, i, ids)
    }

    /// A user message from a plain string `input`.
    pub(super) fn user_text(
        &mut self,
        text: JStr<'b>,
        ids: &ResponseIds,
    ) -> Result<(), TranslateError> {
        self.messages
            .push(MsgOut::new("user", ContentOut::Text(Txt::Raw(text))));
        self.store(&StoredOut::Message {
            id: Txt::Owned(ids.input_item("msg_", 0)),
            role: "user",
            status: "completed",
            content: vec![StoredPart::InputText { text }],
        })
    }

    /// One item of `input` (stored, with its index `i`) or of the history (not stored again).
    fn item(
        &mut self,
        item: RItem<'b>,
        source: Source,
        i: usize,
        ids: &ResponseIds,
    ) -> Result<(), TranslateError> {
        let keep = matches!(source, Source::Input);
        let kind = item.kind.as_deref().unwrap_or("message");
        let id = |prefix: &str| match item.id {
            Some(given) => Txt::Raw(given),
            None => Txt::Owned(ids.input_item(prefix, i)),
        };
        match kind {
            "message" => {
                let role = item.role.as_deref().unwrap_or("");
                let (role, stored_role): (&'static str, &'static str) = match role {
                    "user" => ("user", "user"),
                    "assistant" => ("assistant", "assistant"),
                    "system" => ("system", "system"),
                    "developer" => ("developer", "developer"),
                    other => {
                        return Err(invalid(
                            source,
                            i,
                            &format!(
                                "unknown role \"{other}\" (expected user, assistant, system or developer)"
                            ),
                        ));
                    }
                };
                let raw_content = item
                    .content
                    .ok_or_else(|| invalid(source, i, "a message needs `content`"))?;
                let (content, stored_parts) = self.content(raw_content, role, source, i, keep)?;
                self.messages.push(MsgOut::new(role, content));
                if keep {
                    self.store(&StoredOut::Message {
                        id: id("msg_"),
                        role: stored_role,
                        status: "completed",
                        content: stored_parts,
                    })?;
                }
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (item.call_id, item.name) else {
                    return Err(invalid(
                        source,
                        i,
                        "a function_call needs `call_id` and `name`",
                    ));
                };
                let arguments = || match item.arguments {
                    Some(a) => Txt::Raw(a),
                    None => Txt::Owned("{}".to_owned()),
                };
                let call = CallOut {
                    id: call_id,
                    kind: "function",
                    function: FnOut {
                        name,
                        arguments: arguments(),
                    },
                };
                match self.messages.last_mut() {
                    Some(last) if last.role == "assistant" => last.tool_calls.push(call),
                    _ => {
                        let mut m = MsgOut::new("assistant", ContentOut::Null);
                        m.tool_calls.push(call);
                        self.messages.push(m);
                    }
                }
                if keep {
                    self.store(&StoredOut::FunctionCall {
                        id: id("fc_"),
                        status: "completed",
                        arguments: arguments(),
                        call_id,
                        name,
                    })?;
                }
            }
            "function_call_output" => {
                let (Some(call_id), Some(output)) = (item.call_id, item.output) else {
                    return Err(invalid(
                        source,
                        i,
                        "a function_call_output needs `call_id` and `output`",
                    ));
                };
                let content = self.tool_output(output, source, i)?;
                let mut m = MsgOut::new("tool", content);
                m.tool_call_id = Some(call_id);
                self.messages.push(m);
                if keep {
                    self.store(&StoredOut::FunctionCallOutput {
                        id: id("fco_"),
                        status: "completed",
                        call_id,
                        output,
                    })?;
                }
            }
            "item_reference" => {
                return Err(invalid(
                    source,
                    i,
                    "item_reference is not supported: send the item itself, or continue the conversation with `previous_response_id`",
                ));
            }
            other => {
                let Some(&(_, name)) = NOT_CARRIED.iter().find(|(k, _)| *k == other) else {
                    return Err(invalid(
                        source,
                        i,
                        &format!("unknown item type \"{other}\""),
                    ));
                };
                self.dropped.push(name);
                if keep {
                    let prefix = if other == "reasoning" { "rs_" } else { "item_" };
                    self.store_raw(i, item.id.is_some(), || ids.input_item(prefix, i));
                }
            }
        }
        Ok(())
    }
}

/// A list of objects parsed in one pass; when that fails, element by element, so the error
/// names the one at fault (`at(Some(index), what)`; `at(None, what)` for the list itself).
pub(super) fn parse_objects<'b, T: Deserialize<'b>>(
    list: &'b RawValue,
    noun: &str,
    at: impl Fn(Option<usize>, &str) -> TranslateError,
) -> Result<Vec<T>, TranslateError> {
    let whole = match serde_json::from_str::<Vec<T>>(list.get()) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let raws: Vec<&'b RawValue> =
        serde_json::from_str(list.get()).map_err(|e| at(None, &e.to_string()))?;
    for (j, r) in raws.iter().enumerate() {
        if !r.get().starts_with('{') {
            return Err(at(Some(j), &format!("{noun} must be an object")));
        }
        if let Err(e) = serde_json::from_str::<T>(r.get()) {
            return Err(at(Some(j), &e.to_string()));
        }
    }
    Err(at(None, &whole.to_string()))
}

#[cfg(test)]
mod tests;
