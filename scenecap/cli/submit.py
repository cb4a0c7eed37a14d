"""`scenecap submit URL_OR_PATH... [--from-file FILE] [--wait]`: send jobs to a running
service (local files are uploaded first) and follow them. One target is submitted alone and
followed live; several go in batches of up to 100 (docs/api.md, "Batches")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from scenecap.cli.options import job_fields
from scenecap.cli.output import ProgressBar, exit_code, fail, image_summary, summary
from scenecap.client import ScenecapClient
from scenecap.core.errors import MediaUnreachable, ScenecapError
from scenecap.schemas import JobAccepted
from scenecap.schemas.cost import MAX_BATCH


def run_submit(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("scenecap: error: pass --api-key or set SCENECAP_API_KEY", file=sys.stderr)
        return 2
    targets = list(args.media_url)
    try:
        fields = job_fields(args)  # refused options end the run before anything is sent
        if args.from_file:
            targets += _listed(args.from_file)
        if not targets:
            print("scenecap: error: give a URL or a file, or --from-file", file=sys.stderr)
            return 2
        with ScenecapClient(args.api_url, args.api_key) as client:
            if any(_is_local(target) for target in targets):
                client.list(limit=1)  # a wrong key is told now, not after an upload
            if len(targets) > 1:
                return _submit_many(client, targets, fields, args)
            return _submit_one(client, targets[0], fields, args)
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    except httpx.HTTPError as exc:
        return fail("SERVICE_UNREACHABLE", f"cannot reach {args.api_url}: {exc}")
    except OSError as exc:
        return fail("FILE_UNREADABLE", f"{exc.filename}: {exc.strerror}")


def _submit_one(
    client: ScenecapClient, target: str, fields: dict[str, Any], args: argparse.Namespace
) -> int:
    created = client.create(_media_url(client, target), **fields)
    if not isinstance(created, JobAccepted):  # An image: answered inline.
        answer = created.model_dump(mode="json")
        print(json.dumps(answer, indent=2) if args.json else image_summary(answer))
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
    print(json.dumps(job, indent=2) if args.json else summary(job))
    return exit_code(job)


def _submit_many(
    client: ScenecapClient, targets: list[str], fields: dict[str, Any], args: argparse.Namespace
) -> int:
    """One line per target, in order: its job id (then, with --wait, how it ended) or its
    error (a file that could not be uploaded included: the others go on); exit 1 if any was
    refused or did not complete."""
    outcomes: list[dict[str, object]] = []
    for start in range(0, len(targets), MAX_BATCH):
        chunk = targets[start : start + MAX_BATCH]
        sent: list[tuple[str, dict[str, Any]]] = []
        refused: dict[str, dict[str, object]] = {}
        for target in chunk:
            try:
                sent.append((target, {"media_url": _media_url(client, target), **fields}))
            except ScenecapError as exc:
                refused[target] = _refusal(target, exc.code, exc.message, exc.status_code)
            except OSError as exc:
                refused[target] = _refusal(target, "FILE_UNREADABLE", str(exc.strerror), 400)
        answers = client.create_batch([r for _t, r in sent]).results if sent else []
        made = {target: item for (target, _r), item in zip(sent, answers, strict=True)}
        for target in chunk:
            if target in refused:
                outcomes.append(refused[target])
                continue
            item = made[target]
            outcome: dict[str, object] = {"target": target, "status": item.status}
            if item.job_id is not None:
                outcome["job_id"] = str(item.job_id)
            if item.error is not None:
                outcome["error"] = item.error.model_dump(mode="json")
            outcomes.append(outcome)
    for outcome in outcomes:
        if args.wait and "job_id" in outcome:
            outcome["job_status"] = client.wait(str(outcome["job_id"]), timeout=86400).status
        print(json.dumps(outcome) if args.json else _line(outcome))
    ok = all("job_id" in o and o.get("job_status", "COMPLETED") == "COMPLETED" for o in outcomes)
    return 0 if ok else 1


def _refusal(target: str, code: str, message: str, status: int) -> dict[str, object]:
    return {"target": target, "status": status, "error": {"code": code, "message": message}}


def _line(outcome: dict[str, object]) -> str:
    if "job_id" not in outcome:
        error = outcome["error"]
        assert isinstance(error, dict)
        return f"{'refused':36}  {error['code']}: {error['message']}  {outcome['target']}"
    ended = f"  {outcome['job_status']}" if "job_status" in outcome else ""
    return f"{outcome['job_id']}{ended}  {outcome['target']}"


def _listed(path: str) -> list[str]:
    """The targets in a file (or '-', stdin): one per line; blank lines and # comments go."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _is_local(target: str) -> bool:
    return "://" not in target and not target.startswith("data:")


def _media_url(client: ScenecapClient, target: str) -> str:
    """A URL as given; a local file uploaded first (with a progress bar), as upload://<id>."""
    path = Path(target)
    if not _is_local(target):
        return target
    if not path.is_file():
        raise MediaUnreachable(f"no such file: {target}")
    bar = ProgressBar(sys.stderr)
    uploaded = client.upload(
        path, progress=lambda sent, total: bar("uploading", sent * 100 // total)
    )
    bar.close()
    return uploaded.media_url
