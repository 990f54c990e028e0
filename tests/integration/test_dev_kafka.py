"""dev/kafka fails loudly, and cleans up, when the broker cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_start_fails_non_zero_when_the_port_is_taken(bootstrap: str) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = {**os.environ, "FOREWARN_KAFKA_PORT": str(port), "FOREWARN_KAFKA_WAIT": "20"}
        try:
            result = subprocess.run(
                [str(REPO / "dev" / "kafka"), "start"],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            subprocess.run(
                [str(REPO / "dev" / "kafka"), "reset"],
                check=False,
                env=env,
                capture_output=True,
                timeout=60,
            )
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
