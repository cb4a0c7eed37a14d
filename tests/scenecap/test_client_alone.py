"""The Python client stands alone: in a clean virtual environment holding only what it needs
(httpx, pydantic and what they need), next to an application with its own `api` and `db`
packages, it imports nothing of the service's and works against a live API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CLIENT_NEEDS = ("httpx", "pydantic")


def closure(names: tuple[str, ...]) -> set[str]:
    """The distributions `names` need, theirs included (extras and markers not asked for
    left out), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = metadata.distribution(todo.pop()).metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level(name: str) -> set[str]:
    """The importable top-level names a distribution installed (packages and modules)."""
    dist = metadata.distribution(name)
    tops = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".pth")) or first in ("..", "__pycache__"):
            continue
        tops.add(first)
    return tops


def clean_venv(root: Path) -> Path:
    """A venv without pip or site packages whose only packages are the client's needs and
    this project's `scenecap` folder; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    packages = root / "packages"
    packages.mkdir()
    site = Path(str(metadata.distribution("httpx").locate_file("")))
    for dist in closure(CLIENT_NEEDS):
        for name in top_level(dist):
            (packages / name).symlink_to(site / name)
    (packages / "scenecap").symlink_to(ROOT / "scenecap")
    (venv_site,) = (root / "venv" / "lib").glob("python*/site-packages")
    (venv_site / "client-only.pth").write_text(f"{packages}\n")
    return root / "venv" / "bin" / "python"


def decoy_application(root: Path) -> Path:
    """An application folder with packages named like the service's own."""
    app = root / "app"
    for package in ("api", "db", "worker"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f"OWNER = 'the application ({package})'\n")
    (app / "api" / "routes.py").write_text("ROUTES = ['/orders']\n")
    return app


SCRIPT = textwrap.dedent(
    """
    import sys
    import api, db
    from scenecap.client import ScenecapClient
    from scenecap.schemas import JobOut

    with ScenecapClient(sys.argv[1], sys.argv[2]) as client:
        accepted = client.create(sys.argv[3], max_frames=2)
        job = client.wait(accepted.job_id, timeout=120)
    assert isinstance(job, JobOut)
    service = ("fastapi", "sqlalchemy", "celery", "cv2", "pydantic_settings", "api.schemas")
    print(job.status, len(job.results["frames"]), api.OWNER, db.OWNER,
          sorted(m for m in service if m in sys.modules))
    """
)


@pytest.mark.usefixtures("worker")
def test_the_client_runs_in_a_clean_venv_beside_an_application_of_its_own(
    tmp_path: Path, api_url: str, new_key: Callable[[], str], media_server: str, fake_vlm: Any
) -> None:
    python = clean_venv(tmp_path)
    app = decoy_application(tmp_path)
    (app / "main.py").write_text(SCRIPT)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no PYTHONPATH, no venv
    run = subprocess.run(
        [str(python), "main.py", api_url, new_key(), f"{media_server}/sample.mp4"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split(maxsplit=2)[:2] == ["COMPLETED", "2"]
    assert "the application (api) the application (db) []" in run.stdout


def test_the_clean_venv_really_lacks_the_service(tmp_path: Path) -> None:
    """The venv above is no copy of this one: the service's own packages cannot load in it."""
    python = clean_venv(tmp_path)
    run = subprocess.run(
        [str(python), "-c", "import scenecap.client; import fastapi"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=60,
    )
    assert run.returncode != 0 and "No module named 'fastapi'" in run.stderr
