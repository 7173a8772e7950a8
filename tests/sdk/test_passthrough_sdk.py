"""The pass-through endpoints with the official `openai` SDK's own methods (completions.create,
images.generate, audio.speech.create, audio.transcriptions.create, moderations.create) and
rerank with httpx, against a gateway of its own whose OpenAI-type provider is a fake upstream in
this process. The fake records each request, so the tests check what the upstream received (the
deployment's model, the multipart form) as well as what the SDK returns.
"""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import ALL_KEY, GPT_KEY, UPSTREAM_KEY, _clean_env, _free_port, _stop, _wait_health

try:
    import httpx
except ImportError:  # the openai SDK's own HTTP client, packaged under this name
    import httpx2 as httpx

AUDIO = bytes((i * 7) % 256 for i in range(200_000))


def _form_fields(body: bytes, content_type: str) -> dict:
    """The parts of a multipart body by field name (a scan independent of the gateway's)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part[2:].partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = content[:-2]
    return fields


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def _json(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ctype = self.headers.get("content-type", "")
        _Upstream.seen.append((self.path, ctype, body, self.headers.get("authorization")))
        if self.path.endswith("/audio/transcriptions"):
            f = _form_fields(body, ctype)
            text = f"heard {len(f['file'])} bytes with {f['model'].decode()}"
            if f.get("response_format") == b"text":
                data = text.encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            return self._json({"text": text, "usage": {"type": "tokens", "input_tokens": 3, "output_tokens": 4}})
        req = json.loads(body or b"{}")
        model = req.get("model")
        if self.path.endswith("/completions"):
            text = "echo: " + req.get("prompt", "")
            if req.get("stream"):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                frames = [
                    {"id": "c", "object": "text_completion", "created": 1, "model": model,
                     "choices": [{"text": w, "index": 0, "logprobs": None, "finish_reason": None}]}
                    for w in text.split(" ")
                ]
                frames.append({"id": "c", "object": "text_completion", "created": 1, "model": model,
                               "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]})
                if (req.get("stream_options") or {}).get("include_usage"):
                    frames.append({"id": "c", "object": "text_completion", "created": 1, "model": model,
                                   "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
                out = [f"data: {json.dumps(f)}\n\n" for f in frames] + ["data: [DONE]\n\n"]
                for chunk in out:
                    data = chunk.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            return self._json({"id": "c", "object": "text_completion", "created": 1, "model": model,
                               "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
        if self.path.endswith("/images/generations"):
            return self._json({"created": 1, "data": [{"b64_json": "aGVsbG8=", "revised_prompt": req["prompt"]}]})
        if self.path.endswith("/audio/speech"):
            self.send_response(200)
            self.send_header("content-type", "audio/mpeg")
            self.send_header("content-length", str(len(AUDIO)))
            self.end_headers()
            self.wfile.write(AUDIO)
            return
        if self.path.endswith("/moderations"):
            return self._json({"id": "modr-1", "model": model, "results": [{
                "flagged": "attack" in json.dumps(req["input"]),
                "categories": {"violence": False}, "category_scores": {"violence": 0.5}}]})
        if self.path.endswith("/rerank"):
            docs = req["documents"]
            return self._json({"id": "rr", "results": [
                {"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(docs))][: req.get("top_n", len(docs))]})
        self._json({"error": {"message": "no route", "type": "invalid_request_error"}}, status=404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream):
    import os

    binary = os.environ["AI_GATEWAY_BIN"]
    tmp = tmp_path_factory.mktemp("passthrough")
    port = _free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "providers": [
            {"name": "up", "type": "openai", "base_url": f"http://127.0.0.1:{upstream}/v1", "api_key": UPSTREAM_KEY},
            {"name": "claude", "type": "anthropic", "base_url": f"http://127.0.0.1:{upstream}", "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": "gpt-pass", "deployments": [{"provider": "up", "model": "up-model"}]},
            {"name": "claude-only", "deployments": [{"provider": "claude", "model": "claude-x"}]},
        ],
        "auth": {"keys": [
            {"name": "sdk-all", "key": ALL_KEY, "models": ["*"]},
            {"name": "sdk-gpt", "key": GPT_KEY, "models": ["gpt-*"]},
        ]},
    }
    cfg = tmp / "gateway.json"
    cfg.write_text(json.dumps(config))
    log_path = str(tmp / "gateway.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "--config", str(cfg)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=tmp, env=_clean_env())
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", proc, log_path, "ai-gateway")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def client(gw):
    return openai.OpenAI(api_key=ALL_KEY, base_url=f"{gw}/v1", max_retries=0, timeout=30)


def _last():
    path, ctype, body, auth = _Upstream.seen[-1]
    assert auth == f"Bearer {UPSTREAM_KEY}"
    return path, ctype, body


def test_completions_create(client):
    c = client.completions.create(model="gpt-pass", prompt="say hi", max_tokens=5)
    assert c.choices[0].text == "echo: say hi"
    assert c.usage.completion_tokens == 3
    path, _, body = _last()
    assert path == "/v1/completions"
    assert json.loads(body)["model"] == "up-model"


def test_completions_stream(client):
    stream = client.completions.create(model="gpt-pass", prompt="one two", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo:onetwo"
    # Usage was asked of the upstream for the accounting, and not shown to this client.
    assert all(c.usage is None for c in chunks)
    assert json.loads(_last()[2])["stream_options"] == {"include_usage": True}


def test_images_generate(client):
    r = client.images.generate(model="gpt-pass", prompt="a cat", n=1, size="1024x1024")
    assert r.data[0].b64_json == "aGVsbG8="
    assert r.data[0].revised_prompt == "a cat"
    assert _last()[0] == "/v1/images/generations"


def test_audio_speech_create(client, tmp_path):
    with client.audio.speech.with_streaming_response.create(model="gpt-pass", voice="alloy", input="hello") as r:
        assert r.headers["content-type"] == "audio/mpeg"
        out = tmp_path / "speech.mp3"
        r.stream_to_file(out)
    assert out.read_bytes() == AUDIO
    assert json.loads(_last()[2]) == {"model": "up-model", "voice": "alloy", "input": "hello"}


def test_audio_transcriptions_create(client, tmp_path):
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF" + bytes(range(256)) * 100)
    with audio.open("rb") as f:
        t = client.audio.transcriptions.create(model="gpt-pass", file=f, language="en")
    assert t.text == f"heard {4 + 25600} bytes with up-model"
    path, ctype, body = _last()
    assert path == "/v1/audio/transcriptions"
    assert ctype.startswith("multipart/form-data; boundary=")
    fields = _form_fields(body, ctype)
    assert fields["model"] == b"up-model" and fields["language"] == b"en"
    with audio.open("rb") as f:
        text = client.audio.transcriptions.create(model="gpt-pass", file=f, response_format="text")
    assert text.strip() == f"heard {4 + 25600} bytes with up-model"


def test_moderations_create(client):
    r = client.moderations.create(model="gpt-pass", input=["fine", "an attack"])
    assert r.results[0].flagged is True
    assert _last()[0] == "/v1/moderations"


def test_rerank_with_httpx(gw):
    r = httpx.post(f"{gw}/v1/rerank", headers={"authorization": f"Bearer {ALL_KEY}"},
                   json={"model": "gpt-pass", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}, timeout=30)
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == [0, 1]
    assert r.headers["x-gateway-provider"] == "up"
    assert _last()[0] == "/v1/rerank"


def test_errors_in_openai_shape(client, gw):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="claude-only", prompt="x")
    assert "/v1/completions" in str(e.value) and "claude-only" in str(e.value)
    other = openai.OpenAI(api_key=GPT_KEY, base_url=f"{gw}/v1", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        other.moderations.create(model="claude-only", input="x")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="nope", prompt="x")
