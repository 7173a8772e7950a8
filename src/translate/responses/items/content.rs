//! A message's content parts and a function call's output: chat content out, stored parts kept.

use serde_json::value::RawValue;

use super::super::super::TranslateError;
use super::super::super::json::{JStr, Txt};
use super::*;

impl<'b> Conversation<'b, '_> {
    /// A message's content -> chat content, and its stored parts (when `keep`).
    pub(super) fn content(
        &mut self,
        raw: &'b RawValue,
        role: &'static str,
        source: Source,
        i: usize,
        keep: bool,
    ) -> Result<(ContentOut<'b>, Vec<StoredPart<'b>>), TranslateError> {
        let assistant = role == "assistant";
        if let Some(text) = JStr::from_raw(raw) {
            let stored = if !keep {
                Vec::new()
            } else if assistant {
                vec![StoredPart::OutputText {
                    annotations: Annotations(None),
                    logprobs: [],
                    text,
                }]
            } else {
                vec![StoredPart::InputText { text }]
            };
            return Ok((ContentOut::Text(Txt::Raw(text)), stored));
        }
        let parts: Vec<RPart<'b>> = parse_parts(raw, source, i)?;
        let mut out = Vec::with_capacity(parts.len());
        let mut stored = Vec::with_capacity(if keep { parts.len() } else { 0 });
        for (j, p) in parts.iter().enumerate() {
            let bad = |what: &str| invalid(source, i, &format!("content[{j}]: {what}"));
            match &*p.kind {
                "input_text" | "output_text" | "text" => {
                    let text = p.text.ok_or_else(|| bad("a text part needs `text`"))?;
                    out.push(PartOut::Text { text });
                    if keep {
                        stored.push(if assistant {
                            StoredPart::OutputText {
                                annotations: Annotations(p.annotations),
                                logprobs: [],
                                text,
                            }
                        } else {
                            StoredPart::InputText { text }
                        });
                    }
                }
                "refusal" => {
                    let refusal = p
                        .refusal
                        .ok_or_else(|| bad("a refusal part needs `refusal`"))?;
                    out.push(if assistant {
                        PartOut::Refusal { refusal }
                    } else {
                        PartOut::Text { text: refusal }
                    });
                    if keep {
                        stored.push(StoredPart::Refusal { refusal });
                    }
                }
                "input_image" => {
                    match (p.image_url, assistant) {
                        (Some(url), false) => out.push(PartOut::ImageUrl {
                            image_url: ImageOut {
                                url,
                                detail: p.detail,
                            },
                        }),
                        (_, true) => self.dropped.push("input_image.assistant"),
                        (None, false) if p.file_id.is_some() => {
                            self.dropped.push("input_image.file_id")
                        }
                        (None, false) => {
                            return Err(bad("an input_image needs `image_url` or `file_id`"));
                        }
                    }
                    if keep {
                        stored.push(StoredPart::InputImage {
                            detail: DetailOut(p.detail),
                            image_url: p.image_url,
                            file_id: p.file_id,
                        });
                    }
                }
                "input_file" => {
                    let carried = p.file_data.is_some() || p.file_id.is_some();
                    match (carried, assistant) {
                        (true, false) => out.push(PartOut::File {
                            file: FileOut {
                                file_data: p.file_data,
                                file_id: p.file_id,
                                filename: p.filename,
                            },
                        }),
                        (_, true) => self.dropped.push("input_file.assistant"),
                        (false, false) if p.file_url.is_some() => {
                            self.dropped.push("input_file.file_url")
                        }
                        (false, false) => {
                            return Err(bad(
                                "an input_file needs `file_data`, `file_id` or `file_url`",
                            ));
                        }
                    }
                    if keep {
                        stored.push(StoredPart::InputFile {
                            file_data: p.file_data,
                            file_id: p.file_id,
                            file_url: p.file_url,
                            filename: p.filename,
                        });
                    }
                }
                other => return Err(bad(&format!("unknown content part type \"{other}\""))),
            }
        }
        Ok((ContentOut::from_parts(out), stored))
    }

    /// A function call's `output` (a string, or text, image and file parts) -> a tool message's
    /// content, which takes text only.
    pub(super) fn tool_output(
        &mut self,
        raw: &'b RawValue,
        source: Source,
        i: usize,
    ) -> Result<ContentOut<'b>, TranslateError> {
        if let Some(text) = JStr::from_raw(raw) {
            return Ok(ContentOut::Text(Txt::Raw(text)));
        }
        let parts: Vec<RPart<'b>> = parse_parts(raw, source, i)?;
        let mut out = Vec::with_capacity(parts.len());
        for (j, p) in parts.iter().enumerate() {
            match (&*p.kind, p.text) {
                ("input_text" | "output_text" | "text", Some(text)) => {
                    out.push(PartOut::Text { text })
                }
                ("input_image", _) => self.dropped.push("function_call_output.input_image"),
                ("input_file", _) => self.dropped.push("function_call_output.input_file"),
                (other, _) => {
                    return Err(invalid(
                        source,
                        i,
                        &format!("output[{j}]: unexpected part \"{other}\""),
                    ));
                }
            }
        }
        // A tool message needs content: an output left without text is sent as "".
        Ok(match out.len() {
            0 => ContentOut::Text(Txt::Owned(String::new())),
            _ => ContentOut::from_parts(out),
        })
    }
}

fn parse_parts<'b>(
    raw: &'b RawValue,
    source: Source,
    i: usize,
) -> Result<Vec<RPart<'b>>, TranslateError> {
    if !raw.get().starts_with('[') {
        return Err(invalid(
            source,
            i,
            "content must be a string or an array of content parts",
        ));
    }
    parse_objects(raw, "a content part", |j, what| match j {
        Some(j) => invalid(source, i, &format!("content[{j}]: {what}")),
        None => invalid(source, i, what),
    })
}
