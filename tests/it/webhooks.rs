//! Webhooks of ended jobs: retries with the same `webhook-id`, the delivery status in the record,
//! a schedule that survives a restart, and the SSRF guard (loopback URLs only: no traffic ever
//! leaves this machine).

use std::time::Duration;

use serde_json::{Value, json};

use crate::jobs::{SECRET, get_job, jobs_config, submit, submit_ok, wait_job, wait_job_until};
use nix::sys::signal::Signal;

use crate::support::*;

/// Submit a chat job of `text` with its webhook to `url`, and wait (up to 15 s) until its
/// webhook's status is `status`: the job's id and record.
async fn hooked_job_until(gw: &Gateway, text: &str, url: &str, status: &str) -> (String, Value) {
    let job = submit_ok(gw, &chat_body("gpt-test", text), &[("x-webhook-url", url)]).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let v = wait_job_until(gw, &id, Duration::from_secs(15), |v| {
        v["webhook"]["status"] == status
    })
    .await;
    (id, v)
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_same_webhook_id_three_times() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    rx.push(&[500, 502]);
    let gw = Gateway::start(jobs_config(&up)).await;
    let (id, v) = hooked_job_until(&gw, "retry", &rx.url(), "delivered").await;
    let id = id.as_str();
    assert_eq!(v["webhook"]["attempts"], 3, "{v}");
    let d = rx.deliveries();
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d.id == id && d.verifies(SECRET)));
    // Backoff: 50 ms then 100 ms steps, each at least half the step (jitter).
    assert!(
        d[1].at - d[0].at >= Duration::from_millis(25),
        "{:?}",
        d[1].at - d[0].at
    );
    assert!(
        d[2].at - d[1].at >= Duration::from_millis(50),
        "{:?}",
        d[2].at - d[1].at
    );
    assert!(
        metric_lines(&gw)
            .await
            .contains("ai_gateway_webhook_deliveries_total{outcome=\"http_error\"} 2")
    );
}

async fn metric_lines(gw: &Gateway) -> String {
    gw.get("/metrics", None).await.text().await.unwrap()
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_failed_after_max_attempts_and_410_stops_at_once() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    rx.push(&[500, 500, 500, 500, 500, 410]);
    let gw = Gateway::start(jobs_config(&up)).await;
    let (_, v) = hooked_job_until(&gw, "never delivered", &rx.url(), "failed").await;
    assert_eq!(v["webhook"]["attempts"], 5, "{v}");
    assert!(v["webhook"]["last_error"].as_str().unwrap().contains("500"));
    assert_eq!(rx.deliveries().len(), 5);
    let (_, v) = hooked_job_until(&gw, "gone", &rx.url(), "failed").await;
    assert_eq!(v["webhook"]["attempts"], 1, "410 Gone stops retrying: {v}");
}

#[tokio::test]
async fn the_retry_schedule_survives_a_restart() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    rx.push(&[500]);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["jobs"]["webhook"]["backoff_initial"] = json!("3s");
    cfg["jobs"]["webhook"]["backoff_max"] = json!("3s");
    let mut gw = Gateway::start(cfg.clone()).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "later"),
        &[("x-webhook-url", &rx.url())],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let v = wait_job_until(&gw, &id, Duration::from_secs(10), |v| {
        v["webhook"]["attempts"] == 1
    })
    .await;
    assert_eq!(v["webhook"]["status"], "pending");
    assert!(v["webhook"]["next_attempt_at"].as_u64().is_some(), "{v}");
    gw.send_signal(Signal::SIGKILL);
    gw.wait_exit(Duration::from_secs(5)).await;
    let gw = Gateway::start(cfg).await;
    let v = wait_job_until(&gw, &id, Duration::from_secs(15), |v| {
        v["webhook"]["status"] == "delivered"
    })
    .await;
    assert_eq!(v["webhook"]["attempts"], 2);
    let d = rx.deliveries();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].id, d[1].id);
}

#[tokio::test]
async fn private_webhook_urls_are_refused_at_submission() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["webhook"]["allow_private_networks"] = json!(false);
    let gw = Gateway::start(cfg).await;
    let port = rx.addr.port();
    // Loopback in every spelling, and a name that resolves to it. (Only loopback is ever
    // contacted: the other private ranges are covered by unit tests without traffic.)
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.1/hook".to_owned(),
        "http://100.64.0.1/hook".to_owned(),
    ] {
        let r = submit(
            &gw,
            GW_KEY,
            "/v1/async/chat/completions",
            &chat_body("gpt-test", "x"),
            &[("x-webhook-url", &url)],
        )
        .await;
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        assert!(
            e["message"].as_str().unwrap().contains("x-webhook-url"),
            "{url}: {e}"
        );
    }
    assert_eq!(up.request_count(), 0);
    assert!(rx.deliveries().is_empty());
}

#[tokio::test]
async fn a_name_that_turns_private_after_submission_is_refused_at_connect_time() {
    // Submission allowed private networks; a reload forbids them before the delivery, so the
    // delivery goes through the connect-time guard (the resolver), as after DNS re-binding.
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(1500)));
    let rx = WebhookReceiver::start().await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["webhook"]["max_attempts"] = json!(2);
    let gw = Gateway::start(cfg.clone()).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "rebind"),
        &[("x-webhook-url", &rx.localhost_url())],
    )
    .await;
    let id = job["id"].as_str().unwrap();
    cfg["jobs"]["webhook"]["allow_private_networks"] = json!(false);
    gw.write_config(cfg);
    gw.send_signal(Signal::SIGHUP);
    gw.wait_log("configuration reloaded").await;
    let v = wait_job(&gw, id, Duration::from_secs(10)).await;
    assert_eq!(v["status"], "succeeded");
    let v = wait_job_until(&gw, id, Duration::from_secs(10), |v| {
        v["webhook"]["status"] == "failed"
    })
    .await;
    assert_eq!(v["webhook"]["attempts"], 2, "{v}");
    assert!(
        v["webhook"]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{v}"
    );
    assert!(
        rx.deliveries().is_empty(),
        "no request reached the private address"
    );
    assert!(
        metric_lines(&gw)
            .await
            .contains("ai_gateway_webhook_deliveries_total{outcome=\"refused\"} 2")
    );
    let (_, v) = get_job(&gw, GW_KEY, id).await;
    assert_eq!(v["webhook"]["url"], rx.localhost_url());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    use axum::response::IntoResponse;
    // A receiver that redirects to another (loopback) receiver.
    let target = WebhookReceiver::start().await;
    let to = target.url();
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move { (axum::http::StatusCode::FOUND, [("location", to)], "").into_response() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["webhook"]["max_attempts"] = json!(1);
    let gw = Gateway::start(cfg).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "redirected"),
        &[("x-webhook-url", &format!("http://127.0.0.1:{port}/r"))],
    )
    .await;
    let v = wait_job_until(
        &gw,
        job["id"].as_str().unwrap(),
        Duration::from_secs(10),
        |v| v["webhook"]["status"] == "failed",
    )
    .await;
    assert!(
        v["webhook"]["last_error"].as_str().unwrap().contains("302"),
        "{v}"
    );
    assert!(target.deliveries().is_empty());
    server.abort();
}

/// `ai-gateway webhook-secret --config PATH`: whether it succeeded, its stdout and stderr.
fn webhook_secret_cli(config: &std::path::Path) -> (bool, String, String) {
    let out = crate::support::gateway::command()
        .arg("webhook-secret")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No line the gateway printed holds the secret: as `whsec_…`, as its base64 body, or as the
/// key's bytes in hex.
fn assert_secret_not_logged(logs: &str, secret: &str) {
    let b64 = secret.trim_start_matches("whsec_");
    let key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        assert!(
            !line.contains(b64) && !line.contains(&hex),
            "a log line holds the webhook secret: {line}"
        );
    }
}

/// A job with a webhook to `rx`, delivered; the delivery's signature verifies with `secret`.
async fn signed_with(gw: &Gateway, rx: &WebhookReceiver, text: &str, secret: &str) {
    let (id, _) = hooked_job_until(gw, text, &rx.url(), "delivered").await;
    let d = rx
        .deliveries()
        .into_iter()
        .find(|d| d.id == id)
        .expect("delivered");
    assert!(
        d.verifies(secret),
        "the webhook is signed with {secret:?}'s key"
    );
}

#[tokio::test]
async fn a_generated_secret_is_never_logged_and_the_cli_prints_the_one_that_signs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    for format in ["json", "pretty"] {
        let data = tempfile::tempdir().unwrap();
        let mut cfg = jobs_config(&up);
        cfg["jobs"]["webhook"]
            .as_object_mut()
            .unwrap()
            .remove("secret");
        cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
        cfg["telemetry"] = json!({"log_format": format, "log_level": "debug"});
        let gw = Gateway::start(cfg.clone()).await;
        // Where it is, said once; what it is, never.
        let file = data.path().join("webhook_secret");
        gw.wait_log(file.to_str().unwrap()).await;
        let (ok, secret, err) = webhook_secret_cli(gw.config_path());
        assert!(ok, "{err}");
        let secret = secret.trim().to_owned();
        assert!(
            secret.starts_with("whsec_") && secret.len() > 40,
            "{secret}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "readable only by the gateway's user");
        }
        signed_with(&gw, &rx, &format!("signed {format}"), &secret).await;
        assert_secret_not_logged(&gw.logs(), &secret);
        // A restart signs with the same secret, and logs it no more.
        drop(gw);
        let gw = Gateway::start(cfg).await;
        signed_with(&gw, &rx, &format!("restarted {format}"), &secret).await;
        assert_secret_not_logged(&gw.logs(), &secret);
        assert_eq!(webhook_secret_cli(gw.config_path()).1.trim(), secret);
    }
}

#[tokio::test]
async fn the_cli_prints_the_configured_secret_or_says_there_is_none_yet() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    let path = dir.path().join("gateway.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let (ok, out, _) = webhook_secret_cli(&path);
    assert!(ok);
    assert_eq!(out, format!("{SECRET}\n"));
    // Unset, before any gateway generated one: an error, nothing on stdout.
    cfg["jobs"]["webhook"]
        .as_object_mut()
        .unwrap()
        .remove("secret");
    cfg["state"] = json!({"data_dir": dir.path().join("data").to_str().unwrap()});
    std::fs::write(&path, cfg.to_string()).unwrap();
    let (ok, out, err) = webhook_secret_cli(&path);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("no webhook secret yet"), "{err}");
}

#[tokio::test]
async fn nats_a_generated_secret_lives_in_nats_and_the_cli_prints_it() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["webhook"]
        .as_object_mut()
        .unwrap()
        .remove("secret");
    cfg["state"] = json!({"nats_url": nats.url()});
    cfg["telemetry"] = json!({"log_format": "json", "log_level": "debug"});
    let a = Gateway::start(cfg.clone()).await;
    a.wait_log("aigw_meta").await;
    let b = Gateway::start(cfg).await;
    let (ok, secret, err) = webhook_secret_cli(a.config_path());
    assert!(ok, "{err}");
    let secret = secret.trim().to_owned();
    // Every replica signs with the one in NATS.
    signed_with(&a, &rx, "over nats a", &secret).await;
    signed_with(&b, &rx, "over nats b", &secret).await;
    assert_secret_not_logged(&a.logs(), &secret);
    assert_secret_not_logged(&b.logs(), &secret);
}

#[tokio::test]
async fn the_queued_gauge_follows_the_queue() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_secs(5)));
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["workers"] = json!(1);
    let gw = Gateway::start(cfg).await;
    for i in 0..5 {
        submit_ok(&gw, &chat_body("gpt-test", &format!("q{i}")), &[]).await;
    }
    let text = gw.get("/metrics", None).await.text().await.unwrap();
    let queued: f64 = text
        .lines()
        .find(|l| l.starts_with("ai_gateway_jobs_queued "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!((4.0..=5.0).contains(&queued), "{queued}");
}
