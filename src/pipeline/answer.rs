//! The answer's shape: JSON or SSE responses, and the `x-cache`, `x-gateway-*` headers saying what
//! served it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::guard;
use crate::cache::{self, Policy};
use crate::headers::{self as hn, OwnHeaders};
use crate::providers::CallCtx;
use crate::record::ServedBy;
use crate::runtime::Deployment;
use crate::translate::Dropped;

/// `x-gateway-guardrails`, when guardrails applied.
pub(super) fn guardrails_header(resp: &mut Response, guard: Option<&guard::Guard>) {
    if let Some(v) = guard.and_then(guard::Guard::header_value) {
        resp.headers_mut().insert(hn::X_GATEWAY_GUARDRAILS, v);
    }
}

/// The headers of an answer a deployment served: `x-cache` (`MISS`, or `BYPASS` without a cache
/// plan), what served it (`x-gateway-*`), `x-gateway-hedged` when a hedge won, and the fields
/// left out on the way.
pub(super) fn upstream_headers(
    resp: &mut Response,
    ctx: &CallCtx,
    plan: Option<&(cache::Key, Policy)>,
    d: &Deployment,
    attempts: u32,
    hedged: bool,
    dropped: &Dropped,
) {
    let cache = if plan.is_some() { "MISS" } else { "BYPASS" };
    served_headers(
        resp,
        ctx,
        ServedBy {
            cache,
            provider: d.headers.provider.clone(),
            deployment_model: d.headers.model.clone(),
            attempts: attempts_header(attempts),
        },
    );
    if hedged {
        resp.headers_mut()
            .insert(hn::X_GATEWAY_HEDGED, HeaderValue::from_static("true"));
    }
    dropped.set_header(resp.headers_mut());
}

/// Put what served the answer in its headers, and beside it for the request's metrics and
/// access log (`record::RequestRecord`, when the request has one).
pub(super) fn served_headers(resp: &mut Response, ctx: &CallCtx, served: ServedBy) {
    let own = OwnHeaders::on(resp);
    own.set(hn::X_CACHE, HeaderValue::from_static(served.cache));
    if let Some(n) = &served.provider {
        own.set(hn::X_GATEWAY_PROVIDER, n.header.clone());
    }
    if let Some(n) = &served.deployment_model {
        own.set(hn::X_GATEWAY_DEPLOYMENT_MODEL, n.header.clone());
    }
    own.set(hn::X_GATEWAY_ATTEMPTS, served.attempts.clone());
    if let Some(u) = &ctx.usage {
        u.set_served(served);
    }
}

pub(super) fn cost_header(resp: &mut Response, cost: Option<f64>) {
    if let Some(v) = cost.and_then(hn::usd) {
        OwnHeaders::on(resp).set(hn::X_GATEWAY_COST_USD, v);
    }
}

/// Room for every header an answer gets (content type, request id, cache, provider, deployment,
/// attempts, cost, six `x-ratelimit-*`): the map is made once instead of grown twice.
pub(super) const ANSWER_HEADERS: usize = 16;

pub(super) fn json_response(body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    *r.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(hn::X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    r
}

/// `x-gateway-attempts` (the small counts without formatting a number each time).
pub(super) fn attempts_header(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(attempts as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(attempts),
    }
}
