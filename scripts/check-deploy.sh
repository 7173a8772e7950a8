#!/usr/bin/env bash
# The deploy checks, as CI runs them (scripts/test.sh calls this): the Kubernetes manifests
# rendered by `kubectl kustomize` and validated against the Kubernetes JSON schemas (1.30-1.37)
# and the Prometheus Operator objects' structure, the alert rules by promtool, the generated
# objects against their sources, every compose file parsed and its services checked, and every
# gateway configuration under deploy/ (the ConfigMap's included) by `ai-gateway check`; then the
# checker's tests, and the ConfigMap's configuration served by the binary (with a real Redis and
# NATS for the overlay). See tests/deploy/. Installs what it can; a tool it cannot install fails the check.
#   scripts/check-deploy.sh                  (builds the debug binary if AI_GATEWAY_BIN is unset)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
VENV="${AI_GATEWAY_DEPLOY_VENV:-$HOME/.cache/ai-gateway/deploy-venv}"

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# tests/deploy/test_runtime.py runs the ConfigMap's configuration against real servers.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# tests/deploy/test_build_dist.py runs the profile-guided build's training run (wrk, curl).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
# kubectl comes with this machine image (Debian package kubectl, Kubernetes' own repository);
# Debian's kubernetes-client (kubectl 1.20, kustomize v2) cannot render `labels:`.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "check-deploy: kubectl is not installed; install kubectl >= 1.27 (kustomize v5) and run again" >&2
  exit 1
fi

echo "== deploy checks: python environment"
venv_with "$VENV" tests/deploy/requirements.txt

if [ -z "${AI_GATEWAY_BIN:-}" ]; then
  cargo build --quiet --bin ai-gateway
  AI_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/ai-gateway"
fi
export AI_GATEWAY_BIN

echo "== deploy checks ($(kubectl version --client 2>/dev/null | grep -i kustomize))"
"$VENV/bin/python" tests/deploy/check_deploy.py
echo "== deploy checker tests"
"$VENV/bin/python" -m pytest -q tests/deploy
