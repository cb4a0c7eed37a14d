"""`scenecap demo`: the embedded default (SQLite, filesystem broker, local backend) end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.conftest import SCENECAP


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_demo_completes_a_job_with_no_external_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    env["HOME"] = str(tmp_path)  # embedded storage lives under ~/.scenecap
    result = subprocess.run(
        [SCENECAP, "demo", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(result.stdout)
    assert job["status"] == "COMPLETED"
    assert job["usage"]["model"] == "local-cv"
    assert len(job["results"]["frames"]) == job["usage"]["frames"] > 0
    assert "OpenCV" in job["results"]["description"]
    assert (tmp_path / ".scenecap" / "scenecap.db").exists()
