"""Fixtures of the deploy checks' tests."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def binary() -> Path:
    path = os.environ.get("AI_GATEWAY_BIN")
    assert path and Path(path).is_file(), "set AI_GATEWAY_BIN to a built ai-gateway binary"
    return Path(path).resolve()
