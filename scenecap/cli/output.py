"""How the command line shows a job: a progress bar, a readable summary, an exit code."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from scenecap.core.media import TRANSCRIPT


class ProgressBar:
    """A bar redrawn in place on a terminal; plain lines (one per stage or 10%) otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: tuple[str, int] = ("", -100)

    def __call__(self, stage: str, percent: int) -> None:
        """Show the stage (a JobStage, or "uploading") at this percent."""
        label = stage.replace("_", " ")
        if self.tty:
            filled = self.WIDTH * percent // 100
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {percent:3d}%  {label:<18}")
        elif stage != self.last[0] or percent - self.last[1] >= 10:
            self.stream.write(f"{percent:3d}%  {label}\n")
        else:
            return
        self.last = (str(stage), percent)
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summary(job: dict[str, Any], *, frames: bool = True) -> str:
    """The readable form of a finished job; without `frames`, their count instead of a line
    for each."""
    media = job.get("media") or {}
    lines = [f"{job['media_url']}"]
    if media.get("width"):  # probed: a job that failed before may know nothing of its media
        shape = f"{media['width']}x{media.get('height')}"
        if job.get("media_type") == "image" or not media.get("duration"):
            lines.append(f"  {shape}, {media.get('codec', '?')}")
        else:
            lines.append(
                f"  {media['duration']:.1f} s, {shape}, {media.get('fps', 0):.2f} fps, "
                f"{media.get('codec', '?')}"
            )
    if job.get("status") not in (None, "COMPLETED"):
        error = job.get("error") or {}
        lines.append(f"  {job['status']}: {error.get('code', '')} {error.get('message', '')}")
    results = job.get("results") or {}
    if results.get("description"):
        lines += ["", results["description"]]
    for name in job["metadata"]:
        if name == TRANSCRIPT:
            spoken = results.get(TRANSCRIPT) or {}
            if spoken.get("text"):
                lines.append(
                    f"  transcript ({spoken.get('language') or '?'}): {spoken['text'][:300]}"
                )
            continue
        entries = results.get(name) or []
        if entries:
            top = ", ".join(f"{e['name']} ({e['count']})" for e in entries[:8])
            lines.append(f"  {name}: {top}")
    lines.append("")
    if results.get("chapters"):
        lines.append(f"  chapters ({results['segment_seconds']:g}-second segments):")
    for chapter in results.get("chapters", []):
        lines.append(
            f"  {chapter['start']:8.1f}-{chapter['end']:.1f} s  {chapter['title']}: "
            f"{chapter['summary']}"
        )
    for segment in results.get("segments", []):
        lines.append(f"  {segment['start']:8.1f}-{segment['end']:.1f} s  {segment['caption']}")
    shown = results.get("frames", []) if frames else []
    if not frames and results.get("frames"):
        lines.append(f"  {len(results['frames'])} frames captioned")
    for frame in shown:
        scene = (
            f" [scene {frame['scene_start']:.2f}-{frame['scene_end']:.2f}]"
            if frame.get("scene_start") is not None
            else ""
        )
        lines.append(f"  {frame['timestamp']:8.3f} s{scene}  {frame['caption']}")
    timings = job.get("timings") or {}
    if timings:
        spent = ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in timings.items())
        lines += ["", f"time: {spent}"]
    return "\n".join(lines)


def image_summary(answer: dict[str, Any]) -> str:
    """The readable form of an image answered inline (no job)."""
    lines = [answer.get("caption", "")]
    for name, values in (answer.get("metadata") or {}).items():
        if values:
            lines.append(f"  {name}: {', '.join(str(v) for v in values)}")
    return "\n".join(lines)


def fail(code: str, message: str) -> int:
    """Say why a command failed, in one line on stderr; return the exit code 1."""
    print(f"scenecap: error: {code}: {' '.join(message.split())}", file=sys.stderr)
    return 1


def exit_code(job: dict[str, Any]) -> int:
    """0 for a completed job; else 1, after one line saying why it did not complete."""
    if job["status"] == "COMPLETED":
        return 0
    error = job.get("error") or {}
    return fail(error.get("code", job["status"]), error.get("message", ""))
