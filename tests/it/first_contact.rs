//! First contact: the binary started exactly as the container image starts it (no configuration
//! file, `AI_GATEWAY_LISTEN=0.0.0.0:PORT`) answers the `mock` model; `ai-gateway healthcheck`
//! (what the image's HEALTHCHECK runs) against it running and stopped; the ready line's curl;
//! `GET /`; `GATEWAY_MASTER_KEY` in the built-in default; `ai-gateway config schema|reference`.

use std::process::Output;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::gateway::command;
use crate::support::*;

fn port_of(gw: &Gateway) -> String {
    gw.addr().rsplit(':').next().unwrap().to_owned()
}

/// `ai-gateway healthcheck ARGS` with `env`, from an empty directory (no ./gateway.yaml).
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut c = command();
    c.arg("healthcheck").args(args).current_dir(dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[tokio::test]
async fn starts_like_the_image_and_answers_mock() {
    let gw = Gateway::start_builtin_default(&[]).await;
    let r = gw.chat("mock", "hello from the image").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "hello from the image"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("no configuration file: running on the built-in default"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("listen 0.0.0.0:{}", port_of(&gw))),
        "{logs}"
    );
}

#[tokio::test]
async fn the_ready_line_carries_a_curl_that_works() {
    let gw = Gateway::start_builtin_default(&[]).await;
    gw.wait_log("ai-gateway ready").await;
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("ai-gateway ready"))
        .unwrap()
        .to_owned();
    // JSON logs (not a terminal): the message holds the curl after a newline.
    let msg = serde_json::from_str::<Value>(&line).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let curl = msg.lines().last().unwrap().trim();
    let expected = format!(
        "curl -s http://127.0.0.1:{}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"mock\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'",
        port_of(&gw)
    );
    assert_eq!(curl, expected);
    // Run it as a shell would.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(curl)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "hello");
}

#[tokio::test]
async fn healthcheck_against_a_running_and_a_stopped_gateway() {
    let mut gw = Gateway::start_builtin_default(&[]).await;
    let listen = format!("0.0.0.0:{}", port_of(&gw));
    // As the image's HEALTHCHECK runs it: the same environment, no flags.
    let out = healthcheck(&[], &[("AI_GATEWAY_LISTEN", listen.as_str())]);
    assert!(out.status.success(), "{out:?}");
    let health = gw.url("/health");
    assert!(healthcheck(&["--url", &health], &[]).status.success());
    // A non-2xx answer is unhealthy.
    let out = healthcheck(&["--url", &gw.url("/no-such-path")], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    gw.send_signal(Signal::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(30)).await.success());
    let out = healthcheck(&[], &[("AI_GATEWAY_LISTEN", listen.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{out:?}"
    );
    assert_eq!(healthcheck(&["--url", &health], &[]).status.code(), Some(1));
}

#[test]
fn healthcheck_refuses_what_it_cannot_check() {
    let out = healthcheck(&["--url", "https://127.0.0.1:1/health"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    let out = healthcheck(&[], &[("AI_GATEWAY_LISTEN", "not-an-address")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AI_GATEWAY_LISTEN"));
}

#[test]
fn a_bad_listen_variable_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = command()
        .arg("serve")
        .env("AI_GATEWAY_LISTEN", "8080")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AI_GATEWAY_LISTEN: \"8080\" is not an address"),
        "{err}"
    );
}

#[tokio::test]
async fn home_page_without_a_master_key() {
    let gw = Gateway::start_builtin_default(&[]).await;
    let r = gw.get("/", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();
    assert!(html.contains("<li><code>mock</code></li>"), "{html}");
    let base = format!("http://{}", gw.addr());
    assert!(
        html.contains(&format!("curl -s {base}/v1/chat/completions")),
        "{html}"
    );
    assert!(html.contains("GATEWAY_MASTER_KEY"), "{html}");
}

#[tokio::test]
async fn master_key_turns_on_the_admin_api_and_keys() {
    let gw = Gateway::start_builtin_default(&[("GATEWAY_MASTER_KEY", MASTER_KEY)]).await;
    // Calls need a key now; the master key makes one.
    assert_eq!(gw.chat("mock", "hi").await.status(), 401);
    let (_, key) = create_key(&gw, serde_json::json!({"name": "first"})).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(key.as_str()),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);
    // With a master key, `GET /` is the web console's door.
    let no_redirects = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects.get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/ui/");
    let html = gw.get("/", None).await.text().await.unwrap();
    assert!(
        html.contains("<label for=\"master-key\">Master key</label>"),
        "{html}"
    );
    let logs = gw.logs();
    assert!(!logs.contains(MASTER_KEY), "{logs}");
    assert!(logs.contains("Bearer $AI_GATEWAY_KEY"), "{logs}");
}

#[test]
fn config_schema_and_reference_print() {
    let out = command().args(["config", "schema"]).output().unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "ai-gateway configuration");
    assert!(schema["properties"]["server"].is_object());
    let out = command().args(["config", "reference"]).output().unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# Configuration reference"));
    assert!(md.contains("`server.listen`"));
}

/// The command lines of the ```sh blocks under `## {heading}` of a README.
fn quick_start_commands(file: &str, heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap();
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("{file}: no section {heading:?}"));
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out = Vec::new();
    let mut inside = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() && !l.starts_with('#') => out.push(l.to_owned()),
            _ => {}
        }
    }
    out
}

#[test]
fn the_two_readmes_give_the_same_commands() {
    let en = quick_start_commands("README.md", "Quick start");
    let zh = quick_start_commands("README.zh-CN.md", "快速开始");
    assert_eq!(en, zh);
    assert_eq!(en[..2], ["cargo run --release", "scripts/test.sh"]);
    assert!(en.contains(&"docker run --rm -p 8080:8080 ai-gateway".to_owned()));
}
