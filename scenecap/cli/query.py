"""The commands that read a running service: `search WORDS` and `ask JOB_ID QUESTION` (search
your completed jobs, or ask one a question: docs/api.md, "Search" and "Questions"),
`export JOB_ID` (its cues: "Exports"), `get JOB_ID` and `list`."""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from scenecap.cli.output import fail, summary
from scenecap.client import ScenecapClient
from scenecap.core.errors import ScenecapError

_MATCH = re.compile(r"<b>(.*?)</b>")
_PICTURE = re.compile(r"src='(/v2/media/categories/[^']+/thumbnails/\d+\.jpg[^']*)'")


def run_search(args: argparse.Namespace) -> int:
    def search(client: ScenecapClient) -> None:
        page = client.search(
            " ".join(args.words), limit=args.limit, cursor=args.cursor, job_id=args.job
        )
        if args.json:
            print(json.dumps(page.model_dump(mode="json"), indent=2))
            return
        if not page.data:
            print("no matches", file=sys.stderr)
        bold = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("*", "*")
        for hit in page.data:
            where = f"{hit.start:.1f}-{hit.end:.1f} s"
            text = _MATCH.sub(lambda m: bold[0] + m.group(1) + bold[1], hit.highlight)
            print(f"{hit.job_id}  {where:>15}  {hit.kind:<10}  {text}")
        if page.next_cursor:
            print(f"more: --cursor {page.next_cursor}", file=sys.stderr)

    return _with_client(args, search)


def run_ask(args: argparse.Namespace) -> int:
    def ask(client: ScenecapClient) -> None:
        answer = client.ask(args.job_id, " ".join(args.question), max_tokens=args.max_tokens)
        if args.json:
            print(json.dumps(answer.model_dump(mode="json"), indent=2))
            return
        print(answer.answer)
        for citation in answer.citations:
            print(f"  {citation.start:.1f}-{citation.end:.1f} s  {citation.kind}: {citation.text}")

    return _with_client(args, ask)


def run_export(args: argparse.Namespace) -> int:
    def export(client: ScenecapClient) -> None:
        text = client.export(args.job_id, args.format, args.kind or ())
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)

    return _with_client(args, export)


def run_get(args: argparse.Namespace) -> int:
    def get(client: ScenecapClient) -> None:
        job = client.get(args.job_id).model_dump(mode="json")
        if args.json:
            print(json.dumps(job, indent=2))
        elif job["status"] in ("PENDING", "PROCESSING"):
            print(f"{job['job_id']}  {job['status']}  {job['stage']} {job['percent_complete']} %")
        else:
            print(summary(job))

    return _with_client(args, get)


def run_list(args: argparse.Namespace) -> int:
    def listed(client: ScenecapClient) -> None:
        page = client.list(
            limit=args.limit, status=args.status, cursor=args.cursor, job_tag=args.tag
        )
        if args.json:
            print(json.dumps(page.model_dump(mode="json"), indent=2))
            return
        for job in page.data:
            tag = f"  [{job.job_tag}]" if job.job_tag else ""
            print(
                f"{job.job_id}  {job.status:<10}  {job.created_at:%Y-%m-%d %H:%M}  "
                f"{job.media_name or job.media_url}{tag}"
            )
        if page.next_cursor:
            print(f"more: --cursor {page.next_cursor}", file=sys.stderr)

    return _with_client(args, listed)


def save_report(base_url: str, key: str, job_id: str, path: Path) -> None:
    """Write the job's report page to `path`, its pictures inlined (a file opened in a
    browser after the service stopped has no service to load them from)."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        page = client.get(f"/v2/media/categories/{job_id}/report").raise_for_status().text

        def inlined(match: re.Match[str]) -> str:
            picture = client.get(html.unescape(match.group(1)))
            if picture.status_code != 200:
                return match.group(0)
            return f"src='data:image/jpeg;base64,{base64.b64encode(picture.content).decode()}'"

        path.write_text(_PICTURE.sub(inlined, page), encoding="utf-8")


def run_report(args: argparse.Namespace) -> int:
    def report(client: ScenecapClient) -> None:
        if args.share:
            link = client.share(args.job_id, expires_in=args.expires_in)
            url = link.report_url
            if url.startswith("/"):  # no SCENECAP_PUBLIC_BASE_URL: relative to the service
                url = args.api_url.rstrip("/") + url
            print(url)
            print(f"valid until {link.expires_at.isoformat()}", file=sys.stderr)
            return
        path = Path(args.output or f"scenecap-{args.job_id}.html")
        save_report(args.api_url, args.api_key, args.job_id, path)
        print(path.resolve().as_uri())

    return _with_client(args, report)


def _with_client(args: argparse.Namespace, use: Callable[[ScenecapClient], None]) -> int:
    """Run `use` with a client of the service; 0, or 1 with one error line."""
    if not args.api_key:
        print("scenecap: error: pass --api-key or set SCENECAP_API_KEY", file=sys.stderr)
        return 2
    try:
        with ScenecapClient(args.api_url, args.api_key) as client:
            use(client)
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    except httpx.HTTPError as exc:
        return fail("SERVICE_UNREACHABLE", f"cannot reach {args.api_url}: {exc}")
    return 0
