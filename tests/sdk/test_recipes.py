"""docs/recipes/*.md as written: each page's gateway configuration (its ```yaml block, or the
built-in default when it has none) is started with the real binary, with every OpenAI-type
provider's `base_url` pointed at `ai-gateway mock-server` and every `${VAR}` given a value; then
each `curl` line of its ```sh blocks is run by the shell, with `http://127.0.0.1:8080` replaced by
the gateway's address, and must answer 200 with a body of the right shape."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import _clean_env, _free_port, _stop, _wait_health

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (REPO / "docs/recipes").glob("*.md") if p.name != "README.md")
KEY = "sk-recipe-test"


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def curls(text: str) -> list[str]:
    return [line.strip() for b in blocks(text, "sh") for line in b.splitlines() if line.strip().startswith("curl ")]


def rewired(yaml_text: str, upstream: str) -> str:
    """The page's configuration with each OpenAI-type provider sent to the mock-server."""
    lines = [l for l in yaml_text.splitlines() if not l.strip().startswith("base_url:")]
    out = []
    for line in lines:
        out.append(line)
        m = re.match(r"^(\s*)type: openai\b", line)
        if m:
            out.append(f'{m.group(1)}base_url: "{upstream}/v1"')
    return "\n".join(out) + "\n"


def test_every_recipe_page_is_here():
    names = {p.stem for p in RECIPES}
    assert names == {
        "deepseek", "qwen", "ollama", "vllm", "claude-code", "codex-cli",
        "open-webui", "langchain", "llamaindex", "vercel-ai-sdk",
    }
    for p in RECIPES:
        assert curls(p.read_text()), f"{p.name}: no curl to check"
        assert len(blocks(p.read_text(), "yaml")) <= 1, f"{p.name}: one configuration per page"


@pytest.fixture(scope="module")
def mock_server(tmp_path_factory):
    binary = os.environ["AI_GATEWAY_BIN"]
    tmp = tmp_path_factory.mktemp("recipes-mock")
    port = _free_port()
    log = str(tmp / "mock.log")
    with open(log, "wb") as f:
        proc = subprocess.Popen([binary, "mock-server", "--listen", f"127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                cwd=tmp, env=_clean_env())
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", proc, log, "mock-server")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.mark.parametrize("page", RECIPES, ids=lambda p: p.stem)
def test_recipe_requests_answer(page, mock_server, tmp_path):
    text = page.read_text()
    binary = os.environ["AI_GATEWAY_BIN"]
    port = _free_port()
    env = _clean_env()
    env["AI_GATEWAY_KEY"] = KEY
    args = [binary]
    configs = blocks(text, "yaml")
    if configs:
        for var in re.findall(r"\$\{(\w+)", configs[0]):
            env.setdefault(var, KEY)
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(rewired(configs[0], mock_server) + f'server:\n  listen: "127.0.0.1:{port}"\n')
        args += ["--config", str(cfg)]
    else:
        env["AI_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    log = str(tmp_path / "gateway.log")
    with open(log, "wb") as f:
        gw = subprocess.Popen(args + ["serve"], stdin=subprocess.DEVNULL, stdout=f,
                              stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", gw, log, "gateway")
        for curl in curls(text):
            cmd = curl.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
            out = subprocess.run(["sh", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True,
                                 text=True, env=env, timeout=30)
            body, _, status = out.stdout.rpartition("\n")
            assert status == "200", f"{page.name}: {curl}\n{out.stdout}{out.stderr}"
            if '"stream":true' in curl:
                assert body.rstrip().endswith("data: [DONE]"), body
            elif "/v1/models" in curl:
                assert json.loads(body)["object"] == "list"
            elif "/v1/embeddings" in curl:
                assert json.loads(body)["data"][0]["object"] == "embedding"
            elif "/v1/messages" in curl:
                assert json.loads(body)["type"] == "message"
            else:
                assert json.loads(body)["choices"][0]["message"]["content"]
    finally:
        _stop(gw)
