"""The official `openai` SDK's `client.responses` on two gateway replicas sharing a real Redis: a
conversation whose first turn (a function call, on an OpenAI-type provider) is answered by one
replica and whose second (the function's output, with `previous_response_id`, on an
Anthropic-type provider) by the other; the stored response read and deleted across replicas."""

import shutil
import subprocess
import time

import openai
import pytest

import tool_upstream
from conftest import ALL_KEY, _free_port, _stop, gateway
from tool_upstream import RESPONSES_TOOLS, last_request


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (scripts/test.sh installs it)"
    port = _free_port()
    tmp = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run([shutil.which("redis-cli") or "redis-cli", "-p", str(port), "ping"],
                             capture_output=True, text=True).stdout.strip() != "PONG":
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, redis_url):
    server, up = tool_upstream.start()
    configs = []
    for _ in range(2):
        cfg = tool_upstream.gateway_config(up, _free_port())
        cfg["state"] = {"redis_url": redis_url}
        configs.append(cfg)
    try:
        with gateway(configs[0], tmp_path_factory.mktemp("one")) as one, \
                gateway(configs[1], tmp_path_factory.mktemp("two")) as two:
            yield [openai.OpenAI(api_key=ALL_KEY, base_url=f"{u}/v1", max_retries=0, timeout=30) for u in (one, two)]
    finally:
        server.shutdown()
        server.server_close()


def test_previous_response_id_across_providers_and_replicas(replicas):
    one, two = replicas
    first = one.responses.create(model="gpt-tools", input="weather in Paris?", tools=RESPONSES_TOOLS)
    [call] = [i for i in first.output if i.type == "function_call"]
    assert call.call_id == "call_RoundTrip42"
    # The other replica finds the first turn in Redis and sends the conversation to Anthropic.
    second = two.responses.create(
        model="claude-tools", previous_response_id=first.id, tools=RESPONSES_TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "sunny"
    sent = last_request()
    assert sent["messages"][0] == {"role": "user", "content": "weather in Paris?"}
    assert sent["messages"][1]["content"][0] == {
        "type": "tool_use", "id": "toolu_RoundTrip42", "name": "get_weather", "input": {"city": "Paris"}}
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "toolu_RoundTrip42"
    # Stored on one replica, read and deleted on the other.
    assert two.responses.retrieve(first.id).output[0].call_id == "call_RoundTrip42"
    assert [i.type for i in two.responses.input_items.list(second.id).data] == ["function_call_output"]
    one.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        two.responses.retrieve(second.id)
