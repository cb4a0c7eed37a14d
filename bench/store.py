"""Uploads through the API into each media store: `make bench-store` (python -m bench.store).

A 1 GB file (cached in bench/.cache) is sent to POST /v2/media/uploads of one `scenecap api`
process (the Python client, streaming), once with a local-folder store and once with an S3
store on SeaweedFS, and in the same run it is put where the upload ends up without the API:
`cp` into the store's folder, and a direct S3 put (obstore, as the API uses) into the bucket.
Printed: MB/s of each, the API's share of the floor (target >= 0.6), and how much the API
process's peak RSS grew during the upload (target <= 64 MB, whatever the size).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import obstore
import psycopg

from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.sample import write_sample_video
from scenecap.client import ScenecapClient
from scenecap.store.s3 import S3Store
from tests.support.seaweedfs import REGION, seaweedfs

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
ADMIN_URL = os.environ.get(
    "SCENECAP_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench_store"


def big_file(megabytes: int) -> Path:
    """A video's first bytes (so the upload is sniffed as one), then random bytes."""
    path = CACHE / f"upload-{megabytes}MB.mp4"
    if path.exists() and path.stat().st_size >= megabytes << 20:
        return path
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        head = write_sample_video(Path(folder) / "head.mp4").read_bytes()
    with path.open("wb") as out:
        out.write(head)
        block = os.urandom(1 << 20)
        for _ in range(megabytes):
            out.write(block)
    return path


def key() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS scenecap_bench_store WITH (FORCE)")
        connection.execute("CREATE DATABASE scenecap_bench_store")
    upgrade(DATABASE)
    engine = make_engine(DATABASE)
    with make_session_factory(engine).begin() as session:
        plaintext = create_key(session, "bench")[1]
    engine.dispose()
    return plaintext


@contextlib.contextmanager
def api(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = 19500 + os.getpid() % 400
    command = [sys.executable, "-m", "scenecap.cli.main", "api", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise LookupError(field)


def through_api(url: str, pid: int, api_key: str, path: Path) -> tuple[float, float]:
    """Seconds the upload took, and MB the API's peak RSS grew by."""
    before = memory_kb(pid, "VmRSS")
    with ScenecapClient(url, api_key, timeout=600) as client:
        started = time.perf_counter()
        uploaded = client.upload(path)
        seconds = time.perf_counter() - started
    assert uploaded.bytes == path.stat().st_size
    return seconds, (memory_kb(pid, "VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    args = parser.parse_args()
    path = big_file(args.megabytes)
    size_mb = path.stat().st_size / (1 << 20)
    api_key = key()
    rows = []
    with tempfile.TemporaryDirectory(prefix="scenecap-bench-store-") as folder:
        store_dir = Path(folder) / "store"
        store_dir.mkdir()
        env = {
            "SCENECAP_DATABASE_URL": DATABASE,
            "SCENECAP_BROKER_URL": "redis://127.0.0.1:6379/11",
            "SCENECAP_MAX_MEDIA_BYTES": str(4 << 30),
            "SCENECAP_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        subprocess.run(["cp", str(path), str(store_dir / "floor")], check=True)
        floor = time.perf_counter() - started
        (store_dir / "floor").unlink()
        with api({**env, "SCENECAP_MEDIA_STORE": f"file://{store_dir}"}) as (url, pid):
            seconds, grew = through_api(url, pid, api_key, path)
        rows.append(("local folder", "cp", floor, seconds, grew))

        with seaweedfs(Path(folder)) as server:
            store_url = server.store_url("bench")
            s3 = S3Store(store_url, endpoint_url=server.endpoint_url, region=REGION)
            started = time.perf_counter()
            obstore.put(s3.store, "floor", path, chunk_size=8 << 20)
            floor = time.perf_counter() - started
            s3.delete_prefix("floor")
            s3_env = {
                **env,
                **server.environment,
                "SCENECAP_MEDIA_STORE": store_url,
                "SCENECAP_S3_ENDPOINT_URL": server.endpoint_url,
                "SCENECAP_S3_REGION": REGION,
            }
            with api(s3_env) as (url, pid):
                seconds, grew = through_api(url, pid, api_key, path)
            rows.append(("S3 (SeaweedFS)", "direct S3 put", floor, seconds, grew))
    print(f"\n{size_mb:.0f} MB upload, one API process, 2 cores\n")
    print("| store | floor | floor MB/s | API MB/s | API / floor | API peak RSS growth |")
    print("| --- | --- | --- | --- | --- | --- |")
    for store, how, floor, seconds, grew in rows:
        print(
            f"| {store} | {how} | {size_mb / floor:,.0f} | {size_mb / seconds:,.0f} "
            f"| {floor / seconds:.2f}x | {grew:.0f} MB |"
        )


if __name__ == "__main__":
    main()
