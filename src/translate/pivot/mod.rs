//! The pivot format, OpenAI Chat Completions, as the translations to and from the other wire
//! formats (Gemini, Bedrock Converse) see it: the request parsed into borrowed parts
//! (`request.rs`), the answer written from parts (`answer.rs`) and stream chunks written
//! straight into an output buffer (`chunks.rs`).

pub(crate) mod answer;
pub(crate) mod chunks;
pub(crate) mod request;
#[cfg(test)]
pub(crate) mod testing;
