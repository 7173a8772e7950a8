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

/// A reload applies what it can (a new model, the log level) and names the changed keys that
/// need a restart, in the answer and in one WARN line; they keep their running values (Redis is
/// still unused), and a second reload still names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_restart_only_keys_and_applies_the_rest() {
    let cfg = with_master(basic_config(None));
    let gw = Gateway::start(cfg.clone()).await;
    assert_eq!(chat_status(&gw, "mock").await, 200);
    assert!(
        !gw.logs().contains("upstream attempt"),
        "debug lines at info"
    );

    let mut new = plus_model(cfg, "mock-two");
    new["state"] = json!({"redis_url": "redis://127.0.0.1:1"});
    new["cache"]["l1_max_entries"] = json!(77);
    new["telemetry"] = json!({"log_level": "debug"});
    new["jobs"] = json!({"workers": 3});
    new["server"] = json!({"max_connections": 500, "idle_timeout": "30s"});
    gw.write_config(new.clone());
    // A listen address other than the running one (write_config keeps the running one).
    new["server"]["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    std::fs::write(gw.config_path(), serde_json::to_vec(&new).unwrap()).unwrap();

    let reload = || async {
        let r = gw
            .client()
            .post(gw.url("/admin/reload"))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        json_of(r).await
    };
    let v = reload().await;
    assert_eq!(
        v,
        json!({"status": "reloaded", "restart_required":
            ["server.listen", "state.redis_url", "cache.l1_max_entries"]}),
    );
    gw.wait_log("restart_required").await;
    let warn = gw
        .logs()
        .lines()
        .filter(|l| l.contains("restart_required"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].contains("WARN"), "{}", warn[0]);
    assert!(
        warn[0].contains("server.listen, state.redis_url, cache.l1_max_entries"),
        "{}",
        warn[0]
    );
    // Applied live: the new model, the log level.
    assert_eq!(chat_status(&gw, "mock-two").await, 200);
    gw.wait_log("upstream attempt").await;
    // Not applied: Redis stays unused.
    let ready = json_of(gw.get("/ready", None).await).await;
    assert_eq!(ready["redis"], "unused", "{ready}");
    // Still not applied at the next reload, and still said so.
    let v = reload().await;
    assert_eq!(
        v["restart_required"],
        json!(["server.listen", "state.redis_url", "cache.l1_max_entries"])
    );
    // Back to the running values: nothing needs a restart.
    gw.write_config(plus_model(with_master(basic_config(None)), "mock-two"));
    let v = reload().await;
    assert_eq!(v, json!({"status": "reloaded", "restart_required": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_logs_the_keys_that_need_a_restart() {
    let cfg = basic_config(None);
    let gw = Gateway::start(cfg.clone()).await;
    let mut new = cfg;
    new["state"] = json!({"data_dir": "elsewhere"});
    gw.write_config(new);
    gw.send_signal(Signal::SIGHUP);
    gw.wait_log("restart_required").await;
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("restart_required"))
        .unwrap();
    assert!(line.contains("state.data_dir"), "{line}");
    assert!(line.contains("WARN"), "{line}");
}
