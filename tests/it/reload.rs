//! Configuration reload: SIGHUP and `POST /admin/reload` (master key only; 404 without one); an
//! invalid file is refused and the running configuration keeps serving.

use std::time::Duration;

use serde_json::{Value, json};

use nix::sys::signal::Signal;

use crate::support::*;

fn with_master(mut cfg: Value) -> Value {
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    cfg
}

fn plus_model(mut cfg: Value, name: &str) -> Value {
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model(name, "local", "mock"));
    cfg
}

async fn chat_status(gw: &Gateway, model: &str) -> u16 {
    gw.post(
        "/v1/chat/completions",
        Some(GW_KEY),
        &chat_body(model, "hi"),
    )
    .await
    .status()
    .as_u16()
}

async fn poll_status(gw: &Gateway, model: &str, want: u16) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if chat_status(gw, model).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_serves_the_new_model() {
    let cfg = basic_config(None);
    let gw = Gateway::start(cfg.clone()).await;
    assert_eq!(chat_status(&gw, "mock-two").await, 404);
    gw.write_config(plus_model(cfg, "mock-two"));
    gw.send_signal(Signal::SIGHUP);
    assert!(
        poll_status(&gw, "mock-two", 200).await,
        "the model added by the reload is not served\n{}",
        gw.logs()
    );
    assert_eq!(chat_status(&gw, "mock").await, 200);
    let r = gw.get("/v1/models", Some(GW_KEY)).await;
    let ids: Vec<String> = json_of(r).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"mock-two".to_owned()), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_invalid_file_keeps_old_config() {
    let gw = Gateway::start(basic_config(None)).await;
    std::fs::write(gw.config_path(), "{ this is not a configuration").unwrap();
    gw.send_signal(Signal::SIGHUP);
    // The refusal is logged; the process and the old configuration stay.
    gw.wait_log("reload").await;
    assert_eq!(chat_status(&gw, "mock").await, 200);
    assert_eq!(gw.get("/health", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_needs_the_master_key() {
    let cfg = with_master(basic_config(None));
    let gw = Gateway::start(cfg.clone()).await;
    gw.write_config(with_master(plus_model(cfg, "mock-three")));

    // No key, a caller's key, a wrong key: 401, nothing reloaded.
    for key in [None, Some(GW_KEY), Some("master-wrong")] {
        let r = gw.post("/admin/reload", key, &json!({})).await;
        assert_openai_error(r, 401, "authentication_error", None).await;
    }
    assert_eq!(chat_status(&gw, "mock-three").await, 404);

    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(chat_status(&gw, "mock-three").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tree_is_404_without_a_master_key() {
    let gw = Gateway::start(basic_config(None)).await;
    for key in [None, Some(GW_KEY), Some(MASTER_KEY)] {
        let r = gw.post("/admin/reload", key, &json!({})).await;
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_refuses_invalid_file_and_old_config_serves() {
    let cfg = with_master(basic_config(None));
    let gw = Gateway::start(cfg.clone()).await;

    // Unknown key: refused with a 400 naming it.
    let mut bad = with_master(plus_model(cfg.clone(), "mock-bad"));
    bad["servr"] = json!({});
    gw.write_config(bad);
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(
        e["message"].as_str().unwrap().contains("servr"),
        "names the error: {e}"
    );
    assert_eq!(chat_status(&gw, "mock").await, 200);
    assert_eq!(chat_status(&gw, "mock-bad").await, 404);

    // A deployment naming no provider.
    let mut bad = with_master(cfg.clone());
    bad["models"]
        .as_array_mut()
        .unwrap()
        .push(model("mock-bad", "opnai", "x"));
    gw.write_config(bad);
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(
        e["message"].as_str().unwrap().contains("opnai"),
        "names the error: {e}"
    );
    assert_eq!(chat_status(&gw, "mock").await, 200);
    assert_eq!(chat_status(&gw, "mock-bad").await, 404);

    // Not even JSON.
    std::fs::write(gw.config_path(), b"{{{").unwrap();
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert_eq!(chat_status(&gw, "mock").await, 200);

    // The master key still works (the old auth section is in force) and a good file reloads.
    gw.write_config(with_master(plus_model(cfg, "mock-good")));
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(chat_status(&gw, "mock-good").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_keys() {
    let cfg = with_master(basic_config(None));
    let gw = Gateway::start(cfg.clone()).await;
    let mut next = cfg;
    next["auth"]["keys"] = json!([{"name": "new", "key": "sk-gw-rotated-5555"}]);
    gw.write_config(next);
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_eq!(r.status(), 200);
    let r = gw.chat("mock", "hi").await;
    assert_eq!(r.status(), 401, "the removed key no longer works");
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-gw-rotated-5555"),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);
}
