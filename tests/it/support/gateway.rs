//! `Gateway`: the real `ai-gateway` binary, started on a free port with a JSON configuration
//! written to a temporary file; its stdout and stderr are captured for log assertions. The child
//! is killed (by pid) when the `Gateway` is dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

use super::{client, client_builder, free_port, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_ai-gateway");

/// A configuration to start with: JSON built by a test, or a YAML file's text as written.
#[derive(Clone)]
enum Source {
    Json(Value),
    /// Written as is, with a `server.listen` section appended (so it must have no `server:`).
    Yaml(String),
    /// No file at all: the built-in default, listening where `AI_GATEWAY_LISTEN` says
    /// (`0.0.0.0:PORT`, as the image runs it).
    BuiltinDefault,
}

pub struct Gateway {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    logs: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Capture a child's pipe into `logs`, line by line.
fn capture(pipe: impl Read + Send + 'static, logs: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => logs
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line)),
            }
        }
    });
}

/// A command for the binary with a clean, deterministic environment.
pub fn command() -> Command {
    clean(Command::new(BIN))
}

fn clean(mut c: Command) -> Command {
    for v in [
        "RUST_LOG",
        "AI_GATEWAY_CONFIG",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "AI_GATEWAY_LISTEN",
        "GATEWAY_MASTER_KEY",
    ] {
        c.env_remove(v);
    }
    c.env("NO_PROXY", "127.0.0.1,localhost");
    c
}

impl Gateway {
    /// Start with `config` (its `server.listen` is set to a free port).
    pub async fn start(config: Value) -> Self {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: Value, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(config, env, &[]).await
    }

    /// Start `ai-gateway worker` (job workers only, with /health, /ready, /metrics).
    pub async fn start_worker(config: Value) -> Self {
        Self::start_with_args(config, &[], &["worker"]).await
    }

    pub async fn start_with_args(config: Value, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_inner(Source::Json(config), env, args, &[]).await
    }

    /// Start on a YAML configuration text, kept as written (it must have no `server:` section:
    /// one with the free port is appended).
    pub async fn start_yaml(yaml: &str, env: &[(&str, &str)]) -> Self {
        assert!(
            !yaml.lines().any(|l| l.starts_with("server:")),
            "start_yaml adds the server section itself"
        );
        Self::start_inner(Source::Yaml(yaml.to_owned()), env, &[], &[]).await
    }

    /// Start `ai-gateway serve` as the container image does: no configuration file (none given,
    /// none in the working directory), `AI_GATEWAY_LISTEN=0.0.0.0:PORT`, plus `env`.
    pub async fn start_builtin_default(env: &[(&str, &str)]) -> Self {
        Self::start_inner(Source::BuiltinDefault, env, &["serve"], &[]).await
    }

    /// Start `ai-gateway serve` under `taskset -c 0`: the process sees one CPU.
    pub async fn start_on_one_cpu(config: Value) -> Self {
        Self::start_inner(Source::Json(config), &[], &[], &["taskset", "-c", "0"]).await
    }

    /// Start `ai-gateway serve` under `prlimit`: at most `files` open descriptors (soft and hard,
    /// so the gateway cannot raise it).
    pub async fn start_with_open_files(config: Value, files: u32) -> Self {
        let limit = format!("--nofile={files}:{files}");
        Self::start_inner(Source::Json(config), &[], &[], &["prlimit", &limit, "--"]).await
    }

    /// `wrapper`: a command that execs the binary (its pid stays the gateway's), or nothing.
    async fn start_inner(
        config: Source,
        env: &[(&str, &str)],
        args: &[&str],
        wrapper: &[&str],
    ) -> Self {
        let mut last_logs = String::new();
        for _ in 0..3 {
            match Self::try_start(config.clone(), env, args, wrapper).await {
                Ok(g) => return g,
                Err(logs) if logs.contains("cannot listen") => last_logs = logs,
                Err(logs) => panic!("the gateway did not start; its output:\n{logs}"),
            }
        }
        panic!("the gateway could not get a port; its output:\n{last_logs}")
    }

    async fn try_start(
        config: Source,
        env: &[(&str, &str)],
        args: &[&str],
        wrapper: &[&str],
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let builtin = matches!(config, Source::BuiltinDefault);
        let (config_path, text) = match config {
            Source::Json(mut config) => {
                if !config["server"].is_object() {
                    config["server"] = serde_json::json!({});
                }
                config["server"]["listen"] = Value::String(format!("127.0.0.1:{port}"));
                let text = serde_json::to_vec_pretty(&config).unwrap();
                (dir.path().join("gateway.json"), text)
            }
            Source::Yaml(yaml) => {
                let text = format!("{yaml}\nserver:\n  listen: \"127.0.0.1:{port}\"\n");
                (dir.path().join("gateway.yaml"), text.into_bytes())
            }
            Source::BuiltinDefault => (dir.path().join("no-config"), Vec::new()),
        };
        if !builtin {
            std::fs::write(&config_path, text).unwrap();
        }
        let mut cmd = match wrapper.split_first() {
            // taskset and prlimit exec the binary: the child's pid stays the gateway's.
            Some((program, wrapper_args)) => {
                let mut c = clean(Command::new(program));
                c.args(wrapper_args).arg(BIN);
                c
            }
            None => command(),
        };
        cmd.args(args);
        if builtin {
            cmd.env("AI_GATEWAY_LISTEN", format!("0.0.0.0:{port}"));
        } else {
            cmd.arg("--config").arg(&config_path);
        }
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Everything that could panic is built before the child exists, so a child is always
        // owned by a `Gateway` (whose Drop kills it).
        let client = client();
        let probe = client_builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut child = cmd.spawn().expect("spawn ai-gateway");
        let logs = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().unwrap(), logs.clone());
        capture(child.stderr.take().unwrap(), logs.clone());
        let mut g = Self {
            child,
            port,
            _dir: dir,
            config_path,
            logs,
            client,
        };
        let health = g.url("/health");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = g.child.try_wait() {
                // Give the reader threads a moment to drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("exited with {status}\n{}", g.logs()));
            }
            if let Ok(r) = probe.get(&health).send().await
                && r.status() == 200
            {
                return Ok(g);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no 200 on /health within 30s\n{}", g.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `127.0.0.1:PORT`, for raw TCP clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A client with no proxy and a generous overall timeout.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (e.g. `Signal::SIGTERM`, `Signal::SIGHUP`) to the process, by pid.
    pub fn send_signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
    }

    /// Wait for the process to exit; panics (with the logs) past `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not exit within {timeout:?}; its output:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until the logs contain `needle` (bounded).
    pub async fn wait_log(&self, needle: &str) {
        let ok = wait_until(Duration::from_secs(10), || self.logs().contains(needle)).await;
        assert!(ok, "the logs never contained {needle:?}:\n{}", self.logs());
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replace the configuration file (keeping this gateway's listen address).
    pub fn write_config(&self, mut config: Value) {
        if !config["server"].is_object() {
            config["server"] = serde_json::json!({});
        }
        config["server"]["listen"] = Value::String(format!("127.0.0.1:{}", self.port));
        std::fs::write(
            &self.config_path,
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    /// POST a JSON body with the given gateway key (Bearer).
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut rb = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.expect("request to the gateway")
    }

    /// POST a one-message chat completion for `model` with the test key (`GW_KEY`).
    pub async fn chat(&self, model: &str, text: &str) -> reqwest::Response {
        let body = super::chat_body(model, text);
        self.post("/v1/chat/completions", Some(super::GW_KEY), &body)
            .await
    }

    /// POST raw bytes (content-type JSON) with the given gateway key (Bearer).
    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut rb = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.expect("request to the gateway")
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut rb = self.client.get(self.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.expect("request to the gateway")
    }
}
