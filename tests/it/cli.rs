//! The command line: `check`, `hash-key`, `--version`, `--help`, `mock-server`, and a serve that
//! refuses a bad file before listening.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::command;
use crate::support::*;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = basic_config(None);
    let p = write(
        &dir,
        "good.json",
        &serde_json::to_string_pretty(&cfg).unwrap(),
    );
    let out = command()
        .arg("check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `--config` also works before the subcommand.
    let out = command()
        .arg("--config")
        .arg(&p)
        .arg("check")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_rejects_bad_files_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut unknown = basic_config(None);
    unknown["modelz"] = json!([]);
    let cases = [
        ("syntax.json", "{ \"providers\": [ ".to_owned(), None),
        (
            "unknown-key.json",
            serde_json::to_string(&unknown).unwrap(),
            Some("modelz"),
        ),
        (
            "bad-duration.json",
            json!({"server": {"request_timeout": "ten seconds"}}).to_string(),
            Some("ten seconds"),
        ),
    ];
    for (name, text, needle) in cases {
        let p = write(&dir, name, &text);
        let out = command()
            .arg("check")
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{name} passed check: {stdout}");
        assert!(!stderr.trim().is_empty(), "{name}: no error printed");
        if let Some(n) = needle {
            assert!(
                stderr.contains(n) || stdout.contains(n),
                "{name}: the error does not name {n:?}: {stderr}"
            );
        }
    }
    // A missing file.
    let out = command()
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("absent.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}

#[test]
fn hash_key_prints_sha256_hex() {
    let out = command().args(["hash-key", "abc"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn version_and_help() {
    let out = command().arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains("ai-gateway"), "{v}");
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");

    let out = command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    for word in ["check", "hash-key", "mock-server", "--config"] {
        assert!(h.contains(word), "--help does not mention {word}: {h}");
    }
}

#[test]
fn serve_with_bad_file_exits_non_zero_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"listen": format!("127.0.0.1:{port}")});
    cfg["providers"][0]["type"] = json!("opnai");
    let p = write(&dir, "bad.json", &cfg.to_string());
    let out = command()
        .arg("--config")
        .arg(&p)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opnai"), "{stderr}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Kills the child (by pid) when dropped, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ai-gateway mock-server` on a free port, until dropped; its base URL.
async fn mock_server() -> (KillOnDrop, String) {
    let port = free_port();
    let child = KillOnDrop(
        command()
            .args(["mock-server", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    let mut up = false;
    for _ in 0..500 {
        if c.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "mock-server did not start");
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_speaks_openai() {
    let (_child, base) = mock_server().await;
    let c = client();
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat_body("anything", "echo this"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "echo this"
    );
    let r = c
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"model": "e", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["data"].as_array().unwrap().len(), 2);
}

/// The bench's translated scenarios: a gateway whose providers are `type: gemini` and
/// `type: bedrock` (signed with dummy credentials) pointed at the mock server answers OpenAI
/// clients as the `openai` pass-through does: the same words, chunks and usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_speaks_gemini_and_bedrock_to_the_gateway() {
    let (_child, base) = mock_server().await;
    let cfg = config(
        vec![
            json!({"name": "oai", "type": "openai", "base_url": format!("{base}/v1"), "api_key": "sk-fake"}),
            json!({"name": "gem", "type": "gemini", "base_url": base, "api_key": "gemini-fake"}),
            json!({"name": "aws", "type": "bedrock", "base_url": base, "region": "us-east-1",
                "aws_access_key_id": "AKIDBENCHFAKE", "aws_secret_access_key": "bench-fake-secret"}),
        ],
        vec![
            model("pass", "oai", "gpt-4o-mini"),
            model("gemini", "gem", "gemini-2.5-flash"),
            model("bedrock", "aws", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ],
    );
    let gw = Gateway::start(cfg).await;
    let text = "Please write one short friendly sentence";
    let messages = json!([{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": text}]);
    let mut want = None;
    for m in ["pass", "gemini", "bedrock"] {
        let r = gw
            .post(
                "/v1/chat/completions",
                Some(GW_KEY),
                &json!({"model": m, "messages": messages}),
            )
            .await;
        assert_eq!(r.status(), 200, "{m}");
        let v = json_of(r).await;
        assert_eq!(v["choices"][0]["message"]["content"], text, "{m}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{m}");
        assert_eq!(v["usage"]["prompt_tokens"], 11, "{m}: 5 + 6 words");
        assert_eq!(v["usage"]["completion_tokens"], 6, "{m}");

        let r = gw
            .post(
                "/v1/chat/completions",
                Some(GW_KEY),
                &json!({"model": m, "messages": messages, "stream": true,
                    "stream_options": {"include_usage": true}}),
            )
            .await;
        assert_eq!(r.status(), 200, "{m}");
        let datas = sse_data(&r.text().await.unwrap());
        assert_eq!(joined_content(&datas), text, "{m}");
        let content_chunks = datas
            .iter()
            .filter(|d| d.contains("\"content\":\"") && !d.contains("\"content\":\"\""))
            .count();
        assert_eq!(content_chunks, 6, "{m}: one chunk per word");
        let usage: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
        let usage = (
            usage["usage"]["prompt_tokens"].clone(),
            usage["usage"]["completion_tokens"].clone(),
        );
        assert_eq!(*want.get_or_insert(usage.clone()), usage, "{m}");
        assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{m}");
    }
}

/// The full example in `examples/gateway.yaml` (the contract's example) validates.
#[test]
fn the_shipped_example_validates() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.yaml");
    let out = command()
        .arg("check")
        .arg("--config")
        .arg(example)
        .env("OPENAI_API_KEY", "sk-example")
        .env("AZURE_OPENAI_API_KEY", "example")
        .env("ANTHROPIC_API_KEY", "sk-ant-example")
        .env("GATEWAY_MASTER_KEY", "master-example")
        .env("DEMO_KEY", "sk-demo-example")
        .env("WEBHOOK_SECRET", "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout {stdout}\nstderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("sk-example") && !stdout.contains("master-example"),
        "no secret printed: {stdout}"
    );
}

/// YAML errors name the key's path and line, with a did-you-mean hint.
#[test]
fn yaml_errors_name_path_line_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "bad.yaml",
        "providers:\n  - name: openai\n    type: openai\nmodels:\n  - name: m\n    deployments:\n      - provider: opnai\n        model: x\n",
    );
    let out = command()
        .arg("check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models[0].deployments[0].provider")
            && err.contains("line 7")
            && err.contains("did you mean \"openai\""),
        "{err}"
    );
}
