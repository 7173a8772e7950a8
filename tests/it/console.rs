//! The web console's server side (`/ui/`): its embedded page, the cookie session signed in with
//! the master key, the CSRF / Origin protection of changes made with it, sign-out, expiry,
//! sessions shared through Redis, and wrong master keys refused and slowed down.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::redis::{RedisServer, wait_redis_ok};
use crate::support::*;

fn console_config() -> Value {
    let mut cfg = basic_config(None);
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    cfg
}

/// A client that neither follows redirects nor keeps cookies (each test sends its own).
fn bare() -> reqwest::Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Signed {
    cookie: String,
    csrf: String,
}

async fn sign_in_raw(gw: &Gateway, key: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = bare()
        .post(gw.url("/ui/session"))
        .json(&json!({"master_key": key}));
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

async fn sign_in(gw: &Gateway) -> Signed {
    let r = sign_in_raw(gw, MASTER_KEY, &[]).await;
    assert_eq!(r.status(), 200);
    let set = header(&r, "set-cookie").unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let v = json_of(r).await;
    Signed {
        cookie,
        csrf: v["csrf_token"].as_str().unwrap().to_owned(),
    }
}

/// `method path` with the session cookie and these headers.
async fn with_session(
    gw: &Gateway,
    s: &Signed,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = bare()
        .request(method, gw.url(path))
        .header("cookie", &s.cookie);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_and_get_root_leads_to_it() {
    let gw = Gateway::start(console_config()).await;
    let r = bare().get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(header(&r, "location"), Some("/ui/"));
    let r = bare().get(gw.url("/ui")).send().await.unwrap();
    assert_eq!(header(&r, "location"), Some("/ui/"));
    let r = bare().get(gw.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    let csp = header(&r, "content-security-policy").unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"<label for="master-key">Master key</label>"#),
        "{html}"
    );
    assert!(html.contains(r#"type="password""#));
    // Nothing from elsewhere: no CDN, works offline.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for (path, ty) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let r = bare().get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), Some(ty), "{path}");
        assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
    }
    let js = bare()
        .get(gw.url("/ui/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!js.contains("innerHTML"), "data is shown as text only");
    assert_eq!(
        bare()
            .get(gw.url("/ui/nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn without_a_master_key_there_is_no_sign_in() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = sign_in_raw(&gw, "anything", &[]).await;
    let e = assert_openai_error(r, 404, "invalid_request_error", Some("console_off")).await;
    assert!(e["message"].as_str().unwrap().contains("master key"), "{e}");
    // GET / stays the plain page.
    let r = bare().get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_that_the_admin_api_takes() {
    let gw = Gateway::start(console_config()).await;
    // Before: not signed in, and the admin API refuses a request without the master key.
    let r = bare().get(gw.url("/ui/session")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["signed_in"], false);
    let r = bare().get(gw.url("/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r = sign_in_raw(&gw, MASTER_KEY, &[]).await;
    assert_eq!(r.status(), 200);
    let set = header(&r, "set-cookie").unwrap().to_owned();
    assert!(set.starts_with("aigw_session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP: no Secure flag, or the browser drops it: {set}"
    );
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let v = json_of(r).await;
    let csrf = v["csrf_token"].as_str().unwrap();
    assert!(csrf.len() >= 32, "{v}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(!cookie.contains(MASTER_KEY));
    let s = Signed {
        cookie,
        csrf: csrf.to_owned(),
    };

    let r = with_session(&gw, &s, Method::GET, "/ui/session", &[], None).await;
    let v = json_of(r).await;
    assert_eq!(v["signed_in"], true);
    assert_eq!(v["csrf_token"], s.csrf);
    // Reads need only the cookie.
    let r = with_session(&gw, &s, Method::GET, "/admin/keys", &[], None).await;
    assert_eq!(r.status(), 200);
    let r = with_session(&gw, &s, Method::GET, "/admin/deployments", &[], None).await;
    assert_eq!(r.status(), 200);
    // The cookie is no key for the client API.
    let r = with_session(
        &gw,
        &s,
        Method::POST,
        "/v1/chat/completions",
        &[],
        Some(chat_body("mock", "hi")),
    )
    .await;
    assert_eq!(r.status(), 401);
    // A made-up cookie is nobody.
    let fake = Signed {
        cookie: "aigw_session=madeup".into(),
        csrf: s.csrf.clone(),
    };
    let r = with_session(&gw, &fake, Method::GET, "/admin/keys", &[], None).await;
    assert_openai_error(r, 401, "authentication_error", None).await;

    // Behind a TLS-terminating proxy the cookie is Secure.
    let r = sign_in_raw(&gw, MASTER_KEY, &[("x-forwarded-proto", "https")]).await;
    let set = header(&r, "set-cookie").unwrap().to_owned();
    assert!(set.contains("; Secure"), "{set}");
    let logs = gw.logs();
    assert!(!logs.contains(MASTER_KEY), "{logs}");
    assert!(!logs.contains(&s.csrf), "{logs}");
}

#[tokio::test]
async fn changes_need_the_console_origin_and_the_csrf_token() {
    let gw = Gateway::start(console_config()).await;
    let s = sign_in(&gw).await;
    let origin = format!("http://{}", gw.addr());
    let body = || Some(json!({"name": "from-console"}));
    let refused = [
        // Cookie alone: what a cross-site form post would carry.
        vec![],
        // The right token from a foreign page.
        vec![
            ("origin", "http://evil.example"),
            ("x-csrf-token", s.csrf.as_str()),
        ],
        // The right origin without the token, or with another.
        vec![("origin", origin.as_str())],
        vec![("origin", origin.as_str()), ("x-csrf-token", "wrong")],
        // No Origin, and the browser says cross-site.
        vec![
            ("sec-fetch-site", "cross-site"),
            ("x-csrf-token", s.csrf.as_str()),
        ],
        vec![("origin", "null"), ("x-csrf-token", s.csrf.as_str())],
    ];
    for headers in &refused {
        let r = with_session(&gw, &s, Method::POST, "/admin/keys", headers, body()).await;
        let e = assert_openai_error(r, 403, "permission_error", Some("csrf_check_failed")).await;
        assert!(e["message"].as_str().unwrap().contains("cross-site"), "{e}");
    }
    // Nothing was created by the refused requests.
    let list = json_of(admin_keys(&gw, Method::GET, "", None).await).await;
    assert!(
        !list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "from-console"),
        "{list}"
    );

    let ok = [
        ("origin", origin.as_str()),
        ("x-csrf-token", s.csrf.as_str()),
    ];
    let r = with_session(&gw, &s, Method::POST, "/admin/keys", &ok, body()).await;
    assert_eq!(r.status(), 201);
    let v = json_of(r).await;
    assert!(v["key"].as_str().unwrap().starts_with("sk-gw-"));
    let id = v["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/keys/{id}");
    // PATCH and DELETE alike; a browser without Origin but with Sec-Fetch-Site: same-origin.
    let r = with_session(
        &gw,
        &s,
        Method::PATCH,
        &path,
        &[("x-csrf-token", s.csrf.as_str())],
        Some(json!({"rpm": 10})),
    )
    .await;
    assert_eq!(r.status(), 403);
    let same_site = [
        ("sec-fetch-site", "same-origin"),
        ("x-csrf-token", s.csrf.as_str()),
    ];
    let r = with_session(
        &gw,
        &s,
        Method::PATCH,
        &path,
        &same_site,
        Some(json!({"rpm": 10})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["rpm"], 10);
    let r = with_session(
        &gw,
        &s,
        Method::DELETE,
        &path,
        &[("origin", "http://evil.example")],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = with_session(&gw, &s, Method::DELETE, &path, &ok, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["revoked"], true);

    // A foreign page cannot sign a browser in either.
    let r = sign_in_raw(&gw, MASTER_KEY, &[("origin", "http://evil.example")]).await;
    assert_eq!(r.status(), 403);
    assert!(header(&r, "set-cookie").is_none());

    // Sign-out is a change too; after it the cookie is worth nothing.
    let r = with_session(
        &gw,
        &s,
        Method::DELETE,
        "/ui/session",
        &[("origin", "http://evil.example")],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = with_session(&gw, &s, Method::DELETE, "/ui/session", &ok, None).await;
    assert_eq!(r.status(), 204);
    let set = header(&r, "set-cookie").unwrap();
    assert!(set.contains("Max-Age=0"), "{set}");
    let r = with_session(&gw, &s, Method::GET, "/admin/keys", &[], None).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn wrong_master_keys_are_refused_and_then_slowed_down() {
    let gw = Gateway::start(console_config()).await;
    for i in 0..5 {
        let r = sign_in_raw(&gw, "not-the-master-key", &[]).await;
        assert!(header(&r, "set-cookie").is_none());
        let e = assert_openai_error(r, 401, "authentication_error", None).await;
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("master key is not correct"), "attempt {i}: {m}");
        assert!(!m.contains("not-the-master-key"));
    }
    // The sixth wrong key waits, and so does the right one from the same address meanwhile.
    for key in ["still-wrong", MASTER_KEY] {
        let r = sign_in_raw(&gw, key, &[]).await;
        assert!(header(&r, "set-cookie").is_none());
        let wait: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        let e = assert_openai_error(
            r,
            429,
            "rate_limit_error",
            Some("too_many_sign_in_attempts"),
        )
        .await;
        assert!(
            e["message"].as_str().unwrap().contains("try again in"),
            "{e}"
        );
    }
    let logs = gw.logs();
    assert!(!logs.contains("not-the-master-key"), "{logs}");
    assert!(logs.contains("console sign-in with a wrong master key"));
}

#[tokio::test]
async fn a_bad_sign_in_body_is_a_400() {
    let gw = Gateway::start(console_config()).await;
    for body in ["", "{\"key\": \"x\"}", "[1]", "{\"master_key\": 5}"] {
        let r = bare()
            .post(gw.url("/ui/session"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        assert!(e["message"].as_str().unwrap().contains("master_key"), "{e}");
    }
}

#[tokio::test]
async fn sessions_end_after_the_idle_time() {
    let mut cfg = console_config();
    cfg["auth"]["console_session_idle"] = json!("1s");
    let gw = Gateway::start(cfg).await;
    let s = sign_in(&gw).await;
    // Used within the idle time, it lives on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = with_session(&gw, &s, Method::GET, "/admin/keys", &[], None).await;
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = with_session(&gw, &s, Method::GET, "/admin/keys", &[], None).await;
    let e = assert_openai_error(r, 401, "authentication_error", None).await;
    assert!(
        e["message"].as_str().unwrap().contains("sign in again"),
        "{e}"
    );
    let r = with_session(&gw, &s, Method::GET, "/ui/session", &[], None).await;
    assert_eq!(json_of(r).await["signed_in"], false);
}

#[tokio::test]
async fn replicas_sharing_redis_share_sessions() {
    let redis = RedisServer::start().await;
    let mut cfg = console_config();
    cfg["state"] = json!({"redis_url": redis.url()});
    let a = Gateway::start(cfg.clone()).await;
    let b = Gateway::start(cfg).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    let s = sign_in(&a).await;
    let r = with_session(&b, &s, Method::GET, "/admin/keys", &[], None).await;
    assert_eq!(
        r.status(),
        200,
        "a session made on one replica works on another"
    );
    let origin_a = format!("http://{}", a.addr());
    let ok = [
        ("origin", origin_a.as_str()),
        ("x-csrf-token", s.csrf.as_str()),
    ];
    let r = with_session(&a, &s, Method::DELETE, "/ui/session", &ok, None).await;
    assert_eq!(r.status(), 204);
    let r = with_session(&b, &s, Method::GET, "/admin/keys", &[], None).await;
    assert_eq!(r.status(), 401, "signed out everywhere");
}
