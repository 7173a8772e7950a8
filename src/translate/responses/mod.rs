//! OpenAI Responses API <-> the pivot (OpenAI Chat Completions), as pure functions over bytes.
//!
//! - [`responses_request_to_chat`]: a Responses request (plus the items of the conversation it
//!   continues) -> a chat request, the [`ResponsesHead`] its answer must echo, and the request's
//!   input items in stored form.
//! - [`chat_response_to_responses`]: a chat completion -> the Response object.
//! - [`ChatToResponsesStream`]: chat chunks -> Responses' typed SSE events, in OpenAI's order.
//!
//! Stored items are JSON objects exactly as `GET /v1/responses/{id}/input_items` shows them, each
//! with an `id`; an earlier response's input items followed by its output items are the
//! `history` that continues its conversation on any provider. What the pivot cannot carry is
//! named in [`Dropped`](super::Dropped); `docs/responses.md` has the mapping table, the event
//! order and the ids.

mod answer;
mod items;
mod object;
mod request;
mod stream;

pub use answer::chat_response_to_responses;
pub use request::{ResponsesRequest, responses_request_to_chat};
pub use stream::ChatToResponsesStream;

/// The id and creation time of one Response, fixed before the upstream is called (the stream's
/// `response.created` carries them). Every item id of the response is derived from the response
/// id, so they are unique with it and need no randomness of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseIds {
    id: String,
    created_at: u64,
}

impl Default for ResponseIds {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseIds {
    /// A fresh `resp_…` id created now.
    pub fn new() -> Self {
        Self::with(crate::ids::random_id("resp_"), crate::clock::unix_secs())
    }

    /// Given ids (tests, replays).
    pub fn with(id: String, created_at: u64) -> Self {
        Self { id, created_at }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    fn base(&self) -> &str {
        self.id.strip_prefix("resp_").unwrap_or(&self.id)
    }

    /// The id of output item `n`: `msg_`/`fc_`/`rs_` + the response id's suffix + `_n`.
    fn output_item(&self, prefix: &str, n: usize) -> String {
        self.item_id(prefix, "_", n)
    }

    /// The id of input item `n` that came without one: the same with `_in` before `n`.
    fn input_item(&self, prefix: &str, n: usize) -> String {
        self.item_id(prefix, "_in", n)
    }

    fn item_id(&self, prefix: &str, sep: &str, n: usize) -> String {
        let base = self.base();
        let mut s = String::with_capacity(prefix.len() + base.len() + sep.len() + 4);
        s.push_str(prefix);
        s.push_str(base);
        s.push_str(sep);
        s.push_str(itoa::Buffer::new().format(n));
        s
    }
}

/// What a Response object must echo of its request, and what the gateway itself acts on.
#[derive(Debug, Clone)]
pub struct ResponsesHead {
    /// The model name the client asked for (reported as the response's `model`).
    pub model: String,
    pub stream: bool,
    /// `store` (default true): whether the gateway keeps the response and its input items.
    pub store: bool,
    /// `background` (default false).
    pub background: bool,
    /// The conversation this request continues, if any (the caller expands it into `history`).
    pub previous_response_id: Option<String>,
    /// The echoed request fields with OpenAI's defaults, as the members of a JSON object
    /// (`"background":false,…,"user":null`), spliced into every Response object written.
    echo: String,
}

/// A finished Response: what the client was sent last, and what the gateway stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesAnswer {
    /// The Response object (as `GET /v1/responses/{id}` returns it).
    pub body: Vec<u8>,
    /// Its `output` items in stored form, as a JSON array.
    pub output_items: Vec<u8>,
    /// `completed`, `incomplete` or `failed`.
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_derive_from_the_response_id() {
        let ids = ResponseIds::with("resp_abc".into(), 7);
        assert_eq!(ids.output_item("msg_", 0), "msg_abc_0");
        assert_eq!(ids.output_item("fc_", 12), "fc_abc_12");
        assert_eq!(ids.input_item("msg_", 3), "msg_abc_in3");
        let fresh = ResponseIds::new();
        assert!(fresh.id().starts_with("resp_"));
        assert_ne!(fresh.id(), ResponseIds::new().id());
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod sdk_tests;
#[cfg(test)]
mod snapshot_tests;
