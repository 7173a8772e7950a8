"""The official `openai` SDK against the gateway's own Batch API: files.create, batches.create,
retrieve, list, cancel and files.content, with a batch of 1,000 lines over three providers (the
built-in mock, an OpenAI-type and an Anthropic-type provider in front of the mock-server)."""

import json
import time

import openai
import pytest


def _jsonl(lines) -> bytes:
    return ("\n".join(json.dumps(l) for l in lines) + "\n").encode()


def _chat_line(i: int, model: str) -> dict:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"line {i}"}]},
    }


def _wait(client, batch_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "cancelled", "expired"):
            return b
        assert time.monotonic() < deadline, f"batch {batch_id} still {b.status}: {b}"
        time.sleep(0.2)


def _lines(client, file_id):
    if file_id is None:
        return []
    return [json.loads(l) for l in client.files.content(file_id).text.splitlines() if l]


def test_a_mixed_provider_batch_of_1000_lines(oai):
    models = ["mock", "gpt-echo", "claude-echo"]
    data = _jsonl(_chat_line(i, models[i % 3]) for i in range(1000))
    f = oai.files.create(file=("input.jsonl", data), purpose="batch")
    assert f.object == "file" and f.purpose == "batch" and f.bytes == len(data)
    assert oai.files.retrieve(f.id).filename == "input.jsonl"
    b = oai.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"suite": "sdk"},
    )
    assert b.status == "validating" and b.metadata == {"suite": "sdk"}
    done = _wait(oai, b.id)
    assert done.status == "completed", done
    assert done.request_counts.total == 1000
    assert done.request_counts.completed == 1000 and done.request_counts.failed == 0
    assert done.error_file_id is None
    out = _lines(oai, done.output_file_id)
    assert len(out) == 1000
    assert sorted(l["custom_id"] for l in out) == sorted(f"req-{i}" for i in range(1000))
    request_ids = set()
    for l in out:
        assert l["error"] is None
        assert l["response"]["status_code"] == 200
        assert l["response"]["body"]["object"] == "chat.completion"
        request_ids.add(l["response"]["request_id"])
    assert len(request_ids) == 1000, "each line has its own request id"
    # The echo upstreams answer with the line's own text.
    by_id = {l["custom_id"]: l for l in out}
    assert "line 1" in by_id["req-1"]["response"]["body"]["choices"][0]["message"]["content"]
    listed = oai.batches.list(limit=100)
    assert b.id in [x.id for x in listed.data]


def test_invalid_lines_fail_the_batch_with_line_numbers(oai):
    lines = [
        json.dumps(_chat_line(0, "mock")),
        "not json",
        json.dumps(_chat_line(0, "mock")),
        json.dumps({**_chat_line(3, "mock"), "url": "/v1/embeddings"}),
    ]
    f = oai.files.create(file=("bad.jsonl", ("\n".join(lines)).encode()), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = _wait(oai, b.id, 30)
    assert done.status == "failed"
    got = {(e.line, e.code) for e in done.errors.data}
    assert got == {(2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_endpoint")}


def test_cancel_ends_cancelled_with_one_line_per_input_line(oai):
    data = _jsonl(_chat_line(i, "gpt-echo") for i in range(3000))
    f = oai.files.create(file=("big.jsonl", data), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    c = oai.batches.cancel(b.id)
    assert c.status in ("cancelling", "cancelled")
    done = _wait(oai, b.id, 60)
    assert done.status == "cancelled", done
    out = _lines(oai, done.output_file_id)
    err = _lines(oai, done.error_file_id)
    assert len(out) + len(err) == 3000
    assert all(l["error"]["code"] == "batch_cancelled" for l in err)
    assert done.request_counts.completed == len(out)


def test_another_keys_batch_and_file_are_404(oai, oai_gpt_only):
    f = oai.files.create(file=("x.jsonl", _jsonl([_chat_line(0, "mock")])), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.batches.retrieve(b.id)
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        oai_gpt_only.batches.cancel(b.id)
    assert b.id not in [x.id for x in oai_gpt_only.batches.list().data]
    with pytest.raises(openai.BadRequestError):
        oai.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    _wait(oai, b.id, 30)
    # Delete
    assert oai.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(f.id)
