"""A fake upstream speaking OpenAI's and Anthropic's formats (whole and streamed) that calls a tool
until the request carries the tool's result, then answers "sunny"; it keeps every request. And the
gateway configuration in front of it. Shared by test_tool_ids_sdk.py and
test_responses_replicas_sdk.py."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import ALL_KEY, UPSTREAM_KEY

# The tool-call id each upstream model makes.
IDS = {
    "openai-up": "call_RoundTrip42",
    "kimi-up": "functions.get_weather:0",
    "claude-up": "toolu_01RoundTrip42",
}
# The gateway's model -> its deployment's upstream model.
UPSTREAM = {"gpt-tools": "openai-up", "kimi-tools": "kimi-up", "claude-tools": "claude-up"}
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


class Upstream(BaseHTTPRequestHandler):
    """Calls `get_weather` until the request carries a tool result, then answers "sunny"."""

    protocol_version = "HTTP/1.1"
    seen = []

    def _send(self, data: bytes, ctype: str):
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        Upstream.seen.append((self.path, body))
        if self.path.endswith("/chat/completions"):
            self._openai(body)
        else:
            self._anthropic(body)

    def _openai(self, body):
        answered = any(m["role"] == "tool" for m in body["messages"])
        call = {"id": IDS[body["model"]], "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "sunny"} if answered else \
                {"role": "assistant", "content": None, "tool_calls": [call]}
            return self._send(json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "stop" if answered else "tool_calls"}],
                "usage": usage}).encode(), "application/json")
        deltas = [{"role": "assistant", "content": ""}]
        deltas.append({"content": "sunny"} if answered else {"tool_calls": [dict(call, index=0)]})
        chunks = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({"choices": [{"index": 0, "delta": {},
                                    "finish_reason": "stop" if answered else "tool_calls"}]})
        chunks.append({"choices": [], "usage": usage})
        frames = "".join(
            f"data: {json.dumps(dict(c, id='chatcmpl-1', object='chat.completion.chunk', created=1, model=body['model']))}\n\n"
            for c in chunks) + "data: [DONE]\n\n"
        self._send(frames.encode(), "text/event-stream")

    def _anthropic(self, body):
        answered = any(isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"])
                       for m in body["messages"])
        block = {"type": "text", "text": "sunny"} if answered else \
            {"type": "tool_use", "id": IDS[body["model"]], "name": "get_weather", "input": {"city": "Paris"}}
        stop = "end_turn" if answered else "tool_use"
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [block], "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": 5, "output_tokens": 3}}
        if not body.get("stream"):
            return self._send(json.dumps(message).encode(), "application/json")
        if answered:
            start, delta = dict(block, text=""), {"type": "text_delta", "text": "sunny"}
        else:
            start, delta = dict(block, input={}), {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
        events = [
            ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None)}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 3}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        frames = "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events)
        self._send(frames.encode(), "text/event-stream")

    def log_message(self, *args):
        pass


def start() -> tuple[ThreadingHTTPServer, str]:
    """The fake upstream on a free loopback port, and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def gateway_config(up: str, port: int) -> dict:
    """Models `gpt-tools`, `kimi-tools` (OpenAI-type) and `claude-tools` (Anthropic-type) on the fake
    upstream at `up`; key `ALL_KEY` for all of them."""
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "providers": [
            {"name": "oa", "type": "openai", "base_url": f"{up}/v1", "api_key": UPSTREAM_KEY},
            {"name": "an", "type": "anthropic", "base_url": up, "api_key": UPSTREAM_KEY},
        ],
        "models": [
            {"name": name, "deployments": [{"provider": "an" if name.startswith("claude") else "oa", "model": up_model}]}
            for name, up_model in UPSTREAM.items()
        ],
        "auth": {"keys": [{"name": "sdk-all", "key": ALL_KEY, "models": ["*"]}]},
    }


def last_request() -> dict:
    return Upstream.seen[-1][1]
