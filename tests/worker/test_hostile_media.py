"""Hostile media end to end: each case is refused with its code at submit time, or its job
ends FAILED with its code within a deadline; the worker lives on and other jobs still work."""

from __future__ import annotations

import http.server
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import imageio_ffmpeg
import pytest

from scenecap.core.settings import Settings
from tests.conftest import is_terminal, poll_job, serve_http
from tests.support.clips import audio_only

pytestmark = pytest.mark.usefixtures("worker")
MIB = 1024 * 1024


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def ffmpeg_clip(path: Path, *args: str) -> bytes:
    quiet = ["-hide_banner", "-loglevel", "error", "-y"]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), *quiet, *args, *encode], check=True)
    return path.read_bytes()


class HostileHandler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}  # the fixture fills these in before serving
    requests: ClassVar[dict[str, int]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        seen = self.requests[name] = self.requests.get(name, 0) + 1
        files = self.files
        try:
            if name == "drip.mp4":  # a valid start, then a byte every half second
                self._head("video/mp4", None)
                self.wfile.write(files["sample.mp4"][:4096])
                for byte in files["sample.mp4"][4096:]:
                    time.sleep(0.5)  # the drip itself: slower than the fetch deadline allows
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            elif name in ("huge.mp4", "huge-lying.mp4"):  # more than MAX_MEDIA_BYTES
                self._head("video/mp4", "1000" if name == "huge-lying.mp4" else None)
                self.wfile.write(files["sample.mp4"][:4096])
                for _ in range(80):
                    self.wfile.write(b"\0" * MIB)
            elif name == "shifty.mp4":  # a video for the submit check, a web page afterwards
                body = files["sample.mp4"] if seen == 1 else b"<!doctype html><p>gotcha</p>" * 99
                self._head("video/mp4", str(len(body)))
                self.wfile.write(body)
            else:
                body = files[name]
                self._head("video/mp4", str(len(body)))
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up on us, as it should

    def _head(self, content_type: str, length: str | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Connection", "close")
        self.end_headers()


@pytest.fixture(scope="module")
def hostile(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("hostile")
    sample = (media_dir / "sample.mp4").read_bytes()
    HostileHandler.requests = {}
    HostileHandler.files = {
        "sample.mp4": sample,
        "empty.mp4": b"",
        "random.mp4": (media_dir / "random.mp4").read_bytes(),
        "page.mp4": (media_dir / "page.html").read_bytes(),
        "truncated.mp4": sample[:3000],
        "huge-image.png": png_claiming(60000, 60000),
        "too-long.mp4": ffmpeg_clip(
            folder / "long.mp4", "-f", "lavfi", "-i", "color=c=red:s=64x64:r=2:d=125"
        ),
        "too-wide.mp4": ffmpeg_clip(
            folder / "wide.mp4", "-f", "lavfi", "-i", "color=c=blue:s=2048x1152:r=1:d=1"
        ),
        "no-frames.mp4": ffmpeg_clip(
            folder / "none.mp4", "-f", "lavfi", "-i", "testsrc=s=64x64:r=30", "-frames:v", "0"
        ),
        "audio-only.m4a": audio_only(folder / "audio.m4a").read_bytes(),
    }
    with serve_http(HostileHandler) as url:
        yield url


# (file, where it is stopped, code)
CASES = [
    ("empty.mp4", "submit", "UNSUPPORTED_MEDIA"),
    ("random.mp4", "submit", "UNSUPPORTED_MEDIA"),
    ("page.mp4", "submit", "UNSUPPORTED_MEDIA"),
    ("truncated.mp4", "job", "MEDIA_UNREADABLE"),
    ("huge-image.png", "job", "RESOLUTION_TOO_LARGE"),
    ("too-long.mp4", "job", "DURATION_TOO_LONG"),
    ("too-wide.mp4", "job", "RESOLUTION_TOO_LARGE"),
    ("no-frames.mp4", "job", "NO_VIDEO_STREAM"),
    ("audio-only.m4a", "job", "NO_VIDEO_STREAM"),
    ("huge.mp4", "job", "MEDIA_TOO_LARGE"),
    ("huge-lying.mp4", "job", "MEDIA_UNREADABLE"),  # read stops at the declared 1000 bytes
    ("drip.mp4", "job", "MEDIA_UNREACHABLE"),
    ("shifty.mp4", "job", "UNSUPPORTED_MEDIA"),
]


def test_the_test_settings_make_these_cases_hostile(settings: Settings) -> None:
    assert settings.max_media_bytes < 80 * MIB
    assert settings.max_duration_seconds < 125
    assert settings.max_input_pixels < 2048 * 1152
    assert settings.fetch_timeout_seconds <= 10  # the drip would take many minutes


@pytest.mark.parametrize(("name", "where", "code"), CASES, ids=[c[0] for c in CASES])
def test_hostile_media_gets_its_code(
    client: httpx.Client, hostile: str, fake_vlm: Any, name: str, where: str, code: str
) -> None:
    response = client.post("/v2/media/categories", json={"media_url": f"{hostile}/{name}"})
    if where == "submit":
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == code
        return
    assert response.status_code == 202, response.text
    job = poll_job(client, response.json()["job_id"], until=is_terminal, timeout=60)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == code, job["error"]
    assert job["error"]["message"]
    # The message names the media, never a path of ours (the worker's temp file, say).
    assert "/tmp" not in job["error"]["message"] and "scenecap-" not in job["error"]["message"]


def test_the_worker_lives_on_with_bounded_memory_after_them(
    client: httpx.Client,
    media_server: str,
    fake_vlm: Any,
    worker: subprocess.Popen[bytes],
) -> None:
    assert worker.poll() is None
    job_id = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2}
    ).json()["job_id"]
    assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    for pid in [str(worker.pid), *children]:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(
            next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
        )
        assert rss_kb < 1024 * 1024, f"worker process {pid} peaked at {rss_kb // 1024} MB"
