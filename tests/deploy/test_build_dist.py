"""The image's build is profile-guided (scripts/build-dist.sh): its training run
(scripts/pgo-train.sh) is run here on the binary under test, as the build runs it on the
instrumented one, so a configuration key or a route it uses that stops working fails here rather
than in an image build. The Dockerfile is checked to build through that script."""

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "scripts" / "pgo-train.sh"

# Every load of the training run, in order (path, then what it serves).
LOADS = [
    "/v1/chat/completions",  # openai, three deployments, hedging, a key with limits
    "/v1/chat/completions",  # the same, streamed
    "/v1/chat/completions",  # anthropic provider
    "/v1/chat/completions",
    "/v1/chat/completions",  # gemini provider
    "/v1/chat/completions",
    "/v1/chat/completions",  # bedrock provider
    "/v1/chat/completions",
    "/v1/chat/completions",  # built-in mock
    "/v1/messages",
    "/v1/messages",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/chat/completions",  # a second gateway: cache hits
    "/v1/chat/completions",  # the same, streamed
    "/v1/chat/completions",  # a model behind a pii guardrail that masks
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(binary: Path, **env: str) -> subprocess.CompletedProcess:
    run_env = dict(
        os.environ,
        SECONDS_EACH="1",
        CONC="4",
        MOCK_PORT=str(free_port()),
        GW_PORT=str(free_port()),
    )
    run_env.update(env)
    return subprocess.run(
        [str(TRAIN), str(binary)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_training_run_serves_every_kind_of_request_and_stops_cleanly(binary):
    out = train(binary)
    assert out.returncode == 0, out.stdout + out.stderr
    served = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("pgo-train: /")]
    assert served == LOADS, out.stdout
    # wrk printed a rate for each: requests were answered, every one a 2xx.
    for line in out.stdout.splitlines():
        if line.startswith("pgo-train: /"):
            assert "Requests/sec:" in line, line
    assert out.stdout.rstrip().endswith("pgo-train: done"), out.stdout


def test_the_training_run_fails_when_the_gateway_cannot_start(binary, tmp_path):
    # The gateway's port taken: the run must say so and fail, not train on nothing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = train(binary, GW_PORT=str(port))
    assert out.returncode != 0
    assert "pgo-train:" in out.stderr


def test_the_image_builds_through_the_profile_guided_script():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "scripts/build-dist.sh --locked" in dockerfile
    assert "cargo build --profile dist" not in dockerfile
    assert "rustup component add llvm-tools" in dockerfile
    script = (ROOT / "scripts" / "build-dist.sh").read_text()
    assert "-Cprofile-generate=" in script and "-Cprofile-use=" in script
    assert "scripts/pgo-train.sh" in script
