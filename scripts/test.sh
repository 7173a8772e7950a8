#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and integration tests
# (which start their own redis-server / nats-server / prometheus on free loopback ports), then the official
# `openai` and `anthropic` Python SDKs against the running gateway. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
# Tests that need prometheus, promtool or amtool fail when it is missing under CI=true
# (elsewhere they skip that check and say so).
export CI="${CI:-true}"
VENV="${AI_GATEWAY_VENV:-$HOME/.cache/ai-gateway/venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# A real Prometheus scrapes the gateway in tests/it/observability.rs; promtool and amtool check deploy/.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== python SDK environment"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/sdk/requirements.txt

echo "== cargo build"
cargo build --quiet --bin ai-gateway

echo "== rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --status-level fail --final-status-level slow
else
  cargo test --no-fail-fast
fi

echo "== SDK tests (openai, anthropic)"
AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway" "$VENV/bin/python" -m pytest -q tests/sdk
