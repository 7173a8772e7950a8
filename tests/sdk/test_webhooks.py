"""A job's webhook, checked by the Standard Webhooks reference library (`standardwebhooks`).

The gateway signs webhooks per the Standard Webhooks spec; a receiver written against that spec's
own Python library must accept them as they arrive, and refuse them once altered.
"""

import json
import queue
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import ALL_KEY, WEBHOOK_SECRET

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def receiver():
    """A loopback HTTP server that answers 200 to every POST and hands over what it got."""
    got: "queue.Queue[tuple[dict, bytes]]" = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.put(({k: v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", got
    finally:
        server.shutdown()
        server.server_close()


def _submit(gateway_url: str, webhook_url: str) -> dict:
    req = urllib.request.Request(
        f"{gateway_url}/v1/async/chat/completions",
        data=json.dumps(
            {"model": "mock", "messages": [{"role": "user", "content": "hello webhook"}]}
        ).encode(),
        headers={
            "authorization": f"Bearer {ALL_KEY}",
            "content-type": "application/json",
            "x-webhook-url": webhook_url,
        },
        method="POST",
    )
    with _NO_PROXY.open(req, timeout=10) as r:
        assert r.status == 202
        return json.loads(r.read())


def test_a_job_webhook_verifies_with_the_standard_webhooks_library(gateway_url, receiver):
    url, got = receiver
    job = _submit(gateway_url, url)
    headers, body = got.get(timeout=30)

    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert payload["id"] == job["id"]
    assert payload["status"] == "succeeded"
    assert payload["result"]["choices"][0]["message"]["content"] == "hello webhook"
    assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == job["id"]

    # Altered in any part, it is refused.
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "AAAA" * 11).verify(body, headers)
