"""The official SDKs against the gateway's native providers: `type: gemini` and `type: bedrock`.

This module starts its own fake upstream in this process, one HTTP server speaking Google's Gemini
API (JSON, SSE with `\\r\\n\\r\\n`, batchEmbedContents) and Bedrock's Converse API (JSON, and
ConverseStream's binary AWS event-stream frames, written here with their CRC32s), and its own
gateway in front of it. The Bedrock side checks every request's SigV4 signature with the
implementation below (Python's hmac/hashlib, independent of the Rust `aws-sigv4` crate the
gateway signs with) and refuses a wrong one as AWS does.
"""

import datetime
import hashlib
import hmac
import http.server
import json
import struct
import subprocess
import threading
import urllib.parse
import zlib

import anthropic
import openai
import pytest

from conftest import ALL_KEY, _clean_env, _free_port, _stop, _wait_health

GEMINI_KEY = "gemini-upstream-key-sdk"
AWS_ID = "AKIDSDKTEST"
AWS_SECRET = "sdk-test-secret-access-key"
AWS_TOKEN = "sdk-test-session-token"
REGION = "eu-central-1"
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


# ---------------------------------------------------------------------------- SigV4, by hand


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_valid(method: str, raw_path: str, headers, body: bytes) -> bool:
    """Recompute the request's signature from its parts, as AWS does (service `bedrock`)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    key_id, date, region, service, _ = fields["Credential"].split("/")
    if (key_id, region, service) != (AWS_ID, REGION, "bedrock"):
        return False
    signed = fields["SignedHeaders"].split(";")
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return False
    # AWS (but S3) encodes each path segment once more in the canonical request.
    path = raw_path.split("?", 1)[0]
    canonical_path = "/".join(urllib.parse.quote(seg, safe="-_.~") for seg in path.split("/"))
    canonical_headers = "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed)
    canonical = "\n".join(
        [method, canonical_path, "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + AWS_SECRET).encode(), date)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    return hmac.compare_digest(hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest(), fields["Signature"])


# ------------------------------------------------------------------------ event-stream frames


def frame(headers, payload: bytes) -> bytes:
    hb = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode() for k, v in headers
    )
    prelude = struct.pack(">II", 12 + len(hb) + len(payload) + 4, len(hb))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + hb + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def event(kind: str, payload: dict) -> bytes:
    return frame(
        [(":message-type", "event"), (":event-type", kind), (":content-type", "application/json")],
        json.dumps(payload).encode(),
    )


def pieces(text: str):
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


class _Native(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    signed_ok = 0

    def _send(self, status, ctype, body: bytes, headers=()):
        self.send_response(status)
        self.send_header("content-type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        req = json.loads(body or b"{}")
        if self.path.startswith("/v1beta/models/"):
            return self._gemini(req)
        if self.path.startswith("/model/"):
            return self._bedrock(req, body)
        self._send(404, "text/html", b"<html>no</html>")

    def _gemini(self, req):
        if self.headers.get("x-goog-api-key") != GEMINI_KEY:
            err = {"error": {"code": 403, "message": "bad key", "status": "PERMISSION_DENIED"}}
            return self._send(403, "application/json", json.dumps(err).encode())
        model, method = self.path[len("/v1beta/models/") :].split(":", 1)
        if method == "batchEmbedContents":
            embs = [{"values": [0.5, float(len(r["content"]["parts"][0]["text"]))]} for r in req["requests"]]
            return self._send(200, "application/json", json.dumps({"embeddings": embs}).encode())
        user = [c for c in req["contents"] if c["role"] == "user"][-1]
        echo = " ".join(p["text"] for p in user["parts"] if "text" in p)
        usage = {"promptTokenCount": 5, "candidatesTokenCount": len(echo.split()), "totalTokenCount": 5}
        if method == "generateContent":
            out = {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": echo}]}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": usage,
                "responseId": "sdk-gem",
            }
            return self._send(200, "application/json", json.dumps(out).encode())
        assert method == "streamGenerateContent?alt=sse"
        chunks = []
        ps = pieces(echo)
        for i, p in enumerate(ps):
            cand = {"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}
            chunk = {"candidates": [cand], "responseId": "sdk-gem"}
            if i == len(ps) - 1:
                cand["finishReason"] = "STOP"
                chunk["usageMetadata"] = usage
            chunks.append(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        self._send(200, "text/event-stream", b"".join(chunks))

    def _bedrock(self, req, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        if not sigv4_valid("POST", self.path, headers, body) or headers.get("x-amz-security-token") != AWS_TOKEN:
            return self._send(
                403,
                "application/json",
                json.dumps({"message": "The request signature we calculated does not match"}).encode(),
                [("x-amzn-errortype", "InvalidSignatureException")],
            )
        type(self).signed_ok += 1
        user = [m for m in req["messages"] if m["role"] == "user"][-1]
        echo = " ".join(b["text"] for b in user["content"] if "text" in b)
        usage = {"inputTokens": 7, "outputTokens": len(echo.split()), "totalTokens": 7}
        if self.path.endswith("/converse"):
            out = {
                "output": {"message": {"role": "assistant", "content": [{"text": echo}]}},
                "stopReason": "end_turn",
                "usage": usage,
            }
            return self._send(200, "application/json", json.dumps(out).encode())
        frames = [event("messageStart", {"role": "assistant"})]
        frames += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces(echo)]
        frames += [
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}),
        ]
        if "CORRUPT" in echo:
            bad = bytearray(frames[2])
            bad[-6] ^= 0xFF
            frames = frames[:2] + [bytes(bad)]
        self._send(200, "application/vnd.amazon.eventstream", b"".join(frames))

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def native_gateway(tmp_path_factory):
    import os

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Native)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{server.server_address[1]}"
    tmp = tmp_path_factory.mktemp("native")
    port = _free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "providers": [
            {"name": "gem", "type": "gemini", "base_url": up, "api_key": GEMINI_KEY},
            {
                "name": "aws",
                "type": "bedrock",
                "base_url": up,
                "region": REGION,
                "aws_access_key_id": AWS_ID,
                "aws_secret_access_key": AWS_SECRET,
                "aws_session_token": AWS_TOKEN,
            },
        ],
        "models": [
            {"name": "gemini/*", "deployments": [{"provider": "gem", "model": "*"}]},
            {"name": "claude-bedrock", "deployments": [{"provider": "aws", "model": BEDROCK_MODEL}]},
        ],
        "auth": {"keys": [{"name": "sdk-all", "key": ALL_KEY, "models": ["*"]}]},
        "resilience": {"retries": 0},
        "cache": {"enabled": False},
    }
    cfg = tmp / "gateway.json"
    cfg.write_text(json.dumps(config))
    log_path = str(tmp / "gateway.log")
    with open(log_path, "wb") as log:
        gw = subprocess.Popen(
            [os.environ["AI_GATEWAY_BIN"], "--config", str(cfg)],
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
        server.shutdown()
        server.server_close()


@pytest.fixture
def oai_native(native_gateway):
    return openai.OpenAI(api_key=ALL_KEY, base_url=f"{native_gateway}/v1", max_retries=0, timeout=30)


@pytest.fixture
def anth_native(native_gateway):
    return anthropic.Anthropic(api_key=ALL_KEY, base_url=native_gateway, max_retries=0, timeout=30)


def test_openai_sdk_chat_on_gemini_plain_and_streamed(oai_native):
    r = oai_native.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=[{"role": "system", "content": "short"}, {"role": "user", "content": "hello gemini"}],
    )
    assert r.choices[0].message.content == "hello gemini"
    assert r.choices[0].finish_reason == "stop"
    assert r.id == "chatcmpl-sdk-gem"
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 2

    stream = oai_native.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=[{"role": "user", "content": "a streamed gemini answer"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a streamed gemini answer"
    assert chunks[-1].usage.completion_tokens == 4


def test_openai_sdk_embeddings_on_gemini(oai_native):
    r = oai_native.embeddings.create(model="gemini/gemini-embedding-001", input=["abc", "abcdef"])
    assert [d.embedding for d in r.data] == [[0.5, 3.0], [0.5, 6.0]]
    # base64, decoded by the SDK itself
    r = oai_native.embeddings.create(model="gemini/gemini-embedding-001", input="ab", encoding_format="base64")
    assert r.data[0].embedding == "AAAAPwAAAEA="


def test_anthropic_sdk_on_bedrock_signed_plain_and_streamed(anth_native):
    before = _Native.signed_ok
    m = anth_native.messages.create(
        model="claude-bedrock", max_tokens=64, messages=[{"role": "user", "content": "hi bedrock"}]
    )
    assert m.content[0].text == "hi bedrock"
    assert m.stop_reason == "end_turn"
    with anth_native.messages.stream(
        model="claude-bedrock", max_tokens=64, messages=[{"role": "user", "content": "stream from bedrock"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "stream from bedrock"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    # Both requests carried a signature the independent check accepted.
    assert _Native.signed_ok == before + 2


def test_openai_sdk_sees_a_corrupt_frame_as_an_error(oai_native):
    stream = oai_native.chat.completions.create(
        model="claude-bedrock",
        messages=[{"role": "user", "content": "CORRUPT frames ahead of us"}],
        stream=True,
    )
    got = []
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    assert "event stream is broken" in str(e.value)
    assert "".join(got) == "CORRUPT "
