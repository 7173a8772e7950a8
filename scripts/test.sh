#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and integration tests
# (which start their own redis-server / nats-server / prometheus on free loopback ports), then the official
# `openai` and `anthropic` Python SDKs against the running gateway, the web console in a headless
# Chromium (Playwright), the deploy checks (scripts/check-deploy.sh), then the Node `openai` package
# and the Vercel AI SDK (tests/node). Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
# Tests that need prometheus, promtool or amtool fail when it is missing under CI=true
# (elsewhere they skip that check and say so).
export CI="${CI:-true}"
VENV="${AI_GATEWAY_VENV:-$HOME/.cache/ai-gateway/venv}"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# A real Prometheus scrapes the gateway in tests/it/observability/metrics.rs; promtool and amtool check deploy/.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# The Node client tests (tests/node: the `openai` package and the Vercel AI SDK) need node and npm.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The web console's test drives a real headless Chromium (Playwright for Python, tests/console).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== python SDK environment"
venv_with "$VENV" tests/sdk/requirements.txt

echo "== cargo build"
cargo build --quiet --bin ai-gateway

AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway" scripts/check-deploy.sh

echo "== rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --status-level fail --final-status-level slow
else
  cargo test --no-fail-fast
fi

echo "== SDK tests (openai, anthropic)"
AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway" "$VENV/bin/python" -m pytest -q tests/sdk

echo "== Node client tests (openai, Vercel AI SDK)"
# node and npm were installed above when missing (never skipped); npm ci installs package-lock.json exactly.
(cd tests/node && npm ci --no-audit --no-fund --silent)
AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway" npm --prefix tests/node test
echo "== console in headless Chromium (Playwright; screenshots in tests/console/screenshots)"
AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway" "$VENV/bin/python" -m pytest -q tests/console
