"""The Kubernetes ConfigMap's configuration, run: the real binary started on it with the
Secret's variables and the Deployment's environment, as the pod starts it (only the listen address
and data_dir moved to a free loopback port and a temporary directory), with a real redis-server
and nats-server for the overlay. Checks /ready, /health, a chat completion with the Secret's
client key, a refusal without it, and a clean exit on SIGTERM within the shutdown grace."""

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

import kubernetes_checks as k8s
from deploy_common import duration_seconds

NATS_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args[0]} exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{proc.args[0]} did not listen on {port} within {seconds}s")


def request(port: int, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:  # only the processes this test started, by their handle
        if p.poll() is None:
            p.kill()
            p.wait()


def start(processes: list, log: Path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    """Output to a file (a pipe nobody reads could fill and stall the process)."""
    with log.open("w") as out:
        p = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    processes.append(p)
    return p


def pod_config_and_env(objs: list[dict]) -> tuple[dict, dict]:
    dep = k8s.find(objs, "Deployment", "ai-gateway")[0]
    c = k8s.gateway_container(dep)
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    text = k8s.configmap_file(objs, c, dep["spec"]["template"]["spec"], env["AI_GATEWAY_CONFIG"])
    return yaml.safe_load(text), env


@pytest.mark.parametrize("kustomization", k8s.KUSTOMIZATIONS)
def test_configmap_configuration_serves(kustomization, binary, processes, tmp_path):
    cfg, env = pod_config_and_env(k8s.render(kustomization))
    port = free_port()
    cfg["server"]["listen"] = f"127.0.0.1:{port}"
    cfg["state"]["data_dir"] = str(tmp_path / "data")
    expect = {"redis": "unused", "nats": "unused"}
    if "REDIS_URL" in env:
        redis_port = free_port()
        redis = start(processes, tmp_path / "redis.log", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_for_port(redis_port, redis)
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
        expect["redis"] = "ok"
    if "NATS_URL" in env:
        nats_port = free_port()
        nats_bin = next((p for p in NATS_PATHS if Path(p).exists()), shutil.which("nats-server"))
        assert nats_bin, "nats-server is not installed (Debian package nats-server)"
        nats = start(processes, tmp_path / "nats.log", [nats_bin, "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(tmp_path / "nats")])
        wait_for_port(nats_port, nats)
        env["NATS_URL"] = f"nats://127.0.0.1:{nats_port}"
        expect["nats"] = "ok"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env["AI_GATEWAY_CONFIG"] = str(config)
    # Exactly the pod's variables: the Secret's and the Deployment's.
    gateway = start(processes, tmp_path / "gateway.log", [str(binary), "serve"], env={**k8s.SECRET_ENV, **env, "PATH": "/usr/bin:/bin"})
    wait_for_port(port, gateway)

    deadline = time.monotonic() + 15
    while True:
        status, ready = request(port, "/ready")
        if (status, ready.get("redis"), ready.get("nats")) == (200, expect["redis"], expect["nats"]):
            break
        assert time.monotonic() < deadline, (status, ready, expect)
        time.sleep(0.1)
    assert ready["status"] == "ok"
    assert request(port, "/health")[0] == 200

    chat = {"model": "mock", "messages": [{"role": "user", "content": "hello from the pod"}]}
    status, answer = request(port, "/v1/chat/completions", chat, key=k8s.SECRET_ENV["GATEWAY_API_KEY"])
    assert status == 200, answer
    assert "hello from the pod" in answer["choices"][0]["message"]["content"]
    assert request(port, "/v1/chat/completions", chat)[0] == 401
    assert request(port, "/v1/chat/completions", chat, key="sk-not-the-secret")[0] == 401

    grace = duration_seconds(cfg["server"]["shutdown_grace"])
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(timeout=grace + 10) == 0, (tmp_path / "gateway.log").read_text()[-2000:]
