"""`scenecap submit URL [--wait]`: send a job to a running service and follow it live."""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from api.schemas import JobAccepted
from scenecap.cli.output import ProgressBar, exit_code, fail, summary
from scenecap.client import ScenecapClient
from scenecap.core.enums import JobStage
from scenecap.core.errors import ScenecapError


def run_submit(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("scenecap: error: pass --api-key or set SCENECAP_API_KEY", file=sys.stderr)
        return 2
    try:
        with ScenecapClient(args.api_url, args.api_key) as client:
            created = client.create(
                args.media_url, use_scenes=args.scenes, max_frames=args.max_frames
            )
            if not isinstance(created, JobAccepted):  # An image: answered inline.
                print(json.dumps(created.model_dump(mode="json"), indent=2))
                return 0
            if not args.wait:
                print(json.dumps(created.model_dump(mode="json")) if args.json else created.job_id)
                return 0
            bar = ProgressBar(sys.stderr)
            for event in client.events(created.job_id):
                if event.event == "progress":
                    bar(JobStage(event.data["stage"]), event.data["percent_complete"])
            bar.close()
            job = client.get(created.job_id).model_dump(mode="json")
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    except httpx.HTTPError as exc:
        return fail("SERVICE_UNREACHABLE", f"cannot reach {args.api_url}: {exc}")
    print(json.dumps(job, indent=2) if args.json else summary(job))
    return exit_code(job)
