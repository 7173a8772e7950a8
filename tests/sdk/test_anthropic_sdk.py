"""The official `anthropic` SDK against the gateway."""

import anthropic
import pytest


MODELS = [
    pytest.param("claude-echo", id="claude-echo-passthrough"),
    pytest.param("gpt-echo", id="gpt-echo-translated"),
    pytest.param("mock", id="mock-translated"),
]


@pytest.mark.parametrize("model", MODELS)
def test_messages_create(anth, model):
    m = anth.messages.create(
        model=model,
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": "hello anthropic sdk"}],
    )
    assert m.type == "message"
    assert m.role == "assistant"
    assert "".join(b.text for b in m.content if b.type == "text") == "hello anthropic sdk"
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens > 0
    assert m.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream(anth, model):
    with anth.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "stream me through anthropic"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "stream me through anthropic"
    assert "".join(b.text for b in final.content if b.type == "text") == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_authentication_error(gateway_url):
    bad = anthropic.Anthropic(api_key="sk-ant-not-a-key", base_url=gateway_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(
            model="claude-echo", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_not_found_error(anth):
    with pytest.raises(anthropic.NotFoundError) as e:
        anth.messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"


def test_permission_denied_error(gateway_url):
    gpt_only = anthropic.Anthropic(api_key="sk-test-gpt", base_url=gateway_url, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        gpt_only.messages.create(
            model="claude-echo", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )


def test_a_stream_the_upstream_ends_early_raises(anth):
    """The upstream ends the stream cleanly mid-answer (no message_delta, no message_stop): the
    gateway ends it with Anthropic's error event, and the SDK raises."""
    with pytest.raises(anthropic.APIError) as e:
        with anth.messages.stream(
            model="claude-cut", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert "ended before the message was complete" in str(e.value)
