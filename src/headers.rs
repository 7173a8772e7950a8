//! Names of the headers the gateway reads or writes on every request, made once.
//!
//! `HeaderMap::insert("x-cache", …)` parses and validates the name on every call, and
//! `get("x-request-id")` too, on every request (its cost: docs/benchmarks.md, "What changed
//! what"). These constants are built at compile time.

use axum::http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_LAYER: HeaderName = HeaderName::from_static("x-cache-layer");
pub const X_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-cache-similarity");
pub const X_GATEWAY_GUARDRAILS: HeaderName = HeaderName::from_static("x-gateway-guardrails");
pub const X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
pub const X_GATEWAY_DEPLOYMENT_MODEL: HeaderName =
    HeaderName::from_static("x-gateway-deployment-model");
pub const X_GATEWAY_HEDGED: HeaderName = HeaderName::from_static("x-gateway-hedged");
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");
pub const X_GATEWAY_COST_USD: HeaderName = HeaderName::from_static("x-gateway-cost-usd");
/// Request fields a translation or the serving provider left out (comma-separated).
pub const X_GATEWAY_DROPPED: HeaderName = HeaderName::from_static("x-gateway-dropped");
pub const X_GATEWAY_CACHE_TTL: HeaderName = HeaderName::from_static("x-gateway-cache-ttl");
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
pub const X_RATELIMIT_LIMIT_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-requests");
pub const X_RATELIMIT_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub const X_RATELIMIT_RESET_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-requests");
pub const X_RATELIMIT_LIMIT_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-tokens");
pub const X_RATELIMIT_REMAINING_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-tokens");
pub const X_RATELIMIT_RESET_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-tokens");

/// A number as a header value: one allocation (`HeaderValue::from(u64)` makes two).
pub fn number(n: u64) -> http::HeaderValue {
    http::HeaderValue::from_bytes(itoa::Buffer::new().format(n).as_bytes())
        .unwrap_or_else(|_| http::HeaderValue::from_static("0"))
}
/// Anthropic's request id answer header (on `/v1/messages`, beside `x-request-id`).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// The Anthropic API version a client sends (its model list gets Anthropic's shape).
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
