"""The Responses API shapes the gateway's translation writes, checked by the official `openai` SDK.

The Rust test `translate::responses::sdk_tests` translates realistic chat answers and streams,
writes what it produced into a temporary directory and runs this file on it:

    RESPONSES_SHAPES_DIR=DIR python -m pytest --noconftest -p no:cacheprovider \
        tests/sdk/check_responses_shapes.py

(`--noconftest`: this file needs no gateway; its name keeps it out of the `pytest tests/sdk` run.)

DIR holds:
- `answers/NAME.json`: a Response object; `answers/NAME.expect.json`: `{"status", "output_text"}`.
- `streams/NAME.sse`: a Responses event stream; `streams/NAME.expect.json`:
  `{"status", "output_text", "error"}`.
- `items/NAME.json`: stored items (a JSON array), as `input_items` would list them.

Each Response is validated with `Response.model_validate`, each event with the SDK's
`ResponseStreamEvent` type adapter, each item with `ResponseItem`'s; then a local HTTP server
serves them to the SDK's real client: `responses.create` (plain and `stream=True`),
`responses.stream(...).get_final_response()`, `responses.parse(text_format=...)` and
`responses.input_items.list`.
"""

import http.server
import json
import os
import pathlib
import threading

import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from openai.types.responses.response_input_item_param import ResponseInputItemParam
from openai.types.responses.response_item_list import ResponseItemList

_DIR = os.environ.get("RESPONSES_SHAPES_DIR")
if not _DIR or not pathlib.Path(_DIR).is_dir():
    raise RuntimeError(
        "RESPONSES_SHAPES_DIR must name the directory the Rust test "
        "translate::responses::sdk_tests wrote; run that test instead of this file"
    )
DIR = pathlib.Path(_DIR)

# Never send loopback traffic through a proxy.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
ITEMS = pydantic.TypeAdapter(ResponseItem)
INPUT_ITEMS = pydantic.TypeAdapter(ResponseInputItemParam)

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def _names(sub: str, suffix: str) -> list[str]:
    names = sorted(
        p.name[: -len(suffix)]
        for p in (DIR / sub).glob(f"*{suffix}")
        if not p.name.endswith(".expect.json")
    )
    if not names:
        raise RuntimeError(f"no {sub}/*{suffix} in {DIR}")
    return names


ANSWERS = _names("answers", ".json")
STREAMS = _names("streams", ".sse")
ITEM_LISTS = _names("items", ".json")


def _expect(sub: str, name: str) -> dict:
    return json.loads((DIR / sub / f"{name}.expect.json").read_text())


def _events(name: str) -> list[tuple[str, dict]]:
    """The stream's events as (event name, data), parsed by the SSE format's rules."""
    raw = (DIR / "streams" / f"{name}.sse").read_text()
    assert raw.endswith("\n\n"), "a stream ends with a blank line"
    events = []
    for block in raw[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) == {"event", "data"}, block
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# ---------------------------------------------------------------------------------------------
# Shapes, validated by the SDK's own types
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANSWERS)
def test_response_object_validates(name):
    body = json.loads((DIR / "answers" / f"{name}.json").read_text())
    resp = Response.model_validate(body)
    expect = _expect("answers", name)
    assert resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.status == expect["status"]
    assert resp.output_text == expect["output_text"]
    if resp.status == "completed":
        assert resp.completed_at is not None and resp.completed_at >= resp.created_at
    if resp.usage is not None:
        assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


@pytest.mark.parametrize("name", STREAMS)
def test_stream_events_validate_in_openai_order(name):
    events = _events(name)
    expect = _expect("streams", name)
    parsed = []
    for i, (event, data) in enumerate(events):
        assert event == data["type"], f"event {i}: SSE name {event!r} != type {data['type']!r}"
        assert data["sequence_number"] == i, f"event {i} has sequence_number {data['sequence_number']}"
        parsed.append(EVENTS.validate_python(data))
    kinds = [e.type for e in parsed]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for e in parsed[:2]:
        assert e.response.status == "in_progress" and e.response.output == []
    ids = {e.response.id for e in parsed if hasattr(e, "response")}
    assert len(ids) == 1, "one response id across the stream"

    # Items open and close one at a time, in output order; deltas only inside their item.
    open_item = None
    next_index = 0
    text = {}
    for e in parsed:
        if e.type == "response.output_item.added":
            assert open_item is None, "an item was added while another was open"
            assert e.output_index == next_index
            open_item = e.item
            next_index += 1
        elif e.type == "response.output_item.done":
            assert open_item is not None and e.item.id == open_item.id
            assert e.item.type == open_item.type
            open_item = None
        elif e.type in (
            "response.output_text.delta",
            "response.refusal.delta",
            "response.reasoning_text.delta",
            "response.function_call_arguments.delta",
            "response.content_part.added",
            "response.content_part.done",
        ):
            assert open_item is not None and e.item_id == open_item.id
            assert e.output_index == next_index - 1
            if e.type == "response.output_text.delta":
                text[e.item_id] = text.get(e.item_id, "") + e.delta
        elif e.type == "response.output_text.done":
            assert e.text == text.get(e.item_id, ""), "output_text.done carries the whole text"

    final = [e for e in parsed if e.type in TERMINAL]
    assert len(final) == 1
    final = final[0]
    assert final.response.status == expect["status"]
    if expect["status"] == "failed":
        assert kinds[-2:] == ["response.failed", "error"]
        assert final.response.error is not None
        assert expect["error"] in final.response.error.message
        assert expect["error"] in parsed[-1].message
    else:
        assert open_item is None, "every item was closed"
        assert kinds[-1] == final.type
        assert final.response.output_text == expect["output_text"]
        # The final object's output is what the output_item.done events carried.
        done_items = [e.item for e in parsed if e.type == "response.output_item.done"]
        assert [i.model_dump() for i in final.response.output] == [i.model_dump() for i in done_items]


@pytest.mark.parametrize("name", ITEM_LISTS)
def test_stored_items_validate(name):
    items = json.loads((DIR / "items" / f"{name}.json").read_text())
    assert items, "a non-empty list"
    ids = [i["id"] for i in items]
    assert len(set(ids)) == len(ids), "item ids are unique"
    for item in items:
        ITEMS.validate_python(item)
        # A stored item can be sent back as input (what history expansion relies on).
        INPUT_ITEMS.validate_python(item)
    page = {"object": "list", "data": items, "first_id": ids[0], "last_id": ids[-1], "has_more": False}
    ResponseItemList.model_validate(page)


# ---------------------------------------------------------------------------------------------
# The SDK's real client against a local server that serves the fixtures
# ---------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = req["model"]
        if req.get("stream"):
            self._send(200, "text/event-stream", (DIR / "streams" / f"{model}.sse").read_bytes())
        else:
            self._send(200, "application/json", (DIR / "answers" / f"{model}.json").read_bytes())

    def do_GET(self):
        # /v1/responses/{name}/input_items
        parts = self.path.split("?")[0].strip("/").split("/")
        items = json.loads((DIR / "items" / f"{parts[2]}.json").read_text())
        page = {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"],
            "last_id": items[-1]["id"],
            "has_more": False,
        }
        self._send(200, "application/json", json.dumps(page).encode())


@pytest.fixture(scope="module")
def client():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield openai.OpenAI(
            api_key="sk-shapes",
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
            max_retries=0,
            timeout=10,
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ANSWERS)
def test_sdk_create(client, name):
    expect = _expect("answers", name)
    resp = client.responses.create(model=name, input="hi")
    assert resp.status == expect["status"]
    assert resp.output_text == expect["output_text"]


def test_sdk_parse_structured_output(client):
    class Weather(pydantic.BaseModel):
        city: str
        celsius: float

    resp = client.responses.parse(model="json_schema", input="weather?", text_format=Weather)
    assert resp.output_parsed == Weather(city="Paris", celsius=14.5)


@pytest.mark.parametrize("name", STREAMS)
def test_sdk_stream_helper(client, name):
    expect = _expect("streams", name)
    if expect["status"] == "completed":
        with client.responses.stream(model=name, input="hi") as stream:
            deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
        assert final.status == "completed"
        assert final.output_text == expect["output_text"] == deltas
    elif expect["status"] == "incomplete":
        # As with OpenAI itself: the events arrive, get_final_response wants response.completed.
        with client.responses.stream(model=name, input="hi") as stream:
            last = [e for e in stream][-1]
        assert last.type == "response.incomplete"
        assert last.response.output_text == expect["output_text"]
    else:
        seen = []
        with pytest.raises(openai.APIError, match=expect["error"]):
            with client.responses.stream(model=name, input="hi") as stream:
                for e in stream:
                    seen.append(e.type)
        assert seen[-1] == "response.failed"


@pytest.mark.parametrize("name", STREAMS)
def test_sdk_create_stream(client, name):
    expect = _expect("streams", name)
    seen = []
    if expect["status"] == "failed":
        with pytest.raises(openai.APIError, match=expect["error"]):
            for e in client.responses.create(model=name, input="hi", stream=True):
                seen.append(e)
        assert seen[-1].type == "response.failed"
    else:
        seen = list(client.responses.create(model=name, input="hi", stream=True))
        assert seen[-1].response.status == expect["status"]
        assert seen[-1].response.output_text == expect["output_text"]


@pytest.mark.parametrize("name", ITEM_LISTS)
def test_sdk_input_items_list(client, name):
    items = json.loads((DIR / "items" / f"{name}.json").read_text())
    page = client.responses.input_items.list(name)
    assert [i.id for i in page.data] == [i["id"] for i in items]
