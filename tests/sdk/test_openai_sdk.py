"""The official `openai` SDK against the gateway."""

import json

import openai
import pytest


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"input": {"type": "string"}},
                "required": ["input"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "other_tool", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_chat_plain_echoes_last_user_message(oai, model):
    r = oai.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "hello from the sdk"},
        ],
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "hello from the sdk"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_chat_streaming_deltas_join_to_echo(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream these five words"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream these five words"
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_chat_streaming_with_usage(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "count my words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "count my words please"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_tools_required_calls_first_tool(oai, model):
    r = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "weather in Paris"}],
        tools=TOOLS,
        tool_choice="required",
    )
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"input": "weather in Paris"}


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_tools_required_streaming(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "weather in Rome"}],
        tools=TOOLS,
        tool_choice="required",
        stream=True,
    )
    name, args = None, ""
    for c in stream:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            if tc.function and tc.function.name:
                name = tc.function.name
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
    assert name == "get_weather"
    assert json.loads(args) == {"input": "weather in Rome"}


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_embeddings_float(oai, model):
    r = oai.embeddings.create(model=model, input=["hello", "world"], encoding_format="float")
    assert len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert isinstance(d.embedding, list) and d.embedding
        assert all(isinstance(x, float) for x in d.embedding)
    single = oai.embeddings.create(model=model, input="hello", encoding_format="float")
    assert single.data[0].embedding == r.data[0].embedding


@pytest.mark.parametrize("model", ["mock", "gpt-echo"])
def test_embeddings_base64(oai, model):
    floats = oai.embeddings.create(model=model, input="hello", encoding_format="float")
    # Explicit base64: the SDK hands back the string as it came.
    b64 = oai.embeddings.create(model=model, input="hello", encoding_format="base64")
    assert isinstance(b64.data[0].embedding, str)
    # Default: the SDK asks for base64 and decodes it to floats itself.
    default = oai.embeddings.create(model=model, input="hello")
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)


def test_models_list(oai, oai_gpt_only):
    ids = {m.id for m in oai.models.list()}
    assert ids == {"mock", "gpt-echo", "claude-echo", "gpt-cut", "claude-cut"}
    for m in oai.models.list():
        assert m.object == "model"
        assert m.owned_by == "ai-gateway"
        assert isinstance(m.created, int)
    assert {m.id for m in oai_gpt_only.models.list()} == {"gpt-echo", "gpt-cut"}


def test_authentication_error(gateway_url):
    bad = openai.OpenAI(api_key="sk-not-a-key", base_url=f"{gateway_url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    assert e.value.type == "authentication_error"


def test_not_found_error(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"


def test_bad_request_error(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="mock", messages=[])
    assert e.value.status_code == 400
    assert e.value.type == "invalid_request_error"


def test_permission_denied_error(oai_gpt_only):
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai_gpt_only.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"


def test_raw_response_shows_request_id(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="mock", messages=[{"role": "user", "content": "raw"}]
    )
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-gateway-provider") == "local"
    assert raw.headers.get("x-gateway-attempts") == "1"
    assert raw.parse().choices[0].message.content == "raw"
    given = oai.chat.completions.with_raw_response.create(
        model="gpt-echo",
        messages=[{"role": "user", "content": "raw"}],
        extra_headers={"x-request-id": "sdk-request-0001"},
    )
    assert given.headers.get("x-request-id") == "sdk-request-0001"
    assert given.headers.get("x-gateway-deployment-model") == "echo"


def test_openai_sdk_to_claude_plain(oai):
    r = oai.chat.completions.create(
        model="claude-echo",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "to claude"}],
    )
    assert r.choices[0].message.content == "to claude"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0


def test_openai_sdk_to_claude_streaming_with_usage(oai):
    stream = oai.chat.completions.create(
        model="claude-echo",
        messages=[{"role": "user", "content": "claude streams this"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "claude streams this"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_a_stream_the_upstream_ends_early_raises(oai):
    """The upstream ends the stream cleanly mid-answer (no finish_reason, no [DONE]): the gateway
    ends it with an error event, and the SDK raises instead of returning a truncated answer."""
    stream = oai.chat.completions.create(
        model="gpt-cut", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "partial "
    assert "ended before the message was complete" in str(e.value)
