"""Schemathesis over our own OpenAPI document, against the real API (bounded, fixed seed):
no 5xx for any input, and every response matches the schema it is documented with."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("worker")
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_fuzzing_the_openapi_spec_finds_no_server_error_and_no_schema_drift(
    api_url: str, new_key: Callable[[], str]
) -> None:
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {new_key()}",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "10",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1]
