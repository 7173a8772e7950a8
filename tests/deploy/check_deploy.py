#!/usr/bin/env python3
"""The deploy checks: everything under deploy/ that can be checked without a cluster or Docker.

- Kubernetes (kubernetes_checks.py): each kustomization rendered by the real `kubectl kustomize`
  and its objects validated (Kubernetes JSON schemas, Prometheus Operator structure, promtool),
  compared with their sources (deploy/kubernetes/generate.sh --check, then the parsed content)
  and checked against each other and against the gateway configuration they carry.
- Compose (compose_checks.py): every deploy/docker-compose*.yml parsed and its services checked.
- Configurations: deploy/gateway.yaml, the ConfigMap's and the compose files' through
  `ai-gateway check`.

Usage: check_deploy.py --bin target/debug/ai-gateway (scripts/check-deploy.sh runs it). Exit 1
with every problem listed. A missing tool is a problem, never a skip.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from compose_checks import check_compose
from deploy_common import DEPLOY, REPO, Problems, run_check
from kubernetes_checks import (
    KUSTOMIZATIONS,
    check_container_hardening,
    check_gateway,
    check_generated,
    check_generated_files,
    check_wiring,
    render,
    validate_schemas,
)

# Shell environments the compose files' comments tell users to run them with.
COMPOSE_ENVS = {
    "docker-compose.yml": ({}, {"AI_GATEWAY_CONFIG": "/etc/ai-gateway/stack.yaml"}),
}


def check_all(binary: Path) -> Problems:
    problems = check_generated_files()
    for kustomization in KUSTOMIZATIONS:
        where = f"deploy/kubernetes/{kustomization}"
        try:
            objs = render(kustomization)
        except RuntimeError as e:
            problems.add(where, str(e))
            continue
        problems.extend(validate_schemas(where, objs))
        problems.extend(check_wiring(where, objs))
        problems.extend(check_container_hardening(where, objs))
        problems.extend(check_gateway(where, objs, binary))
        problems.extend(check_generated(objs))
        print(f"{where}: {len(objs)} objects rendered and checked")
    for compose in sorted(DEPLOY.glob("docker-compose*.yml")):
        for env in COMPOSE_ENVS.get(compose.name, ({},)):
            problems.extend(check_compose(compose, binary, env))
        print(f"{compose.relative_to(REPO)}: checked")
    problems.extend(run_check("deploy/gateway.yaml", binary, (DEPLOY / "gateway.yaml").read_text(), {}))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=os.environ.get("AI_GATEWAY_BIN"), required="AI_GATEWAY_BIN" not in os.environ)
    args = parser.parse_args()
    if not args.bin.is_file():
        print(f"no ai-gateway binary at {args.bin}", file=sys.stderr)
        return 1
    problems = check_all(args.bin.resolve())
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"deploy checks: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
