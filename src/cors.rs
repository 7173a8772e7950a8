//! CORS for browser clients (`server.cors_allowed_origins`): a preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) from an allowed origin is answered at once,
//! before authentication (browsers send no key with it); every other answer to an allowed origin
//! carries `access-control-allow-origin` and the gateway's own headers in
//! `access-control-expose-headers`. A request without `Origin` (every non-browser client) costs
//! one header look-up; with the list empty nothing is added at all.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

/// The answer headers a browser script may read.
const EXPOSED: &str = "x-request-id, request-id, x-cache, x-cache-layer, x-gateway-provider, \
x-gateway-deployment-model, x-gateway-attempts, x-gateway-cost-usd, x-gateway-dropped, \
x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after";
/// Request headers allowed when the preflight does not list its own.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key, api-key, \
anthropic-version, anthropic-beta, x-request-id, cache-control, idempotency-key";
const METHODS: &str = "GET, POST, DELETE, PATCH, OPTIONS";
/// How long a browser may keep a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// The `access-control-allow-origin` value for this request's `Origin`, if it is allowed.
pub fn allowed(origins: &[String], headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    origins
        .iter()
        .any(|o| o.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// Whether the request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from an allowed origin: 204 with the methods and headers allowed.
pub fn preflight(allow: HeaderValue, headers: &HeaderMap) -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS));
    let h = r.headers_mut();
    vary(h, &allow);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(METHODS),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    r
}

/// Mark an answer readable by the allowed origin.
pub fn decorate(resp: &mut Response, allow: HeaderValue) {
    let h = resp.headers_mut();
    vary(h, &allow);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

/// A request from an allowed origin: a preflight answered at once, anything else served by
/// `serve` and its answer decorated.
pub fn serve<F, E>(
    allow: HeaderValue,
    req: axum::extract::Request,
    serve: impl FnOnce(axum::extract::Request) -> F,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>
where
    F: Future<Output = Result<Response, E>> + Send + 'static,
    E: 'static,
{
    if is_preflight(req.method(), req.headers()) {
        let r = preflight(allow, req.headers());
        return Box::pin(async move { Ok(r) });
    }
    let fut = serve(req);
    Box::pin(async move {
        let mut r = fut.await?;
        decorate(&mut r, allow);
        Ok(r)
    })
}

/// An answer that depends on the origin says so to caches.
fn vary(h: &mut HeaderMap, allow: &HeaderValue) {
    if allow.as_bytes() != b"*" {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        h
    }

    #[test]
    fn origins_are_matched_exactly_or_by_star() {
        let list = vec!["https://app.example.com".to_owned()];
        assert_eq!(
            allowed(&list, &with_origin("https://app.example.com")).unwrap(),
            "https://app.example.com"
        );
        assert!(allowed(&list, &with_origin("https://evil.example.com")).is_none());
        assert!(allowed(&list, &HeaderMap::new()).is_none());
        assert!(allowed(&[], &with_origin("https://app.example.com")).is_none());
        assert_eq!(
            allowed(&["*".to_owned()], &with_origin("http://localhost:3000")).unwrap(),
            "*"
        );
    }
}
