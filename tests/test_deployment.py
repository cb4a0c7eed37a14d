"""docker-compose.yml, the Dockerfile and the pinned versions stay in step with the code. Docker
cannot run here; the suite's own worker and scheduler are started with compose's commands."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import yaml

from scenecap.cli.main import build_parser
from scenecap.core.settings import Settings
from tests.conftest import settings_env, wait_for

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_runs_every_process_of_the_design() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "api", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_commands_are_real_cli_commands() -> None:
    expected = {"migrate": "migrate", "api": "api", "worker": "worker", "beat": "beat"}
    for name, service in compose()["services"].items():
        command = service.get("command") or []
        if command[:1] == ["scenecap"]:
            assert command[1] == expected[name], f"{name} runs scenecap {command[1]}"
            build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown option
            assert service["environment"]["SCENECAP_ENVIRONMENT"] == "production", name
        elif name not in ("postgres", "redis", "seaweedfs", "flower"):
            raise AssertionError(f"{name} runs neither scenecap nor a known server: {command}")


def test_docker_compose_accepts_the_file() -> None:
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("Docker Compose is not installed here: docker-compose.yml was not validated")
    if version.returncode != 0:
        pytest.skip("Docker Compose is not installed here: docker-compose.yml was not validated")
    checked = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_installed_versions_are_the_pinned_ones() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    required = [
        re.split(r"[<>=\[; ]", requirement)[0]
        for requirement in metadata.requires("scenecap") or []
    ]
    unpinned = [name for name in required if _canonical(name) not in map(_canonical, pins)]
    assert not unpinned, f"make constraints: {unpinned} are not pinned"
    drifted = {
        name: (metadata.version(name), pinned)
        for name, pinned in pins.items()
        if metadata.version(name) != pinned
    }
    assert not drifted, f"the venv does not hold the pinned versions: {drifted}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_compose_points_the_app_at_postgres_redis_and_the_s3_store() -> None:
    services = compose()["services"]
    environment = services["api"]["environment"]
    assert environment["SCENECAP_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["SCENECAP_BROKER_URL"].startswith("redis://")
    assert environment["SCENECAP_MEDIA_STORE"].endswith("s3://scenecap/media}")
    assert "seaweedfs:8333" in environment["SCENECAP_S3_ENDPOINT_URL"]
    weed = services["seaweedfs"]["command"]
    assert (
        weed[0] == "mini" and "-bucket=scenecap" in weed and "healthcheck" in services["seaweedfs"]
    )
    for name in ("api", "worker", "beat"):
        assert services[name]["environment"]["AWS_ACCESS_KEY_ID"], name


def test_dockerfile_copies_every_package() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) ", (ROOT / "Dockerfile").read_text(), re.M))
    assert {p.rstrip("*") for p in packages} <= copied


def test_flower_is_an_optional_profile_on_the_same_broker() -> None:
    services = compose()["services"]
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert flower["command"][:4] == ["celery", "-A", "worker.celery_app", "flower"]
    assert (
        flower["environment"]["SCENECAP_BROKER_URL"]
        == (services["worker"]["environment"]["SCENECAP_BROKER_URL"])
    )
    assert "--events" in services["worker"]["command"]  # Flower sees tasks only with events
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("flower") for dep in extras["monitoring"])
    assert '".[monitoring]"' in (ROOT / "Dockerfile").read_text()


FLOWER = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower"]


def test_flower_starts_on_our_celery_app_and_answers(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flower = subprocess.Popen(
        [*FLOWER, f"--port={port}", "--address=127.0.0.1"],
        env=settings_env(settings),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def healthy() -> bool:
            assert flower.poll() is None, "flower exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthcheck").text == "OK"
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=60, interval=0.2, what="flower to answer")
    finally:
        flower.terminate()
        flower.wait(timeout=30)
