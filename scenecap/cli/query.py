"""`scenecap search WORDS` and `scenecap ask JOB_ID QUESTION`: search your completed jobs, or
ask one of them a question, on a running service (docs/api.md, "Search" and "Questions")."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable

import httpx

from scenecap.cli.output import fail
from scenecap.client import ScenecapClient
from scenecap.core.errors import ScenecapError

_MATCH = re.compile(r"<b>(.*?)</b>")


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
