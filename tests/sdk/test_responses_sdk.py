"""The official `openai` SDK's `client.responses` against the gateway: plain and streamed answers
from an OpenAI-type and an Anthropic-type upstream, function calls and their outputs, a
conversation continued with `previous_response_id` on another provider, stored responses
(retrieve, input items, delete) and another key's 404."""

import openai
import pytest

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "required": ["input"],
        },
    }
]


@pytest.mark.parametrize("model", ["mock", "gpt-echo", "claude-echo"])
def test_create_plain(oai, model):
    r = oai.responses.create(model=model, instructions="be brief", input="hello responses")
    assert r.object == "response"
    assert r.status == "completed"
    assert r.model == model
    assert r.output_text == "hello responses"
    assert r.id.startswith("resp_")
    assert r.usage is not None and r.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt-echo", "claude-echo"])
def test_stream_and_final_response(oai, model):
    deltas = []
    with oai.responses.stream(model=model, input="streamed through the sdk") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed through the sdk"
    assert final.output_text == "streamed through the sdk"
    assert final.status == "completed"
    # The streamed Response is stored as it was sent.
    assert oai.responses.retrieve(final.id).output_text == "streamed through the sdk"


@pytest.mark.parametrize("first,second", [("gpt-echo", "claude-echo"), ("claude-echo", "gpt-echo")])
def test_function_call_then_output_on_another_provider(oai, first, second):
    r1 = oai.responses.create(
        model=first, input="weather in Paris", tools=TOOLS, tool_choice="required"
    )
    calls = [i for i in r1.output if i.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    r2 = oai.responses.create(
        model=second,
        previous_response_id=r1.id,
        tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
    )
    assert r2.status == "completed"
    assert r2.previous_response_id == r1.id
    # The third turn sees the whole conversation (the echo answers the last user text).
    r3 = oai.responses.create(model=first, previous_response_id=r2.id, input="and tomorrow?")
    assert r3.output_text == "and tomorrow?"


def test_retrieve_input_items_and_delete(oai, oai_gpt_only):
    r = oai.responses.create(
        model="gpt-echo",
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    )
    got = oai.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == "three"
    page = oai.responses.input_items.list(r.id, limit=2)
    assert [i.role for i in page.data] == ["user", "assistant"]
    assert page.has_more
    every = list(oai.responses.input_items.list(r.id, limit=2, order="asc"))
    assert [i.content[0].text for i in every] == ["one", "two", "three"]
    # Another key: 404, for retrieval and as previous_response_id.
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.responses.create(model="gpt-echo", previous_response_id=r.id, input="x")
    oai.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)


def test_unknown_previous_response_is_404(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.responses.create(model="mock", previous_response_id="resp_missing", input="x")
    assert "resp_missing" in str(e.value)


def test_cut_stream_fails_instead_of_completing(oai):
    with pytest.raises(openai.APIError):
        with oai.responses.stream(model="gpt-cut", input="cut short") as stream:
            for _ in stream:
                pass
            stream.get_final_response()
