"""The job request options `analyze` and `submit` share."""

from __future__ import annotations

import argparse
from typing import Any

from scenecap.core.media import METADATA_TYPES, TRANSCRIPT


def add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenes", action="store_true", help="frames (or segments) follow the detected scenes"
    )
    parser.add_argument("--max-frames", type=int, default=60, choices=range(1, 61), metavar="1-60")
    parser.add_argument(
        "--segments",
        type=_segment_seconds,
        metavar="SECONDS",
        help="segment mode: caption every stretch of SECONDS (2-600) with several frames",
    )
    parser.add_argument(
        "--frames-per-segment", type=int, default=4, choices=range(1, 17), metavar="1-16"
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


def _segment_seconds(value: str) -> float:
    seconds = float(value)
    if not 2 <= seconds <= 600:
        raise argparse.ArgumentTypeError("must be between 2 and 600 seconds")
    return seconds


def job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job request fields the command line gave."""
    fields: dict[str, Any] = {"use_scenes": args.scenes, "max_frames": args.max_frames}
    if args.transcript:
        fields["metadata"] = [*METADATA_TYPES, TRANSCRIPT]
    if args.max_total_tokens is not None:
        fields["max_total_tokens"] = args.max_total_tokens
    if args.segments is not None:
        fields |= {"segment_seconds": args.segments, "frames_per_segment": args.frames_per_segment}
    return fields
