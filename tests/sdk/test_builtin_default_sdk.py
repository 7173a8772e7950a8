"""Every client endpoint answers on the built-in default: the real binary started with no
configuration at all (the `mock` provider, model `mock`) and `ai-gateway mock-server`, each called
with the official `openai` SDK's own methods for the pass-through endpoints (completions, images,
speech, transcriptions, moderations; rerank, which the SDK lacks, with its HTTP client)."""

import json

import openai
import pytest

from conftest import _clean_env, _free_port, running

try:
    import httpx
except ImportError:  # the openai SDK's own HTTP client, packaged under this name
    import httpx2 as httpx

AUDIO = b"RIFF" + bytes(range(256)) * 40


@pytest.fixture(scope="module", params=["no-config", "mock-server"])
def base_url(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    port = _free_port()
    env = _clean_env()
    env.pop("GATEWAY_MASTER_KEY", None)
    if request.param == "no-config":
        env["AI_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
        args = ["serve"]
    else:
        args = ["mock-server", "--listen", f"127.0.0.1:{port}"]
    with running(args, tmp, port, env) as url:
        if request.param == "no-config":
            assert "built-in default" in (tmp / "serve.log").read_text()
        yield f"{url}/v1"


@pytest.fixture
def client(base_url):
    # No key is configured: any key (the SDK insists on one) is taken.
    return openai.OpenAI(api_key="sk-anything", base_url=base_url, max_retries=0, timeout=30)


def test_completions(client):
    c = client.completions.create(model="mock", prompt="say hi back", max_tokens=5)
    assert c.object == "text_completion"
    assert c.choices[0].text == "say hi back" and c.choices[0].finish_reason == "stop"
    assert c.usage.prompt_tokens == 3 and c.usage.total_tokens == 6
    chunks = list(client.completions.create(model="mock", prompt="one two three", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "one two three"
    with_usage = list(client.completions.create(model="mock", prompt="one two", stream=True,
                                                stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 2


def test_images(client):
    r = client.images.generate(model="mock", prompt="a grey dot", n=2)
    assert len(r.data) == 2
    import base64
    png = base64.b64decode(r.data[0].b64_json)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    r = client.images.generate(model="mock", prompt="a grey dot", response_format="url")
    assert r.data[0].url.startswith("data:image/png;base64,")


@pytest.mark.parametrize("fmt,ctype,magic", [("mp3", "audio/mpeg", b"\xff\xfb"), ("wav", "audio/wav", b"RIFF")])
def test_speech(client, tmp_path, fmt, ctype, magic):
    with client.audio.speech.with_streaming_response.create(
        model="mock", voice="alloy", input="hello there", response_format=fmt
    ) as r:
        assert r.headers["content-type"] == ctype
        out = tmp_path / f"speech.{fmt}"
        r.stream_to_file(out)
    audio = out.read_bytes()
    assert audio.startswith(magic) and len(audio) > 1000


def test_transcriptions(client, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(AUDIO)
    with clip.open("rb") as f:
        t = client.audio.transcriptions.create(model="mock", file=f)
    assert t.text == f"mock transcript of {len(AUDIO)} bytes"
    with clip.open("rb") as f:
        text = client.audio.transcriptions.create(model="mock", file=f, response_format="text")
    assert text.strip() == f"mock transcript of {len(AUDIO)} bytes"
    with clip.open("rb") as f:
        v = client.audio.transcriptions.create(model="mock", file=f, response_format="verbose_json")
    assert v.language == "english" and v.segments[0].text == v.text


def test_moderations(client):
    r = client.moderations.create(model="mock", input=["fine", "also fine"])
    assert len(r.results) == 2
    assert r.results[0].flagged is False
    assert r.results[0].categories.violence is False


def test_rerank(base_url):
    r = httpx.post(f"{base_url}/rerank", headers={"authorization": "Bearer sk-anything"}, timeout=30,
                   json={"model": "mock", "query": "red apples", "top_n": 2, "return_documents": True,
                         "documents": ["bananas", "red apples", "green apples"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [1, 2]
    assert results[0]["relevance_score"] == 1.0 and results[1]["relevance_score"] == 0.5
    assert results[0]["document"] == {"text": "red apples"}


def test_bad_input_is_a_400_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="mock", prompt="x", extra_body={"stream": "yes"})
    r = httpx.post(f"{client.base_url}audio/transcriptions", headers={"authorization": "Bearer sk-anything"},
                   content=b"not a form", timeout=30,
                   )
    assert r.status_code == 400
    assert json.loads(r.text)["error"]["type"] == "invalid_request_error"
