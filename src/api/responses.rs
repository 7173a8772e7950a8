//! OpenAI's Responses API: `POST /v1/responses` for every configured model, and the stored
//! responses (`GET`, `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`).
//!
//! A Responses request is translated to a chat request (`translate::responses`) and run as one
//! through `pipeline::chat` (keys, permissions, limits, cache, routing, fallbacks, metrics and
//! spend as for chat); the chat answer, whole or streamed, becomes the Response. With `store`
//! (the default) the finished Response is kept, bound to the calling key's id; a later
//! `previous_response_id` is expanded here into the stored conversation, so the next turn may go
//! to any provider and any replica.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{CallIn, CallOut};
use crate::api::context::SharedState;
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;
use crate::pipeline::{self, ChatCall};
use crate::providers::CallCtx;
use crate::responses::{Record, record_text};
use crate::sse::SseParser;
use crate::translate::Dropped;
use crate::translate::{
    ChatToResponsesStream, ResponseIds, ResponsesAnswer, ResponsesHead, chat_response_to_responses,
    responses_request_to_chat,
};
use crate::wire::{ChatHead, Format};

/// What is read of a Responses request before it is translated.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    previous_response_id: Option<std::borrow::Cow<'a, str>>,
    max_output_tokens: Option<u64>,
}

fn not_found(id: &str) -> Error {
    Error::NoSuch(format!("Response with id '{id}' not found."))
}

/// A stored response of this caller, as its record's text (another key's is not found).
async fn load(
    state: &SharedState,
    caller: &Caller,
    id: &str,
) -> Result<Option<std::sync::Arc<str>>, Error> {
    let Some(text) = state.responses.get(id).await? else {
        return Ok(None);
    };
    let owner = Record::parse(&text)?.owner;
    Ok(caller.owns(&owner).then_some(text.clone()))
}

/// `POST /v1/responses` once its body is read: the steps of `api::call_steps` for a Responses
/// request.
pub(super) async fn call(
    state: &SharedState,
    rt: &crate::runtime::Runtime,
    call: CallIn<'_>,
    ctx: &CallCtx,
    body: Bytes,
    out: &mut CallOut,
) -> Result<Response, Error> {
    let caller = call.caller;
    let peek: Peek<'_> = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("the request body is not valid JSON: {e}")))?;
    let model = peek
        .model
        .ok_or_else(|| Error::invalid("you must provide a model parameter"))?;
    if !rt.has_model(model.as_ref()) {
        return Err(Error::ModelNotFound(model.into_owned()));
    }
    // Labelled as the chat path labels (a wildcard's model by the wildcard's name).
    out.label = rt.model_label(&model);
    caller.check_model(&model)?;
    crate::telemetry::record_request(&model, peek.max_output_tokens, &body);

    // The conversation this request continues, whatever provider served it.
    let history_text = match peek.previous_response_id.as_deref() {
        Some(prev) => {
            let text = load(state, caller, prev).await?.ok_or_else(|| {
                Error::NoSuch(format!("Previous response with id '{prev}' not found."))
            })?;
            Some(Record::parse(&text)?.conversation())
        }
        None => None,
    };
    let history: Vec<&RawValue> = match &history_text {
        Some(t) => serde_json::from_str(t)
            .map_err(|e| Error::Internal(format!("unreadable stored conversation: {e}")))?,
        None => Vec::new(),
    };
    let ids = ResponseIds::new();
    let mut dropped = Dropped::default();
    let tr = responses_request_to_chat(&body, &history, &model, &ids, &mut dropped)
        .map_err(|e| Error::invalid(e.to_string()))?;
    drop(history);
    // The chat request starts `{"model":` + the name as a JSON string.
    let quoted = crate::wire::json_string(&model);
    let head = ChatHead {
        model: model.into_owned(),
        stream: tr.head.stream,
        include_usage: true,
        max_tokens: peek.max_output_tokens,
        model_span: 9..9 + quoted.len(),
        prompt_tokens: None,
    };
    let chat = Bytes::from(tr.chat);
    debug_assert_eq!(chat.get(9..9 + quoted.len()), Some(quoted.as_bytes()));
    let resp = pipeline::chat(
        rt,
        &state.services,
        ChatCall {
            caller,
            headers: call.headers,
            client: Format::OpenAi,
            head: &head,
            body: &chat,
            deadline: call.deadline,
            ctx,
            started: call.started,
        },
        &mut out.rate,
    )
    .await?;
    let saver = tr.head.store.then(|| Saver {
        state: state.clone(),
        owner: caller.id().to_owned(),
        history: history_text.unwrap_or_else(|| "[]".to_owned()),
        input: tr.input_items,
        ttl: rt.config.responses.store_ttl.get(),
    });
    answer(resp, tr.head, ids, saver, &dropped).await
}

/// What storing a finished Response needs.
struct Saver {
    state: SharedState,
    owner: String,
    history: String,
    input: Vec<u8>,
    ttl: std::time::Duration,
}

impl Saver {
    /// Store the finished Response (one write, on a task of its own).
    fn save(self, ids: &ResponseIds, answer: &ResponsesAnswer) {
        let expires_at = crate::clock::unix_ms()
            .saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let record = record_text(
            &self.owner,
            expires_at,
            &answer.body,
            &self.history,
            &self.input,
            &answer.output_items,
        );
        self.state
            .responses
            .put(ids.id().to_owned(), record, self.ttl);
    }
}

/// The chat answer (whole or streamed) as the Response; errors pass as they are (OpenAI's shape).
async fn answer(
    resp: Response,
    head: ResponsesHead,
    ids: ResponseIds,
    saver: Option<Saver>,
    dropped: &Dropped,
) -> Result<Response, Error> {
    if resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // What the Responses -> chat translation left out, then what the chat leg's upstream
    // translation or provider left out (already in the header).
    if !dropped.is_empty() {
        let mut names = dropped.join(",");
        if let Some(theirs) = parts
            .headers
            .get(crate::headers::X_GATEWAY_DROPPED)
            .and_then(|v| v.to_str().ok())
        {
            names.push(',');
            names.push_str(theirs);
        }
        if let Ok(v) = HeaderValue::from_str(&names) {
            parts.headers.insert(crate::headers::X_GATEWAY_DROPPED, v);
        }
    }
    let streamed = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streamed {
        let conv = ChatToResponsesStream::new(head, ids);
        return Ok(Response::from_parts(parts, stream_body(body, conv, saver)));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| Error::Internal(format!("reading the chat answer: {e}")))?;
    let ans = chat_response_to_responses(&bytes, &head, &ids)
        .map_err(|e| Error::Internal(format!("translating the chat answer: {e}")))?;
    if let Some(s) = saver {
        s.save(&ids, &ans);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Body::from(ans.body)))
}

struct StreamState {
    inner: axum::body::BodyDataStream,
    parser: SseParser,
    conv: ChatToResponsesStream,
    saver: Option<Saver>,
    done: bool,
}

impl StreamState {
    fn store_if_done(&mut self) {
        if let Some(ans) = self.conv.take_answer()
            && let Some(s) = self.saver.take()
        {
            s.save(self.conv.ids(), &ans);
        }
    }
}

/// The chat stream's events as Responses' typed events; the final Response is stored when it
/// is known (before its last event is sent).
fn stream_body(body: Body, conv: ChatToResponsesStream, saver: Option<Saver>) -> Body {
    let state = StreamState {
        inner: body.into_data_stream(),
        parser: SseParser::new(),
        conv,
        saver,
        done: false,
    };
    let s = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    out.reserve(chunk.len() * 2 + 64);
                    st.conv.start(&mut out);
                    let StreamState { parser, conv, .. } = &mut st;
                    parser.push(&chunk, |ev| conv.on_data(ev.data, &mut out));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(std::io::Error::other(e)), st));
                }
                None => {
                    st.done = true;
                    st.conv.start(&mut out);
                    st.conv.finish(&mut out);
                }
            }
            st.store_if_done();
            if !out.is_empty() {
                return Some((Ok::<_, std::io::Error>(Bytes::from(out)), st));
            }
        }
    });
    Body::from_stream(s)
}

/// `GET /v1/responses/{id}`.
pub async fn get(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match load(&state, &caller, &id).await {
        Ok(Some(text)) => match Record::parse(&text) {
            Ok(r) => json(r.response.get().as_bytes()),
            Err(e) => e.into_response_for(Format::OpenAi),
        },
        Ok(None) => not_found(&id).into_response_for(Format::OpenAi),
        Err(e) => e.into_response_for(Format::OpenAi),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        load(&state, &caller, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        state.responses.delete(&id).await
    }
    .await;
    match result {
        Ok(()) => axum::Json(serde_json::json!({"id": id, "object": "response", "deleted": true}))
            .into_response(),
        Err(e) => e.into_response_for(Format::OpenAi),
    }
}

/// The query of `GET /v1/responses/{id}/input_items` (OpenAI's cursor pagination).
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the request's own input items, newest first unless
/// `order=asc`, `limit` (1-100, default 20) at a time after (or before) the item named.
pub async fn input_items(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        let limit = match q.limit.as_deref() {
            None => 20,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| Error::invalid("limit: must be an integer from 1 to 100"))?,
        };
        let desc = match q.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(Error::invalid("order: must be \"asc\" or \"desc\"")),
        };
        let text = load(&state, &caller, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let record = Record::parse(&text)?;
        let items: Vec<&RawValue> = serde_json::from_str(record.input.get())
            .map_err(|e| Error::Internal(format!("unreadable stored items: {e}")))?;
        Ok(page(
            &items,
            desc,
            limit,
            q.after.as_deref(),
            q.before.as_deref(),
        ))
    }
    .await;
    match result {
        Ok(body) => json(&body),
        Err(e) => e.into_response_for(Format::OpenAi),
    }
}

/// The id of a stored item.
fn item_id(item: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<String>,
    }
    serde_json::from_str::<Id>(item.get())
        .ok()
        .and_then(|i| i.id)
}

/// One page of a list, as OpenAI's list object.
fn page(
    items: &[&RawValue],
    desc: bool,
    limit: usize,
    after: Option<&str>,
    before: Option<&str>,
) -> Vec<u8> {
    let mut ordered: Vec<(&RawValue, Option<String>)> =
        items.iter().map(|i| (*i, item_id(i))).collect();
    if desc {
        ordered.reverse();
    }
    let position = |id: &str| ordered.iter().position(|(_, i)| i.as_deref() == Some(id));
    let start = after.and_then(position).map_or(0, |p| p + 1);
    let end = before
        .and_then(position)
        .unwrap_or(ordered.len())
        .max(start);
    let window = &ordered[start..end];
    let (shown, has_more) = if before.is_some() && after.is_none() {
        // Before a cursor: the `limit` items just before it.
        let from = window.len().saturating_sub(limit);
        (&window[from..], from > 0)
    } else {
        let to = window.len().min(limit);
        (&window[..to], to < window.len())
    };
    let id_of = |e: Option<&(&RawValue, Option<String>)>| {
        e.and_then(|(_, i)| i.clone())
            .map_or(serde_json::Value::Null, serde_json::Value::String)
    };
    let mut out =
        Vec::with_capacity(shown.iter().map(|(r, _)| r.get().len() + 1).sum::<usize>() + 128);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (n, (raw, _)) in shown.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(raw.get().as_bytes());
    }
    out.extend_from_slice(b"],\"first_id\":");
    out.extend_from_slice(id_of(shown.first()).to_string().as_bytes());
    out.extend_from_slice(b",\"last_id\":");
    out.extend_from_slice(id_of(shown.last()).to_string().as_bytes());
    out.extend_from_slice(b",\"has_more\":");
    out.extend_from_slice(if has_more { b"true" } else { b"false" });
    out.push(b'}');
    out
}

fn json(body: &[u8]) -> Response {
    let mut r = Response::new(Body::from(Bytes::copy_from_slice(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Box<RawValue>> {
        (0..n)
            .map(|i| RawValue::from_string(format!("{{\"id\":\"i{i}\"}}")).unwrap())
            .collect()
    }

    fn ids(body: &[u8]) -> (Vec<String>, bool) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let data = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        (data, v["has_more"].as_bool().unwrap())
    }

    #[test]
    fn pages_follow_openai_cursors() {
        let owned = items(5);
        let all: Vec<&RawValue> = owned.iter().map(AsRef::as_ref).collect();
        assert_eq!(
            ids(&page(&all, true, 2, None, None)),
            (vec!["i4".into(), "i3".into()], true)
        );
        assert_eq!(
            ids(&page(&all, true, 2, Some("i3"), None)),
            (vec!["i2".into(), "i1".into()], true)
        );
        assert_eq!(
            ids(&page(&all, true, 2, Some("i1"), None)),
            (vec!["i0".into()], false)
        );
        assert_eq!(ids(&page(&all, false, 10, None, None)).0.len(), 5);
        assert_eq!(
            ids(&page(&all, false, 2, None, Some("i3"))),
            (vec!["i1".into(), "i2".into()], true)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&page(&[], true, 20, None, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false})
        );
    }
}
