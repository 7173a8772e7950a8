"""What the deploy checks share: where things are, the problem list, small parsers, and
`ai-gateway check` on a configuration's text."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GATEWAY_IMAGE = re.compile(r"^(?:.*/)?ai-gateway(?::[^/]+)?$")
GATEWAY_BINARY = "/usr/local/bin/ai-gateway"


class Problems(list):
    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


# ---------------------------------------------------------------- small parsers


def duration_seconds(value: str) -> float:
    """`250ms`, `30s`, `5m`, `24h`, `30d` (the gateway's and compose's simple forms)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(value).strip())
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def listen_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def run_check(where: str, binary: Path, text: str, env: dict) -> Problems:
    """`ai-gateway check` on a configuration's text, with exactly `env` in the environment."""
    problems = Problems()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        out = subprocess.run(
            [str(binary), "check", "--config", f.name],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), **env},
        )
    if out.returncode != 0:
        problems.add(where, "ai-gateway check failed:\n" + out.stdout + out.stderr)
    return problems
