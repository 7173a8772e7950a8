"""The web console at /ui/ driven in a real headless Chromium (Debian's `chromium`, through
Playwright for Python), offline: every request the page makes to anywhere but the gateway is
refused and fails the test.

Run (scripts/test.sh does):
    AI_GATEWAY_BIN=$CARGO_TARGET_DIR/debug/ai-gateway ~/.cache/ai-gateway/venv/bin/python -m pytest -q tests/console

Chromium: $AI_GATEWAY_CHROMIUM, else /usr/bin/chromium. When it is missing the test fails under
CI=true (scripts/test.sh installs it) and is skipped elsewhere, saying so.

Screenshots of every page go to $AI_GATEWAY_SCREENSHOTS (default tests/console/screenshots/,
ignored by git), for review.

The steps that need the request log, the usage report and the statistics (GET /admin/requests,
/admin/usage, /admin/stats) and the batch list (GET /admin/batches) are part of the test; with
AI_GATEWAY_CONSOLE_PARTIAL=1 they are left out (for a build that does not have those endpoints
yet), and the 404s those pages then meet are tolerated.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

MASTER_KEY = "console-master-key-0123456789"
HERE = os.path.dirname(os.path.abspath(__file__))
SHOTS = os.environ.get("AI_GATEWAY_SCREENSHOTS") or os.path.join(HERE, "screenshots")
PARTIAL = os.environ.get("AI_GATEWAY_CONSOLE_PARTIAL") == "1"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _chromium() -> str:
    path = os.environ.get("AI_GATEWAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        msg = f"chromium is not installed ({path}); scripts/test.sh installs it (apt package chromium)"
        if IN_CI:
            pytest.fail(msg + " — CI=true: the console test cannot be skipped", pytrace=False)
        pytest.skip(msg)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateway():
    binary = os.environ.get("AI_GATEWAY_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("AI_GATEWAY_BIN must name a built ai-gateway binary", pytrace=False)
    tmp = tempfile.mkdtemp(prefix="aigw-console-")
    port = _free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"data_dir": os.path.join(tmp, "data")},
        "providers": [{"name": "local", "type": "mock"}],
        "models": [
            {"name": "mock", "deployments": [{"provider": "local", "model": "mock",
                                              "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}]},
        ],
        "auth": {"master_key": MASTER_KEY},
    }
    path = os.path.join(tmp, "gateway.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log_path = os.path.join(tmp, "gateway.log")
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and k not in ("RUST_LOG", "AI_GATEWAY_CONFIG", "GATEWAY_MASTER_KEY", "OPENAI_API_KEY")}
    log = open(log_path, "wb")
    proc = subprocess.Popen([binary, "--config", path], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=tmp, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited: {open(log_path).read()}")
        try:
            with _NO_PROXY.open(base + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not start: {open(log_path).read()}")
        time.sleep(0.05)
    yield {"base": base, "log": log_path}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        logs = f.read()
    assert MASTER_KEY not in logs, "the master key was logged"
    shutil.rmtree(tmp, ignore_errors=True)


# The console answers that the page itself asks for and that a browser reports as a console
# error although they are expected: (url pattern, status).
EXPECTED_WRONG_KEY = (re.compile(r"/ui/session$"), 401)
MISSING_WHEN_PARTIAL = re.compile(r"/admin/(stats|requests|usage|batches)")


class Browser:
    """A Chromium page on the gateway, with its console errors and off-site requests recorded."""

    def __init__(self, pw, base):
        self.base = base
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        self.browser = pw.chromium.launch(executable_path=_chromium(), args=args + ["--disable-gpu"])
        self.context = self.browser.new_context(viewport={"width": 1366, "height": 900},
                                                accept_downloads=True)
        self.errors = []
        self.offsite = []
        self.allowed_errors = []
        self.extra_contexts = []
        self.context.route("**/*", self._only_gateway)
        self.page = self.new_page()

    def _only_gateway(self, route):
        url = route.request.url
        if url.startswith(self.base + "/") or url.startswith("blob:") or url.startswith("data:"):
            route.continue_()
        else:
            self.offsite.append(url)
            route.abort()

    def phone_page(self):
        """A page on a phone-sized screen, signed in as the main page is."""
        ctx = self.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                       has_touch=True, storage_state=self.context.storage_state())
        ctx.route("**/*", self._only_gateway)
        self.extra_contexts.append(ctx)
        return self._watch(ctx.new_page())

    def new_page(self):
        return self._watch(self.context.new_page())

    def _watch(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append((m.text, m.location.get("url", ""))))
        page.on("pageerror", lambda e: self.errors.append(("uncaught: " + str(e), "")))
        return page

    def unexpected_errors(self):
        out = []
        for text, url in self.errors:
            status = re.search(r"status of (\d+)", text)
            code = int(status.group(1)) if status else None
            if (url, code) in self.allowed_errors:
                continue
            if PARTIAL and code == 404 and MISSING_WHEN_PARTIAL.search(url):
                continue
            out.append((text, url))
        return out

    def shot(self, page, name):
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)

    def close(self):
        for ctx in self.extra_contexts:
            ctx.close()
        self.context.close()
        self.browser.close()


def _goto(page, base, route):
    page.goto(base + "/ui/#/" + route)
    page.wait_for_selector("#page-title")


def test_console_end_to_end(gateway):
    from playwright.sync_api import expect, sync_playwright

    base = gateway["base"]
    with sync_playwright() as pw:
        b = Browser(pw, base)
        page = b.page
        try:
            # GET / leads to the console; the sign-in form, reachable by keyboard.
            page.goto(base + "/")
            assert page.url == base + "/ui/"
            key_field = page.get_by_label("Master key")
            expect(key_field).to_be_visible()
            assert key_field.get_attribute("type") == "password"
            b.shot(page, "01-sign-in")

            # A wrong key: no session, a clear message.
            key_field.fill("not-the-master-key")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#signin-error")).to_contain_text("Wrong master key")
            expect(page.locator("#app")).to_be_hidden()
            b.allowed_errors.append((base + "/ui/session", 401))
            cookies = b.context.cookies()
            assert not any(c["name"] == "aigw_session" for c in cookies)

            # Sign in with the keyboard alone.
            key_field.fill("")
            key_field.focus()
            page.keyboard.type(MASTER_KEY)
            page.keyboard.press("Enter")
            expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()
            (cookie,) = [c for c in b.context.cookies() if c["name"] == "aigw_session"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"
            expect(page.locator("#page-title")).to_have_text("Overview")
            expect(page.locator(".circuits")).to_contain_text("closed")

            # Keys: create one, seen once, with a copy button.
            page.get_by_role("link", name="Keys").click()
            expect(page.locator("#page-title")).to_have_text("Keys")
            page.get_by_role("button", name="Create key").click()
            page.get_by_label("Name", exact=True).fill("ci-app")
            page.get_by_label("Requests per minute").fill("600")
            page.get_by_label("Budget (USD)").fill("5")
            page.get_by_role("button", name="Create", exact=True).click()
            new_key = page.locator("#new-key")
            expect(new_key).to_have_text(re.compile(r"^sk-gw-[A-Za-z0-9]{40}$"))
            secret = new_key.text_content()
            expect(page.get_by_role("button", name="Copy")).to_be_visible()
            page.get_by_role("button", name="Copy").click()
            expect(page.locator(".new-key [role=status]")).not_to_be_empty()
            row = page.locator("tr", has=page.locator(".key-name", has_text="ci-app"))
            expect(row).to_contain_text("600 rpm")
            expect(row).to_contain_text("active")
            b.shot(page, "02-keys-created")
            page.get_by_role("button", name="Done").click()
            expect(page.locator("#new-key")).to_have_count(0)
            page.reload()
            expect(page.locator(".key-name", has_text="ci-app")).to_be_visible()
            assert secret not in page.content(), "the key is shown once only"

            # A name with markup is shown as text.
            page.get_by_role("button", name="Create key").click()
            evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
            page.get_by_label("Name", exact=True).fill(evil)
            page.get_by_role("button", name="Create", exact=True).click()
            expect(page.locator("#new-key")).to_be_visible()
            expect(page.locator(".key-name", has_text=evil)).to_have_count(1)
            assert page.evaluate("window.__pwned") is None
            assert page.locator("main img").count() == 0

            # Edit a key's limits.
            page.get_by_role("button", name="Edit ci-app").click()
            page.locator("form[id^=edit-] input[name=tpm]").fill("50000")
            page.get_by_role("button", name="Save").click()
            expect(row).to_contain_text("50,000 tpm")

            # The key works through the official SDK.
            client = openai.OpenAI(api_key=secret, base_url=base + "/v1", max_retries=0)
            answer = client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": "hello from the console test"}])
            assert answer.choices[0].message.content

            # Models: each deployment with its circuit.
            page.get_by_role("link", name="Models").click()
            expect(page.locator("#page-title")).to_have_text("Models")
            model_card = page.locator("section.model", has=page.get_by_role("heading", name="mock"))
            expect(model_card).to_contain_text("closed")
            b.shot(page, "03-models")

            if not PARTIAL:
                # Requests: the SDK's request is in the log, expandable.
                page.get_by_role("link", name="Requests").click()
                expect(page.locator("#page-title")).to_have_text("Requests")
                page.get_by_label("Key", exact=True).fill("ci-app")
                entry = page.locator("tr.entry", has_text="ci-app")
                deadline = time.monotonic() + 15
                while entry.count() == 0 and time.monotonic() < deadline:
                    page.get_by_role("button", name="Filter").click()
                    page.wait_for_timeout(300)
                expect(entry.first).to_contain_text("mock")
                expect(entry.first).to_contain_text("200")
                entry.first.get_by_role("button").click()
                expect(page.locator("tr.detail pre").first).to_contain_text("/v1/chat/completions")
                assert secret not in page.content(), "no key in the request log"
                b.shot(page, "04-requests")

                # Usage: the request in the chart and the table, and as CSV.
                page.get_by_role("link", name="Usage").click()
                expect(page.locator("#page-title")).to_have_text("Usage")
                usage_row = page.locator("table.usage tr", has_text="ci-app")
                deadline = time.monotonic() + 15
                while usage_row.count() == 0 and time.monotonic() < deadline:
                    page.get_by_role("button", name="Show").click()
                    page.wait_for_timeout(300)
                expect(usage_row.first).to_contain_text("mock")
                expect(page.locator("svg.chart rect.bar").first).to_be_attached()
                heights = page.locator("svg.chart rect.bar").evaluate_all(
                    "bars => bars.map(b => Number(b.getAttribute('height')))")
                assert any(h > 0 for h in heights), "the usage chart shows the request"
                with page.expect_download() as dl:
                    page.get_by_role("link", name="Download CSV").click()
                csv_text = open(dl.value.path(), encoding="utf-8").read()
                assert csv_text.splitlines()[0].startswith("day,key,model,requests")
                assert "ci-app" in csv_text
                b.shot(page, "05-usage")

                # Overview: the request counted in the last hour.
                page.get_by_role("link", name="Overview").click()
                expect(page.locator("#page-title")).to_have_text("Overview")
                hour = page.locator("section.window", has=page.get_by_role("heading", name="Last hour"))
                expect(hour.locator(".tile", has_text="Requests")).not_to_contain_text("—")
                expect(hour.locator("svg.chart").first).to_be_visible()

                # Jobs and batches: the batch list (empty here).
                page.get_by_role("link", name="Jobs and batches").click()
                expect(page.locator("#page-title")).to_have_text("Jobs and batches")
                expect(page.locator("main")).to_contain_text("No batches")
            else:
                for name in ("Requests", "Usage", "Jobs and batches"):
                    page.get_by_role("link", name=name).click()
                    expect(page.locator("#page-title")).to_have_text(name)
                    expect(page.locator("main")).to_contain_text("not available")
            page.get_by_role("link", name="Jobs and batches").click()
            b.shot(page, "06-batches")
            page.get_by_role("link", name="Overview").click()
            expect(page.locator("#page-title")).to_have_text("Overview")
            page.wait_for_timeout(200)
            b.shot(page, "07-overview")

            # Revoke the key: it stops working.
            page.get_by_role("link", name="Keys").click()
            page.get_by_role("button", name="Revoke ci-app").click()
            page.get_by_role("button", name="Confirm revoking ci-app").click()
            expect(page.locator("tr", has=page.locator(".key-name", has_text="ci-app"))).to_contain_text("revoked")
            deadline = time.monotonic() + 5
            while True:
                try:
                    client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
                except openai.AuthenticationError:
                    break
                assert time.monotonic() < deadline, "the revoked key still works"
                time.sleep(0.2)

            # On a phone.
            phone = b.phone_page()
            _goto(phone, base, "overview")
            expect(phone.get_by_role("navigation", name="Console pages")).to_be_visible()
            for route in ("overview", "keys", "models"):
                _goto(phone, base, route)
                phone.wait_for_timeout(200)
                overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{route}: the page is wider than a phone's screen by {overflow}px"
                b.shot(phone, f"08-phone-{route}")
            phone.close()

            # Sign out: the admin API no longer answers this browser.
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Master key")).to_be_visible()
            status = page.evaluate("fetch('/admin/keys').then(r => r.status)")
            assert status == 401
            b.allowed_errors.append((base + "/admin/keys", 401))

            assert b.offsite == [], f"the console reached outside the gateway: {b.offsite}"
            assert b.unexpected_errors() == [], f"JavaScript console errors: {b.unexpected_errors()}"
        finally:
            b.close()
