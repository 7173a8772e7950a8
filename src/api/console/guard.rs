//! What a request with a console session cookie may do: read the admin API, and change things
//! only from the console's own origin with the sign-in's CSRF token.

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The session cookie's name.
pub const COOKIE: &str = "aigw_session";
/// The header the console sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token of the request's `Cookie` header(s), if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether a request comes from a page of this gateway's own origin: its `Origin` names the
/// host the request was sent to (`Host`, or `X-Forwarded-Host` behind a proxy); without an
/// `Origin`, the browser's `Sec-Fetch-Site: same-origin`. A request that says neither is not
/// taken for same-origin.
pub fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return fetch_site == Some("same-origin");
    };
    let Some(authority) = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    }) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok());
    [host, forwarded]
        .into_iter()
        .flatten()
        .any(|h| h.trim().eq_ignore_ascii_case(authority))
}

/// Whether the method changes something (and so needs the origin check and the CSRF token).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Constant-time equality of two tokens.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request came over TLS (as a proxy in front says): the cookie is then `Secure`.
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
        || headers
            .get(header::ORIGIN)
            .is_some_and(|o| o.as_bytes().starts_with(b"https://"))
}

/// An error answer in the OpenAI shape, for the refusals [`crate::error::Error`] has no kind of.
pub fn refusal(status: StatusCode, ty: &str, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "error": {"message": message, "type": ty, "param": null, "code": code}
        })),
    )
        .into_response()
}

/// 403: a change without the console's origin or CSRF token.
pub fn cross_site() -> Response {
    refusal(
        StatusCode::FORBIDDEN,
        "permission_error",
        "csrf_check_failed",
        "refused: a change made with a console session must come from the console's own origin \
         with its x-csrf-token header (cross-site requests are refused); scripts use \
         Authorization: Bearer MASTER_KEY instead",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn cookie_is_found_among_others() {
        let m = h(&[("cookie", "a=1; aigw_session=tok; b=2")]);
        assert_eq!(session_cookie(&m), Some("tok"));
        assert_eq!(session_cookie(&h(&[("cookie", "aigw_sessionx=1")])), None);
        assert_eq!(session_cookie(&h(&[("cookie", "aigw_session=")])), None);
    }

    #[test]
    fn origin_must_be_the_host() {
        let uri: Uri = "/admin/keys".parse().unwrap();
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(
            &h(&[host, ("origin", "http://127.0.0.1:8080")]),
            &uri
        ));
        assert!(!same_origin(
            &h(&[host, ("origin", "http://evil.example")]),
            &uri
        ));
        assert!(!same_origin(&h(&[host, ("origin", "null")]), &uri));
        assert!(!same_origin(&h(&[host]), &uri));
        assert!(same_origin(
            &h(&[host, ("sec-fetch-site", "same-origin")]),
            &uri
        ));
        assert!(!same_origin(
            &h(&[
                host,
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site")
            ]),
            &uri
        ));
        assert!(same_origin(
            &h(&[
                host,
                ("x-forwarded-host", "gw.example.com"),
                ("origin", "https://gw.example.com")
            ]),
            &uri
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
    }
}
