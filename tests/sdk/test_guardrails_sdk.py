"""Guardrails seen through the official `openai` and `anthropic` SDKs: masked values come back
restored (whole and streamed), a blocked input is the SDKs' BadRequestError with the
`content_filter` code, and the SDKs do not retry it. The gateway runs with its built-in mock
provider (which echoes the last user message) and its own configuration."""

import json
import subprocess

import anthropic
import openai
import pytest

from conftest import _clean_env, _free_port, _stop, _wait_health

KEY = "sk-test-guard"
EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def guarded_url(tmp_path_factory):
    import os

    binary = os.environ["AI_GATEWAY_BIN"]
    tmp = tmp_path_factory.mktemp("guarded")
    port = _free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "providers": [{"name": "local", "type": "mock"}],
        "models": [
            {"name": "mock", "deployments": [{"provider": "local", "model": "mock"}],
             "guardrails": ["no-falcon"]},
        ],
        "auth": {"keys": [{"name": "guard", "key": KEY, "models": ["*"]}]},
        "guardrails": [
            {"name": "pii", "type": "pii", "entities": ["email"], "action": "mask"},
            {"name": "no-falcon", "type": "regex", "patterns": ["(?i)project\\s+falcon"],
             "action": "block", "apply_to": ["input"], "models": []},
        ],
    }
    cfg = tmp / "gateway.json"
    cfg.write_text(json.dumps(config))
    log_path = str(tmp / "gateway.log")
    with open(log_path, "wb") as log:
        gw = subprocess.Popen(
            [binary, "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env=_clean_env(),
        )
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", gw, log_path, "ai-gateway")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(gw)


def test_openai_sdk_gets_its_values_back(guarded_url):
    client = openai.OpenAI(api_key=KEY, base_url=f"{guarded_url}/v1", max_retries=0)
    text = f"write to {EMAIL} today"
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=[{"role": "user", "content": text}]
    )
    assert raw.headers["x-gateway-guardrails"] == "pii=masked,no-falcon=passed"
    assert EMAIL in raw.parse().choices[0].message.content

    stream = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": text}], stream=True
    )
    joined = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert EMAIL in joined
    assert "[EMAIL_1]" not in joined


def test_a_block_is_a_bad_request_the_sdks_do_not_retry(guarded_url):
    client = openai.OpenAI(api_key=KEY, base_url=f"{guarded_url}/v1", max_retries=3)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "news on Project Falcon?"}]
        )
    assert e.value.code == "content_filter"
    assert "no-falcon" in e.value.message
    assert "Falcon" not in e.value.message
    assert e.value.response.headers.get("x-should-retry") == "false"

    anth = anthropic.Anthropic(api_key=KEY, base_url=guarded_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        anth.messages.create(
            model="mock",
            max_tokens=32,
            messages=[{"role": "user", "content": "news on project falcon?"}],
        )
    assert e.value.status_code == 400

    msg = anth.messages.create(
        model="mock", max_tokens=64, messages=[{"role": "user", "content": f"mail {EMAIL}"}]
    )
    assert EMAIL in msg.content[0].text
