"""docker-compose.yml and the Dockerfile stay in step with the code (Docker cannot run here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from scenecap.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_runs_every_process_of_the_design() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "api", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_commands_are_real_cli_commands() -> None:
    for name, service in compose()["services"].items():
        command = service.get("command") or []
        if command[:1] == ["scenecap"]:
            build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown option
            assert service["environment"]["SCENECAP_ENVIRONMENT"] == "production", name


def test_compose_points_the_app_at_postgres_and_redis() -> None:
    environment = compose()["services"]["api"]["environment"]
    assert environment["SCENECAP_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["SCENECAP_BROKER_URL"].startswith("redis://")


def test_dockerfile_copies_every_package() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) ", (ROOT / "Dockerfile").read_text(), re.M))
    assert {p.rstrip("*") for p in packages} <= copied
