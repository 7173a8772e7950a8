"""The official SDKs' smaller calls: `openai` `models.retrieve`, `anthropic` `models.list`,
`models.retrieve` and `messages.count_tokens`, and Anthropic's `request-id` header."""

import anthropic
import openai
import pytest


def test_openai_models_retrieve(oai, oai_gpt_only):
    m = oai.models.retrieve("gpt-echo")
    assert m.id == "gpt-echo" and m.object == "model" and m.owned_by == "ai-gateway"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.models.retrieve("claude-echo")


def test_anthropic_models_list_and_retrieve(anth):
    page = anth.models.list()
    ids = [m.id for m in page.data]
    assert "claude-echo" in ids and "gpt-echo" in ids
    assert all(m.type == "model" and m.display_name for m in page.data)
    m = anth.models.retrieve("claude-echo")
    assert m.id == "claude-echo" and m.created_at is not None
    with pytest.raises(anthropic.NotFoundError):
        anth.models.retrieve("no-such-model")


@pytest.mark.parametrize("model", ["mock", "gpt-echo", "claude-echo"])
def test_anthropic_count_tokens(anth, model):
    short = anth.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )
    long = anth.messages.count_tokens(
        model=model,
        system="You are a careful assistant.",
        messages=[{"role": "user", "content": "hello, here is a much longer question " * 5}],
    )
    assert 0 < short.input_tokens < long.input_tokens


def test_anthropic_request_id(anth):
    raw = anth.messages.with_raw_response.create(
        model="mock", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers.get("request-id")
    assert raw.request_id == raw.headers.get("request-id")
