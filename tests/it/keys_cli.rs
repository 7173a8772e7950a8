//! `ai-gateway keys create|list|revoke` against a running gateway's admin API.

use std::time::Duration;

use crate::request_log::log_config;
use crate::support::gateway::command;
use crate::support::*;

/// Run `ai-gateway keys ARGS` with this environment: exit success, stdout, stderr.
async fn keys(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = command();
    cmd.arg("keys").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run ai-gateway keys"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn create_list_revoke_through_the_admin_api() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(log_config(&up)).await;
    let url = gw.url("");
    let env = [
        ("AI_GATEWAY_URL", url.as_str()),
        ("GATEWAY_MASTER_KEY", MASTER_KEY),
    ];

    let (ok, out, err) = keys(
        &[
            "create",
            "cli-app",
            "--models",
            "gpt-*,mock",
            "--rpm",
            "100",
        ],
        &env,
    )
    .await;
    assert!(ok, "stdout {out} stderr {err}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("export OPENAI_API_KEY="))
        .unwrap_or_else(|| panic!("no export line: {out}"))
        .to_owned();
    assert!(key.starts_with("sk-gw-"), "{out}");
    assert!(out.contains("shown this once"), "{out}");
    assert!(
        out.contains(&format!("export OPENAI_BASE_URL={url}/v1")),
        "{out}"
    );
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(&key),
            &chat_body("gpt-test", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);

    let (ok, out, err) = keys(&["list"], &env).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("cli-app"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("100") && line.contains("admin"), "{line}");
    assert!(!out.contains(&key), "the list never shows a key: {out}");
    assert!(out.contains("all"), "file keys are listed too: {out}");

    // A taken name: the gateway's message, non-zero exit, no key printed.
    let (ok, out, err) = keys(&["create", "cli-app"], &env).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("409"), "{err}");

    let (ok, out, err) = keys(&["revoke", "cli-app"], &env).await;
    assert!(ok, "{out} {err}");
    assert!(out.contains("Revoked key key_"), "{out}");
    // Revocation reaches every replica within 1 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = gw
            .post(
                "/v1/chat/completions",
                Some(&key),
                &chat_body("gpt-test", "hi"),
            )
            .await;
        if r.status() == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _, err) = keys(&["revoke", "cli-app"], &env).await;
    assert!(!ok && err.contains("no live key named"), "{err}");
    let (ok, _, err) = keys(&["revoke", "all"], &env).await;
    assert!(!ok && err.contains("configuration file"), "{err}");

    // A wrong master key (from the flag, which wins over the environment).
    let (ok, out, err) = keys(&["--master-key", "wrong", "list"], &env).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("master key"), "{err}");
    // Nothing listening.
    let (ok, _, err) = keys(&["--url", "http://127.0.0.1:9", "list"], &env).await;
    assert!(!ok && err.contains("cannot reach"), "{err}");
}
