"""One measurement in its own process: `python -m bench.measure METHOD VIDEO [ARGS_JSON]`.

Prints one JSON line: wall seconds, peak RSS of this process (or of the tool it ran), and
the method's output. Peak RSS is VmHWM from /proc: getrusage's ru_maxrss survives fork and
exec on Linux, so a child would report its parent's peak. The seconds leave out module
imports (a worker has them loaded) and the thumbnails kept to check correctness, for ours
and the naive way alike.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

THUMB = (160, 90)
# Seconds spent making the checking thumbnails, taken off the measured time.
checking = 0.0


def thumb(image: np.ndarray | bytes) -> list[int]:
    """A small grey copy to compare frames by (a JPEG is decoded first)."""
    global checking
    start = time.perf_counter()
    pixels: Any = (
        cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        if isinstance(image, bytes)
        else image
    )
    gray = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY) if pixels.ndim == 3 else pixels
    small = [int(v) for v in cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA).ravel()]
    checking += time.perf_counter() - start
    return small


def naive_extract(video: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Decode every frame with OpenCV; keep the frames asked for (the naive way).

    Keeps, for each planned time, the frame on screen then; for each reported time, that
    frame and its two neighbours (to check that ours is that frame and not one beside it).
    """
    planned: list[float] = args["planned"]
    reported = {round(t, 3) for t in args.get("reported", [])}
    capture = cv2.VideoCapture(str(video))
    on_screen: dict[str, tuple[float, list[int]]] = {}
    around: dict[str, list[list[int] | None]] = {}
    pending = sorted(planned)
    window: deque[tuple[float, np.ndarray]] = deque(maxlen=3)

    def keep_middle(middle: tuple[float, np.ndarray], before: Any, after: Any) -> None:
        if round(middle[0], 3) in reported:
            around[f"{middle[0]:.3f}"] = [
                thumb(middle[1]),
                thumb(before[1]) if before is not None else None,
                thumb(after[1]) if after is not None else None,
            ]

    while True:
        ok, frame = capture.read()
        if not ok:
            break
        t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        while pending and window and t > pending[0] + 1e-6:
            on_screen[f"{pending.pop(0):.3f}"] = (window[-1][0], thumb(window[-1][1]))
        window.append((t, frame))
        if len(window) >= 2:
            keep_middle(window[-2], window[0] if len(window) == 3 else None, window[-1])
    if window:
        keep_middle(window[-1], window[-2] if len(window) > 1 else None, None)
        for t in pending:
            on_screen[f"{t:.3f}"] = (window[-1][0], thumb(window[-1][1]))
    return {"on_screen": on_screen, "around": around}


def ours_extract(video: Path, args: dict[str, Any]) -> dict[str, Any]:
    from worker.pipeline.extract import ExtractOptions, extract_frames
    from worker.pipeline.plan import PlannedFrame

    plan = [PlannedFrame(i, t) for i, t in enumerate(args["planned"])]
    extracted = list(
        extract_frames(
            video,
            plan,
            ExtractOptions(max_pixels=602112, policy=args["policy"], decoders=args.get("decoders")),
        )
    )
    frames = [
        {"index": frame.planned.index, "timestamp": frame.timestamp, "thumb": thumb(frame.jpeg)}
        for frame in extracted
    ]
    return {"frames": frames}


def ours_scenes(video: Path, args: dict[str, Any]) -> dict[str, Any]:
    from worker.pipeline.scenes import detect_scenes

    scenes = detect_scenes(video, args["duration"])
    return {"cuts": [s.start for s in scenes[1:]]}


def peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_tool(argv: list[str]) -> tuple[str, float]:
    """Run a command; return its stdout and its peak RSS (polled from /proc while it runs)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0.0
    while process.poll() is None:
        try:
            peak = max(peak, peak_rss_mb(process.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.02)  # sampling interval of the RSS probe
    stdout = process.stdout.read() if process.stdout else ""
    if process.wait() != 0:
        raise RuntimeError(f"{argv[0]} failed")
    return stdout, peak


def cli_scenes(video: Path, args: dict[str, Any]) -> dict[str, Any]:
    stdout, peak = run_tool(
        [
            sys.executable,
            "-m",
            "scenedetect",
            "-i",
            str(video),
            "detect-content",
            "list-scenes",
            "-n",
        ]
    )
    line = stdout.split("Comma-separated timecode list:")[1].strip().splitlines()[0]
    return {"cuts": [_seconds(tc) for tc in line.split(",") if tc.strip()], "tool_rss_mb": peak}


def ffmpeg_null(video: Path, args: dict[str, Any]) -> dict[str, Any]:
    from bench.videos import ffmpeg

    _stdout, peak = run_tool(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-f", "null", "-"]
    )
    return {"tool_rss_mb": peak}


def _seconds(timecode: str) -> float:
    hours, minutes, seconds = timecode.strip().split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# Imported before the clock starts: a worker process has them loaded already.
MODULES = {"ours_extract": "worker.pipeline.extract", "ours_scenes": "worker.pipeline.scenes"}
METHODS = {
    "naive_extract": naive_extract,
    "ours_extract": ours_extract,
    "ours_scenes": ours_scenes,
    "cli_scenes": cli_scenes,
    "ffmpeg_null": ffmpeg_null,
}


def main() -> None:
    method, video = sys.argv[1], Path(sys.argv[2])
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if method in MODULES:
        importlib.import_module(MODULES[method])
    start = time.perf_counter()
    output = METHODS[method](video, args)
    seconds = time.perf_counter() - start - checking
    rss = output.pop("tool_rss_mb", None) or peak_rss_mb()
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "output": output}))


if __name__ == "__main__":
    main()
