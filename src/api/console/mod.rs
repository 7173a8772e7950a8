//! The web console at `/ui/` (the `console` feature, on by default): a single page served from
//! the binary (HTML, CSS and JavaScript embedded at compile time; no CDN, no build step), which
//! calls the admin API with a session cookie instead of the master key.
//!
//! - `POST /ui/session` `{"master_key"}`: sign in. 200 `{"csrf_token"}` with `Set-Cookie:
//!   aigw_session=…; HttpOnly; SameSite=Strict; Path=/` (`Secure` behind TLS). A wrong key: 401;
//!   repeated wrong keys from one address: 429 with `retry-after` ([`throttle`]).
//! - `GET /ui/session`: 200 `{"signed_in": true, "csrf_token"}` while signed in, else 200
//!   `{"signed_in": false}` (not a 401: the page asks on every load, and a browser reports
//!   every 4xx answer as an error in its console).
//! - `DELETE /ui/session`: sign out (origin and CSRF token checked like every change).
//! - `/admin/*` accepts the session cookie in place of the master key (`app::require_master`,
//!   through [`admin_access`]); a change (POST, PATCH, DELETE) must come from the console's own
//!   origin and carry the sign-in's CSRF token in `x-csrf-token` ([`guard`]).
//!
//! Sessions: [`session`]; they end after `auth.console_session_idle` (12h) without use, 7 days
//! after sign-in, on sign-out, and when the master key changes.

pub mod guard;
pub mod session;
pub mod throttle;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::api::context::SharedState;
use crate::api::error::Render as _;
use crate::error::Error;
use crate::state::Redis;
use crate::wire::Format;

/// The console's state in the app: sessions and the sign-in throttle.
pub struct Console {
    pub sessions: session::Sessions,
    pub throttle: throttle::Throttle,
}

impl Console {
    pub fn new(redis: Option<Arc<Redis>>) -> Self {
        Self {
            sessions: session::Sessions::new(redis),
            throttle: throttle::Throttle::default(),
        }
    }
}

/// The routes under `/ui`.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/ui",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ui/")]) }),
        )
        .route(
            "/ui/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset(FAVICON, "image/svg+xml") }),
        )
        .route("/ui/session", get(current).post(sign_in).delete(sign_out))
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Only the console's own files and calls; no inline script; never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// What the current configuration says of sessions: the master key's fingerprint (`None`: no
/// master key, the console is off) and the idle time.
fn settings(state: &SharedState) -> (Option<[u8; 32]>, Duration) {
    let rt = state.runtime.load();
    let idle = rt
        .config
        .auth
        .as_ref()
        .and_then(|a| a.console_session_idle)
        .map_or(session::DEFAULT_IDLE, |d| d.get());
    (rt.auth.master_fingerprint(), idle)
}

fn no_master_key() -> Response {
    guard::refusal(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "console_off",
        "the console is off: this gateway has no master key (set auth.master_key, or \
         GATEWAY_MASTER_KEY when running without a configuration file)",
    )
}

fn session_expired() -> Response {
    Error::Unauthenticated("not signed in, or the console session has expired; sign in again")
        .into_response_for(Format::OpenAi)
}

/// The `Set-Cookie` value of a session (`token`), or of its removal (`None`).
fn cookie(token: Option<&str>, secure: bool) -> HeaderValue {
    let mut c = match token {
        Some(t) => format!("{}={t}; HttpOnly; SameSite=Strict; Path=/", guard::COOKIE),
        None => format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
            guard::COOKIE
        ),
    };
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c)
        .unwrap_or_else(|_| HeaderValue::from_static("aigw_session=; Max-Age=0"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    master_key: String,
}

/// `POST /ui/session`.
async fn sign_in(
    State(state): State<SharedState>,
    peer: Option<axum::Extension<crate::server::conn::Peer>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (Some(master), idle) = settings(&state) else {
        return no_master_key();
    };
    // A foreign page may not sign a browser in either (login CSRF); scripts send no Origin.
    if headers.contains_key(header::ORIGIN) && !guard::same_origin(&headers, &uri) {
        return guard::cross_site();
    }
    let addr = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip());
    let now = std::time::Instant::now();
    if let Err(wait) = state.console.throttle.check(addr, now) {
        return too_many(wait);
    }
    let key = match serde_json::from_slice::<SignIn>(&body) {
        Ok(b) => b.master_key,
        Err(e) => {
            return Error::invalid(format!(
                "the sign-in body must be {{\"master_key\": \"…\"}}: {e}"
            ))
            .into_response_for(Format::OpenAi);
        }
    };
    if !state.runtime.load().auth.is_master_key(&key) {
        let wait = state.console.throttle.failed(addr, now);
        tracing::warn!(client = %addr, "console sign-in with a wrong master key");
        let message = if wait.is_zero() {
            "the master key is not correct; repeated wrong keys make this address wait".to_owned()
        } else {
            format!(
                "the master key is not correct; after {} wrong keys this address must wait {} s \
                 before the next sign-in",
                throttle::FREE_FAILURES,
                wait.as_secs()
            )
        };
        return guard::refusal(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            &message,
        );
    }
    state.console.throttle.succeeded(addr);
    let (token, session) = state.console.sessions.create(&master, idle).await;
    tracing::info!(client = %addr, "console signed in");
    let mut resp = (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"csrf_token": session.csrf_token})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(Some(&token), guard::over_tls(&headers)),
    );
    resp
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = guard::refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "too_many_sign_in_attempts",
        &format!("too many wrong master keys from this address; try again in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `GET /ui/session`: whether this browser is signed in, with its session's CSRF token.
async fn current(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let (Some(master), idle) = settings(&state) else {
        return no_master_key();
    };
    let session = match guard::session_cookie(&headers) {
        Some(token) => state.console.sessions.get(token, &master, idle).await,
        None => None,
    };
    let body = match session {
        Some(s) => json!({"signed_in": true, "csrf_token": s.csrf_token,
                          "idle_timeout_s": idle.as_secs()}),
        None => json!({"signed_in": false}),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// `DELETE /ui/session`: sign out.
async fn sign_out(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (Some(master), idle) = settings(&state) else {
        return no_master_key();
    };
    let Some(token) = guard::session_cookie(&headers) else {
        return session_expired();
    };
    if let Err(r) = check(&state, &method, &uri, &headers, token, &master, idle).await {
        return r;
    }
    state.console.sessions.remove(token).await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(None, guard::over_tls(&headers)));
    resp
}

/// A session's right to this request: live, and for a change same-origin with its CSRF token.
async fn check(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: &str,
    master: &[u8; 32],
    idle: Duration,
) -> Result<(), Response> {
    let Some(session) = state.console.sessions.get(token, master, idle).await else {
        return Err(session_expired());
    };
    if guard::changes_state(method) {
        let csrf = headers
            .get(guard::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !guard::same_origin(headers, uri) || !guard::tokens_equal(csrf, &session.csrf_token) {
            return Err(guard::cross_site());
        }
    }
    Ok(())
}

/// For `/admin/*` without the master key: `None` when the request has no session cookie (the
/// usual 401 follows); else whether the session lets it through, or the answer refusing it.
pub async fn admin_access(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Result<(), Response>> {
    let token = guard::session_cookie(headers)?;
    let (Some(master), idle) = settings(state) else {
        return Some(Err(no_master_key()));
    };
    Some(check(state, method, uri, headers, token, &master, idle).await)
}
