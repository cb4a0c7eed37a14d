"""The job request options `analyze` and `submit` share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from scenecap.core.errors import ValidationFailed
from scenecap.core.media import METADATA_TYPES, TRANSCRIPT
from scenecap.schemas import CategoriesRequest


def add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenes", action="store_true", help="frames (or segments) follow the detected scenes"
    )
    parser.add_argument(
        "--scene-threshold",
        type=_bounded("scene_threshold", float),
        metavar="T",
        help="with --scenes: the detector's threshold (ContentDetector: 27 by default)",
    )
    parser.add_argument(
        "--min-scene-seconds",
        type=_bounded("min_scene_seconds", float),
        metavar="SECONDS",
        help=f"with --scenes: the shortest scene cut ({_span('min_scene_seconds')}, default 0.5)",
    )
    parser.add_argument(
        "--max-frames", type=_bounded("max_frames", int), metavar=_span("max_frames")
    )
    parser.add_argument(
        "--segments",
        type=_bounded("segment_seconds", float),
        metavar="SECONDS",
        help=f"segment mode: caption every stretch of SECONDS ({_span('segment_seconds')}) "
        "with several frames",
    )
    parser.add_argument(
        "--frames-per-segment",
        type=_bounded("frames_per_segment", int),
        metavar=_span("frames_per_segment"),
        help="with --segments: frames in each segment's request "
        f"(default {_default('frames_per_segment')})",
    )
    parser.add_argument(
        "--transcript",
        action="store_true",
        help="also transcribe the speech (needs SCENECAP_ASR_BACKEND=local or openai)",
    )
    parser.add_argument(
        "--max-total-tokens",
        type=int,
        metavar="N",
        help="the most model tokens the job may use: fewer frames or smaller images if needed",
    )
    parser.add_argument("--json", action="store_true", help="print the job as JSON")


def _limits(field: str) -> tuple[float, float, bool]:
    """A request field's bounds as its schema declares them: low, high, and whether low is
    itself refused (the options check what the API would, before anything is sent)."""
    found = {type(rule).__name__: rule for rule in CategoriesRequest.model_fields[field].metadata}
    if "Gt" in found:
        return found["Gt"].gt, found["Le"].le, True
    return found["Ge"].ge, found["Le"].le, False


def _span(field: str) -> str:
    low, high, _open = _limits(field)
    return f"{low:g}-{high:g}"


def _default(field: str) -> Any:
    return CategoriesRequest.model_fields[field].default


def _bounded(field: str, kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` within the field's bounds (its message, not 60
    choices)."""
    low, high, low_open = _limits(field)

    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not (low < number if low_open else low <= number) or number > high:
            bound = "above" if low_open else "from"
            raise argparse.ArgumentTypeError(f"must be {bound} {low:g} to {high:g}")
        return number

    return parse


def job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job request fields the command line gave; options that would be ignored (one
    mode's option with the other mode) are refused instead."""
    ignored = [
        (args.frames_per_segment, args.segments is None, "--frames-per-segment needs --segments"),
        (args.max_frames, args.segments, "--max-frames is for frame mode, not --segments"),
        (args.scene_threshold, not args.scenes, "--scene-threshold needs --scenes"),
        (args.min_scene_seconds, not args.scenes, "--min-scene-seconds needs --scenes"),
    ]
    for value, wrong, why in ignored:
        if value is not None and wrong:
            raise ValidationFailed(why)
    fields: dict[str, Any] = {
        "use_scenes": args.scenes,
        "max_frames": args.max_frames or _default("max_frames"),
    }
    if args.scene_threshold is not None:
        fields["scene_threshold"] = args.scene_threshold
    if args.min_scene_seconds is not None:
        fields["min_scene_seconds"] = args.min_scene_seconds
    if args.transcript:
        fields["metadata"] = [*METADATA_TYPES, TRANSCRIPT]
    if args.max_total_tokens is not None:
        fields["max_total_tokens"] = args.max_total_tokens
    if args.segments is not None:
        fields |= {
            "segment_seconds": args.segments,
            "frames_per_segment": args.frames_per_segment or _default("frames_per_segment"),
        }
    return fields
