"""docker-compose.yml, the Dockerfile and the pinned versions stay in step with the code. Docker
cannot run here; the suite's own worker and scheduler are started with compose's commands."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scenecap.cli.main import build_parser
from scenecap.core.settings import Settings
from tests.conftest import settings_env, wait_for

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


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
        elif name not in ("postgres", "redis", "seaweedfs", "flower", "vllm", "ollama"):
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
    assert "exec celery -A worker.celery_app flower" in flower_script()
    assert (
        flower["environment"]["SCENECAP_BROKER_URL"]
        == (services["worker"]["environment"]["SCENECAP_BROKER_URL"])
    )
    assert "--events" in services["worker"]["command"]  # Flower sees tasks only with events
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("flower") for dep in extras["monitoring"])
    installed = re.search(r'pip install .*"\.\[([^\]]*)\]"', (ROOT / "Dockerfile").read_text())
    assert installed and "monitoring" in installed.group(1).split(",")
    # Its API can shut workers down: published on this machine's loopback only.
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def flower_script(port: int = 5555) -> str:
    """The flower service's shell command as the container's shell gets it ($$ is $)."""
    command = compose()["services"]["flower"]["command"]
    assert command[:2] == ["sh", "-c"]
    return str(command[2]).replace("$$", "$").replace("--port=5555", f"--port={port}")


def run_flower(settings: Settings, port: int, **env: str) -> subprocess.Popen[bytes]:
    """The compose service's command, with this venv's `celery` first on the PATH."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.Popen(
        ["sh", "-c", flower_script(port) + " --address=127.0.0.1"],
        env={**settings_env(settings), "PATH": path, "FLOWER_USER": "admin", **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_flower_refuses_to_start_without_a_password(settings: Settings) -> None:
    flower = run_flower(settings, free_port(), FLOWER_PASSWORD="")
    _out, err = flower.communicate(timeout=30)
    assert flower.returncode != 0 and b"set FLOWER_PASSWORD" in err


def test_flower_starts_on_our_celery_app_behind_its_password(settings: Settings) -> None:
    port = free_port()
    flower = run_flower(settings, port, FLOWER_PASSWORD="flower-test-password")
    try:

        def healthy() -> bool:
            assert flower.poll() is None, "flower exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthcheck").status_code in (200, 401)
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=60, interval=0.2, what="flower to answer")
        assert httpx.get(f"http://127.0.0.1:{port}/api/workers").status_code == 401
        allowed = httpx.get(
            f"http://127.0.0.1:{port}/api/workers", auth=("admin", "flower-test-password")
        )
        assert allowed.status_code == 200
    finally:
        flower.terminate()
        flower.communicate(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_compose_has_no_default_secrets_and_a_least_privilege_store_identity() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "SCENECAP_SECRET_KEY"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), (secret, uses)
    assert compose()["services"]["postgres"]["image"].startswith("pgvector/pgvector:")
    identities = json.loads(compose()["configs"]["seaweedfs-s3"]["content"])["identities"]
    actions = {action for identity in identities for action in identity["actions"]}
    assert actions and all(action.endswith(":scenecap") for action in actions), actions
    assert not any(action.startswith("Admin") for action in actions)


def test_compose_mounts_the_local_speech_model_where_api_and_worker_look() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        folder = services[name]["environment"]["SCENECAP_ASR_MODEL_PATH"]
        mounts = [volume.rsplit(":", 2) for volume in services[name]["volumes"]]
        assert any(target == folder and mode == "ro" for _h, target, mode in mounts), name
    installed = re.search(r'pip install .*"\.\[([^\]]*)\]"', (ROOT / "Dockerfile").read_text())
    assert installed and "speech" in installed.group(1).split(",")


def test_compose_has_real_model_profiles_the_app_can_point_at() -> None:
    services = compose()["services"]
    vllm, ollama = services["vllm"], services["ollama"]
    assert vllm["profiles"] == ["vllm"] and ollama["profiles"] == ["ollama"]
    # Segment mode sends several images in one request: vLLM must be told to take them.
    limit = next(arg for arg in vllm["command"] if arg.startswith("--limit-mm-per-prompt="))
    assert '{"image":${SCENECAP_VLM_MAX_IMAGES_PER_REQUEST:-8}}' in limit
    assert any(
        arg.startswith("--max-model-len=${SCENECAP_VLM_CONTEXT_TOKENS") for arg in vllm["command"]
    )
    default_url = services["api"]["environment"]["SCENECAP_VLM_BASE_URL"]
    assert default_url == "${SCENECAP_VLM_BASE_URL:-http://vllm:8000/v1}"
    assert "ollama pull" in " ".join(ollama["entrypoint"])


def test_the_image_installs_its_dependencies_before_it_copies_the_code() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    lines = text.splitlines()
    deps = next(n for n, line in enumerate(lines) if "-r /tmp/requirements.txt" in line)
    first_code = next(n for n, line in enumerate(lines) if line.startswith("COPY api "))
    assert deps < first_code, "a code change would reinstall every dependency"
    # The list it installs is the project's own: its dependencies and the extras it ships.
    snippet = re.search(r'python -c "(.*?)" > /tmp/requirements.txt', lines[deps])
    assert snippet
    listed = subprocess.run(
        [sys.executable, "-c", snippet.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert listed == [*project["dependencies"], *extras["monitoring"], *extras["speech"]]
