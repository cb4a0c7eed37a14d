"""`scenecap submit URL_OR_PATH [--wait]`: send a job to a running service (a local file is
uploaded first) and follow it live."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

from api.schemas import JobAccepted
from scenecap.cli.options import job_fields
from scenecap.cli.output import ProgressBar, exit_code, fail, summary
from scenecap.client import ScenecapClient
from scenecap.core.errors import ScenecapError


def run_submit(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("scenecap: error: pass --api-key or set SCENECAP_API_KEY", file=sys.stderr)
        return 2
    try:
        with ScenecapClient(args.api_url, args.api_key) as client:
            media_url = args.media_url
            if Path(media_url).is_file():
                media_url = _upload(client, Path(media_url))
            created = client.create(media_url, **job_fields(args))
            if not isinstance(created, JobAccepted):  # An image: answered inline.
                print(json.dumps(created.model_dump(mode="json"), indent=2))
                return 0
            if not args.wait:
                print(json.dumps(created.model_dump(mode="json")) if args.json else created.job_id)
                return 0
            bar = ProgressBar(sys.stderr)
            for event in client.events(created.job_id):
                if event.event == "progress":
                    bar(event.data["stage"], event.data["percent_complete"])
            bar.close()
            job = client.get(created.job_id).model_dump(mode="json")
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    except httpx.HTTPError as exc:
        return fail("SERVICE_UNREACHABLE", f"cannot reach {args.api_url}: {exc}")
    print(json.dumps(job, indent=2) if args.json else summary(job))
    return exit_code(job)


def _upload(client: ScenecapClient, path: Path) -> str:
    """Upload a local file with a progress bar; return the media_url that names it."""
    bar = ProgressBar(sys.stderr)
    uploaded = client.upload(
        path, progress=lambda sent, total: bar("uploading", sent * 100 // total)
    )
    bar.close()
    return uploaded.media_url
