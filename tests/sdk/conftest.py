"""Fixtures for the SDK tests: the real gateway binary, fronting its own mock-server.

Run:
    cargo build   # or use any built ai-gateway binary
    python3 -m venv /root/.cache/ai-gateway/venv
    /root/.cache/ai-gateway/venv/bin/pip install -r tests/sdk/requirements.txt
    AI_GATEWAY_BIN=$CARGO_TARGET_DIR/debug/ai-gateway /root/.cache/ai-gateway/venv/bin/pytest tests/sdk

The session starts `ai-gateway mock-server` on a free port and the gateway on another, with models
`mock` (built-in mock provider), `gpt-echo` (OpenAI-type provider -> the mock-server's /v1) and
`claude-echo` (Anthropic-type provider -> the mock-server's /v1/messages), and `gpt-cut` /
`claude-cut` (OpenAI- and Anthropic-type providers -> a fake upstream in this process that sends the
start of a streamed answer, then ends the body cleanly without its terminal event); key
`sk-test-sdk` may use every model, `sk-test-gpt` only `gpt-*`. Job webhooks are signed with `WEBHOOK_SECRET` and may go
to loopback (for test_webhooks.py). Everything started is stopped by pid at the end.
"""

import contextlib
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

ALL_KEY = "sk-test-sdk"
GPT_KEY = "sk-test-gpt"
UPSTREAM_KEY = "sk-upstream-mock-unused"
# A Standard Webhooks secret: "whsec_" + base64 of the HMAC key (here 32 bytes of 0x2a).
WEBHOOK_SECRET = "whsec_KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="

# Never send loopback traffic through a proxy.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


def pytest_configure(config):
    binary = os.environ.get("AI_GATEWAY_BIN")
    if not binary:
        raise pytest.UsageError(
            "AI_GATEWAY_BIN is not set: point it at a built ai-gateway binary, e.g. "
            "AI_GATEWAY_BIN=$CARGO_TARGET_DIR/debug/ai-gateway pytest tests/sdk"
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise pytest.UsageError(f"AI_GATEWAY_BIN={binary!r} is not an executable file")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_health(url: str, proc: subprocess.Popen, log_path: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{f.read()}")
        try:
            with _NO_PROXY.open(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        raise RuntimeError(f"{what} did not answer {url} within 30 s:\n{f.read()}")


def _clean_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        and k
        not in (
            "RUST_LOG",
            "AI_GATEWAY_CONFIG",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
        )
    }
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM to proc.pid
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def running(args: list, tmp, port: int, env: dict | None = None):
    """`ai-gateway ARGS`, started in the folder `tmp` (its log there), until the block ends; yields
    its base URL once it answers `/health` on `port`."""
    name = args[0] if args[0] != "--config" else "ai-gateway"
    log_path = str(tmp / f"{name}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([os.environ["AI_GATEWAY_BIN"], *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=tmp, env=env or _clean_env())
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", proc, log_path, name)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def gateway(config: dict, tmp):
    """The gateway on `config` (whose `server.listen` names its port), as [`running`]."""
    path = tmp / "gateway.json"  # JSON is valid YAML
    path.write_text(json.dumps(config, indent=2))
    port = int(config["server"]["listen"].rsplit(":", 1)[1])
    with running(["--config", str(path)], tmp, port) as url:
        yield url


class _CutUpstream(http.server.BaseHTTPRequestHandler):
    """Answers every streamed call with the start of an answer, then closes the connection: an
    HTTP/1.0 body ends there, cleanly, without `data: [DONE]` or `message_stop`."""

    protocol_version = "HTTP/1.0"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        model = body.get("model", "")
        if self.path.endswith("/chat/completions"):
            chunk = {
                "id": "chatcmpl-cut",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": "partial "}, "finish_reason": None}
                ],
            }
            frames = [f"data: {json.dumps(chunk)}\n\n"]
        else:
            events = [
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": "msg_cut",
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": 1, "output_tokens": 1},
                        },
                    },
                ),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial "}},
                ),
            ]
            frames = [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]
        for f in frames:
            self.wfile.write(f.encode())
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def cut_upstream_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory, cut_upstream_port):
    binary = os.environ["AI_GATEWAY_BIN"]
    tmp = tmp_path_factory.mktemp("gateway")
    env = _clean_env()
    started = []
    try:
        mock_port = _free_port()
        mock_log = str(tmp / "mock-server.log")
        with open(mock_log, "wb") as log:
            mock = subprocess.Popen(
                [binary, "mock-server", "--listen", f"127.0.0.1:{mock_port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
            )
        started.append(mock)
        _wait_health(f"http://127.0.0.1:{mock_port}/health", mock, mock_log, "mock-server")

        gw_port = _free_port()
        config = {
            "server": {"listen": f"127.0.0.1:{gw_port}"},
            "providers": [
                {"name": "local", "type": "mock"},
                {
                    "name": "echo-openai",
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{mock_port}/v1",
                    "api_key": UPSTREAM_KEY,
                },
                {
                    "name": "echo-anthropic",
                    "type": "anthropic",
                    "base_url": f"http://127.0.0.1:{mock_port}",
                    "api_key": UPSTREAM_KEY,
                },
                {
                    "name": "cut-openai",
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{cut_upstream_port}/v1",
                    "api_key": UPSTREAM_KEY,
                },
                {
                    "name": "cut-anthropic",
                    "type": "anthropic",
                    "base_url": f"http://127.0.0.1:{cut_upstream_port}",
                    "api_key": UPSTREAM_KEY,
                },
            ],
            "models": [
                {"name": "mock", "deployments": [{"provider": "local", "model": "mock"}]},
                {"name": "gpt-echo", "deployments": [{"provider": "echo-openai", "model": "echo"}]},
                {
                    "name": "claude-echo",
                    "deployments": [{"provider": "echo-anthropic", "model": "claude-echo-upstream"}],
                },
                {"name": "gpt-cut", "deployments": [{"provider": "cut-openai", "model": "cut"}]},
                {"name": "claude-cut", "deployments": [{"provider": "cut-anthropic", "model": "cut"}]},
            ],
            "auth": {
                "keys": [
                    {"name": "sdk-all", "key": ALL_KEY, "models": ["*"]},
                    {"name": "sdk-gpt", "key": GPT_KEY, "models": ["gpt-*"]},
                ]
            },
            "resilience": {"retries": 1, "backoff_initial": "10ms", "backoff_max": "50ms"},
            # Webhooks to the tests' own listener on loopback (test_webhooks.py).
            "jobs": {
                "webhook": {
                    "secret": WEBHOOK_SECRET,
                    "allow_private_networks": True,
                    "timeout": "5s",
                    "backoff_initial": "100ms",
                    "backoff_max": "1s",
                }
            },
        }
        cfg_path = tmp / "gateway.json"  # JSON is valid YAML
        cfg_path.write_text(json.dumps(config, indent=2))
        gw_log = str(tmp / "gateway.log")
        with open(gw_log, "wb") as log:
            gw = subprocess.Popen(
                [binary, "--config", str(cfg_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
            )
        started.append(gw)
        _wait_health(f"http://127.0.0.1:{gw_port}/health", gw, gw_log, "ai-gateway")
        yield f"http://127.0.0.1:{gw_port}"
    finally:
        for proc in reversed(started):
            _stop(proc)


@pytest.fixture
def oai(gateway_url):
    import openai

    return openai.OpenAI(api_key=ALL_KEY, base_url=f"{gateway_url}/v1", max_retries=0, timeout=30)


@pytest.fixture
def oai_gpt_only(gateway_url):
    import openai

    return openai.OpenAI(api_key=GPT_KEY, base_url=f"{gateway_url}/v1", max_retries=0, timeout=30)


@pytest.fixture
def anth(gateway_url):
    import anthropic

    return anthropic.Anthropic(api_key=ALL_KEY, base_url=gateway_url, max_retries=0, timeout=30)
