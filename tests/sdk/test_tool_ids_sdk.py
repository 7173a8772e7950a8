"""Tool-call ids across the translation, with the official SDKs against fake upstreams in this
process (one OpenAI-format, one Anthropic-format) that call a tool, then answer the tool's result.
Each side sees ids in its own style, and each upstream gets its own ids back in the next turn:
OpenAI's `call_X` is `toolu_X` to the `anthropic` SDK; Anthropic's `toolu_Y` is `call_Y` to the
`openai` SDK (chat completions and the Responses API); an id with characters Anthropic refuses
(Kimi's `functions.get_weather:0`) reaches the Anthropic client valid and the upstream unchanged."""

import json

import anthropic
import openai
import pytest

import tool_upstream
from conftest import ALL_KEY, _free_port, gateway
from tool_upstream import ANTHROPIC_ID, ANTHROPIC_TOOLS, IDS, OPENAI_TOOLS, RESPONSES_TOOLS, UPSTREAM, last_request


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    server, up = tool_upstream.start()
    try:
        with gateway(tool_upstream.gateway_config(up, _free_port()), tmp_path_factory.mktemp("tool-ids")) as url:
            yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", ["gpt-tools", "kimi-tools"])
def test_anthropic_sdk_tool_round_trip_through_an_openai_upstream(gw, model, stream):
    client = anthropic.Anthropic(api_key=ALL_KEY, base_url=gw, max_retries=0, timeout=30)
    question = {"role": "user", "content": "weather in Paris?"}
    ask = dict(model=model, max_tokens=64, tools=ANTHROPIC_TOOLS, messages=[question])
    if stream:
        with client.messages.stream(**ask) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(**ask)
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    upstream_id = IDS[UPSTREAM[model]]
    assert ANTHROPIC_ID.match(use.id), use.id
    if upstream_id.startswith("call_"):
        assert use.id == "toolu_" + upstream_id[len("call_"):]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}

    second = client.messages.create(model=model, max_tokens=64, tools=ANTHROPIC_TOOLS, messages=[
        question,
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ])
    assert second.content[0].text == "sunny"
    sent = last_request()["messages"]
    assert sent[1]["tool_calls"][0]["id"] == upstream_id
    assert sent[2] == {"role": "tool", "tool_call_id": upstream_id, "content": "sunny"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_sdk_tool_round_trip_through_an_anthropic_upstream(gw, stream):
    client = openai.OpenAI(api_key=ALL_KEY, base_url=f"{gw}/v1", max_retries=0, timeout=30)
    question = {"role": "user", "content": "weather in Paris?"}
    ask = dict(model="claude-tools", tools=OPENAI_TOOLS, messages=[question])
    if stream:
        calls = {}
        for chunk in client.chat.completions.create(stream=True, **ask):
            for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                calls[tc.index]["id"] = tc.id or calls[tc.index]["id"]
                calls[tc.index]["name"] = tc.function.name or calls[tc.index]["name"]
                calls[tc.index]["arguments"] += tc.function.arguments or ""
        [call] = calls.values()
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        [tc] = client.chat.completions.create(**ask).choices[0].message.tool_calls
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
    assert call_id == "call_01RoundTrip42"
    assert json.loads(arguments) == {"city": "Paris"}

    second = client.chat.completions.create(model="claude-tools", tools=OPENAI_TOOLS, messages=[
        question,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ])
    assert second.choices[0].message.content == "sunny"
    sent = last_request()["messages"]
    assert sent[1]["content"][0]["id"] == "toolu_01RoundTrip42"
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_01RoundTrip42"


def test_responses_function_call_round_trip_through_an_anthropic_upstream(gw):
    client = openai.OpenAI(api_key=ALL_KEY, base_url=f"{gw}/v1", max_retries=0, timeout=30)
    first = client.responses.create(model="claude-tools", input="weather in Paris?", tools=RESPONSES_TOOLS)
    [call] = [i for i in first.output if i.type == "function_call"]
    assert call.call_id == "call_01RoundTrip42"
    assert call.id.startswith("fc_")
    second = client.responses.create(
        model="claude-tools", previous_response_id=first.id, tools=RESPONSES_TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "sunny"
    sent = last_request()["messages"]
    assert sent[1]["content"][0]["id"] == "toolu_01RoundTrip42"
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_01RoundTrip42"
