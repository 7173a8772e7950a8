//! No secret in logs: gateway keys, the master key and the provider key never appear in what the
//! process prints, whatever happened (auth failures, successes, admin calls, upstream errors that
//! echo the provider key), even at debug level.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_in_logs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = basic_config(Some(&up));
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    cfg["resilience"]["retries"] = json!(1);
    let wrong = "sk-gw-wrong-key-999999";
    for (label, env) in [("info", None), ("debug", Some("debug"))] {
        let envs: Vec<(&str, &str)> = env.map(|l| vec![("RUST_LOG", l)]).unwrap_or_default();
        let gw = Gateway::start_with_env(cfg.clone(), &envs).await;
        let c = gw.client();
        // Successes with each header form.
        for (h, v) in [
            ("authorization", format!("Bearer {GW_KEY}")),
            ("x-api-key", GW_KEY.to_owned()),
            ("api-key", GW_KEY.to_owned()),
        ] {
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .header(h, v)
                .json(&chat_body("gpt-test", "hi"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        // Auth failures, a permission failure, admin calls.
        for key in [wrong, MASTER_KEY] {
            let r = gw
                .post("/v1/chat/completions", Some(key), &chat_body("mock", "hi"))
                .await;
            assert_eq!(r.status(), 401);
        }
        let r = gw
            .post("/v1/messages", Some(wrong), &messages_body("mock", "hi"))
            .await;
        assert_eq!(r.status(), 401);
        let r = gw
            .post(
                "/v1/chat/completions",
                Some(GPT_KEY),
                &chat_body("mock", "hi"),
            )
            .await;
        assert_eq!(r.status(), 403);
        let r = gw.post("/admin/reload", Some(GW_KEY), &json!({})).await;
        assert_eq!(r.status(), 401);
        let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
        assert_eq!(r.status(), 200);
        // The upstream rejects the provider key and echoes it, then fails with it in a 500.
        let echo =
            json!({"error": {"message": format!("Incorrect API key provided: {PROVIDER_KEY}"),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
            .to_string();
        up.push([
            Fault::Status(401, echo.clone()),
            Fault::Status(500, echo.clone()),
            Fault::Status(500, echo),
        ]);
        let r = gw.chat("gpt-test", "hi").await;
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PROVIDER_KEY),
            "the answer leaked the provider key: {text}"
        );
        let last_id = format!("secrets-last-{label}");
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .header("x-request-id", &last_id)
            .json(&chat_body("gpt-test", "hi"))
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PROVIDER_KEY),
            "the answer leaked the provider key: {text}"
        );

        // The access log line of the last request is there, so all before it are too.
        gw.wait_log(&last_id).await;
        let logs = gw.logs();
        assert!(!logs.is_empty());
        for (what, secret) in [
            ("caller key", GW_KEY.to_owned()),
            ("gpt-only key", GPT_KEY.to_owned()),
            ("wrong key", wrong.to_owned()),
            ("master key", MASTER_KEY.to_owned()),
            ("provider key", PROVIDER_KEY.to_owned()),
            ("caller key digest", hex_sha256(GW_KEY)),
            ("master key digest", hex_sha256(MASTER_KEY)),
        ] {
            assert!(
                !logs.contains(&secret),
                "the {what} appears in the logs at {label} level:\n{logs}"
            );
        }
    }
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
