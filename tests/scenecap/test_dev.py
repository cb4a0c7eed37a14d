"""`scenecap demo`: the embedded default (SQLite, filesystem broker, local backend) end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SCENECAP

# `dev` and `demo` start a real worker (and an API) of their own.
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_demo_completes_a_job_with_no_external_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    env["HOME"] = str(tmp_path)  # embedded storage lives under ~/.scenecap
    result = subprocess.run(
        [SCENECAP, "demo", "--port", str(free_port()), "--json"],
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


def dev_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    return {**env, "HOME": str(home)}


def started_dev(home: Path, *args: str) -> dict[str, str]:
    """Start `scenecap dev`, read what it prints until its curl hint, stop it; the printed
    lines as {label: value}."""
    process = subprocess.Popen(
        [SCENECAP, "dev", "--port", str(free_port()), *args],
        env=dev_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            label, _, value = line.partition(": ")
            printed[label] = value.strip()
            if label == "Try":
                break
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert "API key" in printed, err[-2000:]
    return printed


def test_dev_keeps_its_key_across_restarts_and_prints_its_webhook_secret(tmp_path: Path) -> None:
    first = started_dev(tmp_path)
    again = started_dev(tmp_path)
    assert again["API key"].split()[0] == first["API key"].split()[0]
    assert first["Webhook signing secret"].startswith("whsec_")
    fresh = started_dev(tmp_path, "--new-key")
    assert fresh["API key"].split()[0] != first["API key"].split()[0]
    keys = subprocess.run(
        [SCENECAP, "keys", "list", "--json"],
        env=dev_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [k["name"] for k in json.loads(keys.stdout)] == ["dev", "dev"]
    mode = (tmp_path / ".scenecap" / "dev-key.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_dev_on_a_busy_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [SCENECAP, "dev", "--port", str(port)],
            env=dev_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1 and "scenecap is running" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("scenecap: error: PORT_IN_USE:") and f":{port}" in last


def test_demo_prints_a_short_summary_and_writes_a_report_that_stands_alone(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [SCENECAP, "demo", "--port", str(free_port())],
        env=dev_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) < 25 and any("frames captioned" in line for line in lines)
    page = tmp_path / ".scenecap" / "demo-report.html"
    assert lines[-1].endswith(page.as_uri())
    html = page.read_text()
    # Every picture is in the file itself: it opens with no service running.
    assert html.count("src='data:image/jpeg;base64,") >= 4 and "/thumbnails/" not in html
