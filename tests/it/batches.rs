//! The Batch API (`/v1/files`, `/v1/batches`) run by the gateway itself: mixed providers,
//! validation with line numbers, ownership, cancel, `kill -9` of the gateway on the embedded
//! store, a key at its rpm limit, a used-up budget (NATS: `batches_nats.rs`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::*;

/// Models `gpt-test` (OpenAI-compatible fake), `claude-test` (Anthropic fake) and `mock`.
fn mixed_config(oa: &FakeUpstream, an: &FakeUpstream) -> Value {
    let mut c = config(
        vec![
            mock_provider("local"),
            openai_provider("oa", oa),
            anthropic_provider("an", an),
        ],
        vec![
            model("mock", "local", "mock"),
            model("gpt-test", "oa", "upstream-model"),
            model("claude-test", "an", "claude-upstream"),
        ],
    );
    c["jobs"] = json!({"workers": 16, "max_attempts": 3});
    c["batches"] = json!({"concurrency": 16});
    c
}

pub(crate) fn one_config(up: &FakeUpstream) -> Value {
    let mut c = basic_config(Some(up));
    c["jobs"] = json!({"workers": 8, "max_attempts": 3});
    c["batches"] = json!({"concurrency": 8});
    c
}

/// A JSONL input of `n` chat lines cycling through `models`.
pub(crate) fn input(n: usize, models: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let m = models[i % models.len()];
        let line = json!({"custom_id": format!("req-{i}"), "method": "POST",
            "url": "/v1/chat/completions", "body": chat_body(m, &format!("line {i}"))});
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// `POST /v1/files` as multipart with `purpose` and `file`.
pub(crate) async fn upload_as(
    gw: &Gateway,
    key: &str,
    purpose: &str,
    content: &[u8],
) -> reqwest::Response {
    let boundary = "----aigwtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    gw.client()
        .post(gw.url("/v1/files"))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("upload")
}

pub(crate) async fn upload(gw: &Gateway, key: &str, content: &[u8]) -> String {
    let r = upload_as(gw, key, "batch", content).await;
    let s = r.status().as_u16();
    let v = json_of(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "file");
    assert_eq!(v["bytes"], content.len() as u64);
    v["id"].as_str().unwrap().to_owned()
}

/// `create`, and the new batch's id.
pub(crate) async fn create_id(gw: &Gateway, key: &str, file: &str) -> String {
    let b = create(gw, key, file).await;
    b["id"].as_str().unwrap().to_owned()
}

/// `POST /v1/batches/{id}/cancel` as `key`.
async fn cancel(gw: &Gateway, key: &str, id: &str) -> reqwest::Response {
    gw.post(&format!("/v1/batches/{id}/cancel"), Some(key), &json!({}))
        .await
}

pub(crate) async fn create(gw: &Gateway, key: &str, file: &str) -> Value {
    let r = gw
        .post(
            "/v1/batches",
            Some(key),
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "metadata": {"run": "it"}}),
        )
        .await;
    let s = r.status().as_u16();
    let v = json_of(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "batch");
    v
}

pub(crate) async fn get_batch(gw: &Gateway, key: &str, id: &str) -> (u16, Value) {
    let r = gw.get(&format!("/v1/batches/{id}"), Some(key)).await;
    let s = r.status().as_u16();
    (s, json_of(r).await)
}

pub(crate) async fn wait_batch(
    gw: &Gateway,
    id: &str,
    timeout: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (s, v) = get_batch(gw, GW_KEY, id).await;
        assert_eq!(s, 200, "{v}");
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch {id}: condition not met within {timeout:?}: {v}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn ended(v: &Value) -> bool {
    ["completed", "failed", "cancelled", "expired"].contains(&v["status"].as_str().unwrap_or(""))
}

pub(crate) async fn content(gw: &Gateway, key: &str, id: &str) -> String {
    let r = gw.get(&format!("/v1/files/{id}/content"), Some(key)).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

pub(crate) fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The output and error lines of an ended batch; every custom_id of `0..n` exactly once.
pub(crate) async fn results(gw: &Gateway, b: &Value, n: usize) -> (Vec<Value>, Vec<Value>) {
    let out = match b["output_file_id"].as_str() {
        Some(id) => jsonl(&content(gw, GW_KEY, id).await),
        None => Vec::new(),
    };
    let err = match b["error_file_id"].as_str() {
        Some(id) => jsonl(&content(gw, GW_KEY, id).await),
        None => Vec::new(),
    };
    let mut seen = HashSet::new();
    for l in out.iter().chain(&err) {
        let c = l["custom_id"].as_str().unwrap().to_owned();
        assert!(seen.insert(c.clone()), "custom_id {c} twice");
    }
    assert_eq!(seen.len(), n, "one result line per input line");
    for i in 0..n {
        assert!(seen.contains(&format!("req-{i}")));
    }
    (out, err)
}

// ---------------------------------------------------------------- embedded

#[tokio::test]
async fn a_batch_of_1000_lines_over_three_providers_runs_each_line_once() {
    let oa = FakeUpstream::start(Kind::OpenAi).await;
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = mixed_config(&oa, &an);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    let gw = Gateway::start(cfg).await;
    let file = upload(
        &gw,
        GW_KEY,
        &input(1000, &["gpt-test", "claude-test", "mock"]),
    )
    .await;
    let (s, meta) = {
        let r = gw.get(&format!("/v1/files/{file}"), Some(GW_KEY)).await;
        (r.status().as_u16(), json_of(r).await)
    };
    assert_eq!(
        (s, meta["purpose"].as_str()),
        (200, Some("batch")),
        "{meta}"
    );
    let b = create(&gw, GW_KEY, &file).await;
    assert_eq!(b["status"], "validating");
    assert_eq!(b["metadata"]["run"], "it");
    let id = b["id"].as_str().unwrap();
    let done = wait_batch(&gw, id, Duration::from_secs(120), ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 1000, "completed": 1000, "failed": 0})
    );
    for k in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[k].as_u64().is_some(), "{k}: {done}");
    }
    assert!(done["error_file_id"].is_null(), "{done}");
    let (out, _) = results(&gw, &done, 1000).await;
    let mut request_ids = HashSet::new();
    for l in &out {
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"), "{l}");
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        assert!(l["error"].is_null());
        assert_eq!(l["response"]["body"]["object"], "chat.completion", "{l}");
        assert!(request_ids.insert(l["response"]["request_id"].as_str().unwrap().to_owned()));
    }
    // Each provider got exactly its third, once per line.
    assert_eq!(oa.request_count(), 334);
    assert_eq!(an.request_count(), 333);
    assert!(
        metric_sum(
            &gw,
            "ai_gateway_batch_lines_total",
            &["status=\"succeeded\""]
        )
        .await
            >= 1000.0
    );
    // The batch is listed, newest first, with pagination.
    let b2 = create(&gw, GW_KEY, &file).await;
    let page = json_of(gw.get("/v1/batches?limit=1", Some(GW_KEY)).await).await;
    assert_eq!(page["data"][0]["id"], b2["id"], "{page}");
    assert_eq!(page["has_more"], true);
    let after = page["data"][0]["id"].as_str().unwrap();
    let page2 = json_of(
        gw.get(&format!("/v1/batches?limit=5&after={after}"), Some(GW_KEY))
            .await,
    )
    .await;
    assert_eq!(page2["data"][0]["id"], id, "{page2}");
    assert_eq!(page2["has_more"], false);
    wait_batch(
        &gw,
        b2["id"].as_str().unwrap(),
        Duration::from_secs(120),
        ended,
    )
    .await;
}

#[tokio::test]
async fn invalid_lines_fail_the_batch_at_validation_with_their_line_numbers() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    let gw = Gateway::start(cfg).await;
    let ok = |id: &str, model: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": chat_body(model, "x")}).to_string()
    };
    let lines = [
        ok("a", "gpt-test"),
        "{not json".to_owned(),
        ok("a", "gpt-test"),
        json!({"custom_id": "m", "method": "GET", "url": "/v1/chat/completions", "body": chat_body("gpt-test", "x")}).to_string(),
        json!({"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": chat_body("gpt-test", "x")}).to_string(),
        ok("nm", "no-such-model"),
        ok("na", "mock"),
        ok("z", "gpt-test"),
    ];
    let file = upload(&gw, GPT_KEY, lines.join("\n").as_bytes()).await;
    let b = create(&gw, GPT_KEY, &file).await;
    let id = b["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (_, v) = get_batch(&gw, GPT_KEY, id).await;
        if ended(&v) {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["failed_at"].as_u64().is_some());
    let errs = done["errors"]["data"].as_array().unwrap();
    let by_line: HashMap<u64, &str> = errs
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by_line,
        HashMap::from([
            (2, "invalid_json_line"),
            (3, "duplicate_custom_id"),
            (4, "invalid_method"),
            (5, "mismatched_endpoint"),
            (6, "model_not_found"),
            (7, "model_not_allowed"),
        ]),
        "{done}"
    );
    assert_eq!(up.request_count(), 0, "nothing runs when a line is invalid");
}

#[tokio::test]
async fn files_and_batches_belong_to_their_key() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["batches"]["max_file_size"] = json!("4KiB");
    let gw = Gateway::start(cfg).await;
    let file = upload(&gw, GW_KEY, &input(3, &["gpt-test"])).await;
    let b = create(&gw, GW_KEY, &file).await;
    let id = b["id"].as_str().unwrap();
    let done = wait_batch(&gw, id, Duration::from_secs(30), ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let out = done["output_file_id"].as_str().unwrap();
    for path in [
        format!("/v1/files/{file}"),
        format!("/v1/files/{file}/content"),
        format!("/v1/files/{out}/content"),
        format!("/v1/batches/{id}"),
    ] {
        let r = gw.get(&path, Some(GPT_KEY)).await;
        assert_openai_error(r, 404, "invalid_request_error", None).await;
    }
    let r = cancel(&gw, GPT_KEY, id).await;
    assert_eq!(r.status(), 404);
    let r = gw
        .client()
        .delete(gw.url(&format!("/v1/files/{file}")))
        .bearer_auth(GPT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = gw.post("/v1/batches", Some(GPT_KEY), &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"})).await;
    assert_eq!(r.status(), 404);
    let list = json_of(gw.get("/v1/batches", Some(GPT_KEY)).await).await;
    assert_eq!(list["data"], json!([]), "{list}");
    let files = json_of(gw.get("/v1/files", Some(GPT_KEY)).await).await;
    assert_eq!(files["data"], json!([]), "{files}");
    let mine = json_of(gw.get("/v1/files", Some(GW_KEY)).await).await;
    assert_eq!(
        mine["data"].as_array().unwrap().len(),
        2,
        "input and output: {mine}"
    );
    // Other purposes, a missing window, an unknown endpoint, a file over the limit.
    let r = upload_as(&gw, GW_KEY, "fine-tune", b"{}").await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw.post("/v1/batches", Some(GW_KEY), &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "1h"})).await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .post(
            "/v1/batches",
            Some(GW_KEY),
            &json!({"input_file_id": file, "endpoint": "/v1/images", "completion_window": "24h"}),
        )
        .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = upload_as(&gw, GW_KEY, "batch", &vec![b'x'; 5000]).await;
    assert_eq!(r.status(), 413);
    // Delete: the file and its content are gone.
    let r = gw
        .client()
        .delete(gw.url(&format!("/v1/files/{file}")))
        .bearer_auth(GW_KEY)
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["deleted"], true, "{v}");
    let r = gw
        .get(&format!("/v1/files/{file}/content"), Some(GW_KEY))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn cancel_mid_run_stops_new_lines_and_writes_the_partial_output() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(150)));
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["batches"]["concurrency"] = json!(4);
    let gw = Gateway::start(cfg).await;
    let file = upload(&gw, GW_KEY, &input(200, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    assert!(wait_until(Duration::from_secs(30), || up.request_count() >= 12).await);
    let r = cancel(&gw, GW_KEY, &id).await;
    let v = json_of(r).await;
    assert_eq!(v["status"], "cancelling", "{v}");
    assert!(v["cancelling_at"].as_u64().is_some());
    let done = wait_batch(&gw, &id, Duration::from_secs(30), ended).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(done["cancelled_at"].as_u64().is_some());
    let ran = up.request_count();
    assert!(ran < 60, "{ran} lines ran after a cancel at ~12");
    let (out, err) = results(&gw, &done, 200).await;
    assert_eq!(out.len(), ran, "each line that ran is in the output");
    assert_eq!(done["request_counts"]["completed"], ran as u64);
    assert!(
        err.iter()
            .all(|l| l["error"]["code"] == "batch_cancelled" && l["response"].is_null())
    );
    // A cancelled batch cannot be cancelled into anything else; a completed one answers 409.
    let r = cancel(&gw, GW_KEY, &id).await;
    assert_eq!(json_of(r).await["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(up.request_count(), ran, "nothing runs after the end");
}

/// Kill the gateway mid-batch, start it again: every line ends once in the output.
pub(crate) async fn kill_9_mid_batch(cfg: Value, up: &FakeUpstream) {
    up.set_default(Fault::Delay(Duration::from_millis(60)));
    let mut gw = Gateway::start(cfg.clone()).await;
    let file = upload(&gw, GW_KEY, &input(300, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    assert!(wait_until(Duration::from_secs(30), || up.request_count() >= 60).await);
    gw.send_signal(Signal::SIGKILL);
    gw.wait_exit(Duration::from_secs(5)).await;
    let before = up.request_count();
    assert!(before < 300, "the kill came too late to test anything");
    up.set_default(Fault::Normal);
    let gw2 = Gateway::start(cfg).await;
    let done = every_line_once(&gw2, &id, up).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 300, "completed": 300, "failed": 0})
    );
}

/// Wait (up to 90 s) for the 300-line batch `id` to end on `gw`: it completed, every line is in
/// the output once, and only the lines running or not yet recorded at an interruption (at most
/// twice `batches.concurrency`, 8 here) were sent twice. The batch.
pub(crate) async fn every_line_once(gw: &Gateway, id: &str, up: &FakeUpstream) -> Value {
    let done = wait_batch(gw, id, Duration::from_secs(90), ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (out, err) = results(gw, &done, 300).await;
    assert_eq!((out.len(), err.len()), (300, 0));
    assert!(
        up.request_count() <= 300 + 2 * 8,
        "{} upstream calls",
        up.request_count()
    );
    done
}

#[tokio::test]
async fn each_line_is_in_the_access_log_the_request_log_and_spend_under_its_request_id() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = crate::request_log::log_config(&up);
    cfg["jobs"] = json!({"workers": 8, "max_attempts": 3});
    cfg["batches"] = json!({"concurrency": 8});
    let gw = Gateway::start(cfg).await;
    let file = upload(&gw, GW_KEY, &input(3, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    let done = wait_batch(&gw, &id, Duration::from_secs(30), ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (out, _) = results(&gw, &done, 3).await;
    let ids: Vec<String> = out
        .iter()
        .map(|l| l["response"]["request_id"].as_str().unwrap().to_owned())
        .collect();
    let entries = crate::request_log::wait_entries(&gw, "model=gpt-test", 3).await;
    for rid in &ids {
        let e = entries["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == rid.as_str())
            .unwrap_or_else(|| panic!("no request log entry {rid}: {entries}"));
        assert_eq!(e["status"], 200, "{e}");
        assert!(e["cost_usd"].as_f64().unwrap() > 0.0, "{e}");
        gw.wait_log(rid).await;
    }
}

#[tokio::test]
async fn a_batch_cancelled_at_once_still_has_one_line_per_input_line() {
    // Cancelled right after it was made: usually while its lines are still being checked,
    // before any ran. The output and error files still hold one line per input line.
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(one_config(&up)).await;
    let file = upload(&gw, GW_KEY, &input(3000, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    let r = cancel(&gw, GW_KEY, &id).await;
    assert!(
        ["cancelling", "cancelled"].contains(&json_of(r).await["status"].as_str().unwrap_or(""))
    );
    let done = wait_batch(&gw, &id, Duration::from_secs(60), ended).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["request_counts"]["total"], 3000, "{done}");
    let (out, err) = results(&gw, &done, 3000).await;
    assert_eq!(out.len() + err.len(), 3000);
    assert_eq!(done["request_counts"]["completed"], out.len() as u64);
    assert!(err.iter().all(|l| l["error"]["code"] == "batch_cancelled"));
}

#[tokio::test]
async fn embedded_kill_9_mid_batch_loses_no_line() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    kill_9_mid_batch(cfg, &up).await;
}

#[tokio::test]
async fn a_key_at_its_rpm_limit_finishes_its_batch_by_waiting() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    // A whole minute's worth is the burst: 140 lines at 120 rpm wait ~10 s for the last 20.
    cfg["auth"]["keys"][0]["rpm"] = json!(120);
    let gw = Gateway::start(cfg).await;
    let file = upload(&gw, GW_KEY, &input(140, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    let done = wait_batch(&gw, &id, Duration::from_secs(90), ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 140, "{done}");
    assert_eq!(up.request_count(), 140);
    assert!(
        metric_sum(&gw, "ai_gateway_rate_limited_total", &[]).await >= 1.0,
        "the key hit its limit and waited"
    );
    // The console's listing sees every key's batches.
    let r = gw
        .client()
        .get(gw.url("/admin/batches"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["data"][0]["id"], id.as_str(), "{v}");
    assert_eq!(v["data"][0]["key"], "all");
    assert_eq!(v["data"][0]["request_counts"]["total"], 140);
    let r = gw.get("/admin/batches", Some(GW_KEY)).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_budget_used_up_fails_the_rest_of_the_batch_budget_exceeded() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(
        vec![mock_provider("local")],
        vec![
            json!({"name": "mock", "deployments": [{"provider": "local", "model": "mock",
            "input_cost_per_mtok": 1000000.0, "output_cost_per_mtok": 1000000.0}]}),
        ],
    );
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["batches"] = json!({"concurrency": 2});
    let gw = Gateway::start(cfg).await;
    // Every token costs a dollar: a few lines use the budget up.
    let (_, key) = create_key(
        &gw,
        json!({"name": "spender", "budget_usd": 5, "budget_period": "30d"}),
    )
    .await;
    let file = upload(&gw, &key, &input(50, &["mock"])).await;
    let r = gw
        .post(
            "/v1/batches",
            Some(&key),
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    let id = json_of(r).await["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, v) = get_batch(&gw, &key, &id).await;
        if ended(&v) {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    let completed = done["request_counts"]["completed"].as_u64().unwrap();
    assert!((1..10).contains(&completed), "{done}");
    let err_id = done["error_file_id"].as_str().unwrap();
    let r = gw
        .get(&format!("/v1/files/{err_id}/content"), Some(&key))
        .await;
    let err = jsonl(&r.text().await.unwrap());
    assert_eq!(
        completed as usize + err.len(),
        50,
        "one line per input line"
    );
    for l in &err {
        let code = l["error"]["code"]
            .as_str()
            .or_else(|| l["response"]["body"]["error"]["code"].as_str());
        assert_eq!(code, Some("budget_exceeded"), "{l}");
    }
    assert!(
        err.iter().any(|l| l["response"].is_null()),
        "lines after the budget ran out did not run"
    );
}
