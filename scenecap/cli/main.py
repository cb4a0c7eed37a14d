"""The `scenecap` command: run the service's processes and manage it (see the README)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from pydantic import ValidationError

from scenecap.cli.options import add_job_options, job_fields
from scenecap.cli.output import fail
from scenecap.core.errors import ScenecapError
from scenecap.core.settings import Settings, config_problems, get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenecap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _service_commands(commands)
    _key_commands(commands)
    _job_commands(commands)
    return parser


# What add_subparsers returns (a private class of argparse, spelt once).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _service_commands(commands: Commands) -> None:
    """The commands that run the service (or a part of it) on this machine."""
    dev = commands.add_parser("dev", help="the whole service on this machine, embedded defaults")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument(
        "--new-key", action="store_true", help="a new API key instead of the last start's"
    )
    demo = commands.add_parser(
        "demo", help="start the embedded service, analyse a generated sample video, print it"
    )
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--json", action="store_true", help="print the finished job as JSON")

    api = commands.add_parser("api", help="the HTTP API (uvicorn)")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)

    worker = commands.add_parser("worker", help="a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument("--queues", default="media,webhooks")
    worker.add_argument("--beat", action="store_true", help="also run the scheduler in-process")
    worker.add_argument("--events", action="store_true", help="send task events (for Flower)")
    beat = commands.add_parser(
        "beat", help="the scheduler for periodic work (job reaper, webhook outbox sweep)"
    )
    for scheduler in (worker, beat):
        scheduler.add_argument(
            "--schedule",
            default=str(Path(tempfile.gettempdir()) / f"scenecap-beat-schedule-{os.getuid()}"),
            help="the file where the scheduler keeps its last-run times (default: in $TMPDIR, "
            "as the working directory may not be writable)",
        )
    commands.add_parser("migrate", help="alembic upgrade head on the configured database")


def _key_commands(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create an API key (printed once)")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help='print {"key", "webhook_secret"}')
    update = key_commands.add_parser("update", help="change a key's daily token quota")
    update.add_argument("key", metavar="PREFIX_OR_ID")
    for quota in (create, update):
        quota.add_argument(
            "--tokens-per-day",
            type=_quota,
            default=None,
            required=quota is update,
            metavar="N",
            help="model tokens the key's jobs may use per UTC day; past it, new jobs get 429 "
            "QUOTA_EXCEEDED ('none' lifts it)",
        )
    listed = key_commands.add_parser("list", help="every key: name, prefix, created, last used")
    listed.add_argument("--json", action="store_true", help="print the keys as JSON")
    revoke = key_commands.add_parser("revoke", help="revoke a key (401 from its next request)")
    revoke.add_argument("key", metavar="PREFIX_OR_ID")
    revoke.add_argument(
        "--cancel-jobs", action="store_true", help="also cancel the key's pending and running jobs"
    )


def _job_commands(commands: Commands) -> None:
    """The commands about jobs: run one here, or talk to a running service."""
    analyze = commands.add_parser(
        "analyze", help="run the pipeline in this process on one file or URL and print the result"
    )
    analyze.add_argument("target", metavar="PATH_OR_URL")
    add_job_options(analyze)

    submit = commands.add_parser(
        "submit", help="submit a media URL (or upload a local file) to a running service"
    )
    submit.add_argument("media_url", metavar="URL_OR_PATH", nargs="*")
    submit.add_argument(
        "--from-file", metavar="FILE", help="more targets, one per line ('-': standard input)"
    )
    submit.add_argument("--wait", action="store_true", help="follow the job live, then print it")
    add_job_options(submit)

    search = commands.add_parser(
        "search", help="search your completed jobs: captions, chapters, speech and labels"
    )
    search.add_argument("words", nargs="+", metavar="WORDS", help='"a phrase", or, -word work')
    search.add_argument("--limit", type=int, default=20, help="hits per page (1-100)")
    search.add_argument("--job", default=None, metavar="JOB_ID", help="only in this job")
    search.add_argument("--cursor", default=None, help="the next page, as the last one said")
    search.add_argument("--json", action="store_true", help="print the page as JSON")

    ask = commands.add_parser("ask", help="ask a completed job a question; answered with times")
    ask.add_argument("job_id", metavar="JOB_ID")
    ask.add_argument("question", nargs="+", metavar="QUESTION")
    ask.add_argument("--max-tokens", type=int, default=300, help="the longest answer")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    export = commands.add_parser(
        "export", help="a completed job's captions, chapters, speech and text as timed cues"
    )
    export.add_argument("job_id", metavar="JOB_ID")
    export.add_argument("--format", choices=("json", "csv", "srt", "vtt"), default="srt")
    export.add_argument(
        "--kind",
        action="append",
        choices=("caption", "chapter", "speech", "text"),
        help="only cues of this kind (repeat for more; default: all)",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    get = commands.add_parser("get", help="one job: its state, or its results once finished")
    get.add_argument("job_id", metavar="JOB_ID")
    get.add_argument("--json", action="store_true", help="print the job as JSON")

    report = commands.add_parser(
        "report", help="write a job's report page to a file (pictures inlined), or share it"
    )
    report.add_argument("job_id", metavar="JOB_ID")
    report.add_argument("--output", "-o", metavar="FILE", help="default scenecap-JOB_ID.html")
    report.add_argument(
        "--share", action="store_true", help="print a signed link to the page instead"
    )
    report.add_argument(
        "--expires-in", type=int, default=7 * 24 * 3600, metavar="SECONDS", help="the link's life"
    )

    listed = commands.add_parser("list", help="your jobs, newest first")
    listed.add_argument(
        "--status", choices=("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
    )
    listed.add_argument("--tag", default=None, help="only jobs with this job_tag")
    listed.add_argument("--limit", type=int, default=20, help="jobs per page (1-100)")
    listed.add_argument("--cursor", default=None, help="the next page, as the last one said")
    listed.add_argument("--json", action="store_true", help="print the page as JSON")
    for client_command in (submit, search, ask, export, get, listed, report):
        client_command.add_argument(
            "--api-url",
            default=os.environ.get("SCENECAP_API_URL", "http://127.0.0.1:8000"),
            help="the service (default: $SCENECAP_API_URL or http://127.0.0.1:8000)",
        )
        client_command.add_argument(
            "--api-key",
            default=os.environ.get("SCENECAP_API_KEY"),
            help="your API key (default: $SCENECAP_API_KEY)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command if args.command != "keys" else f"keys {args.keys_command}"
    try:
        return COMMANDS[command](args)
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    except ValidationError as exc:
        if exc.title != Settings.__name__:  # not the configuration's: a bug, shown as one
            raise
        return fail("CONFIG", "; ".join(config_problems(exc)))


def _dev(args: argparse.Namespace) -> int:
    from scenecap.cli.dev import run_dev

    return run_dev(host=args.host, port=args.port, new_key=args.new_key)


def _demo(args: argparse.Namespace) -> int:
    from scenecap.cli.dev import run_demo

    return run_demo(port=args.port, as_json=args.json)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.server import PROTOCOL
    from scenecap.core.logs import log_config

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the
    # handler it found; with these, a clean stop exits 0 instead of dying by the signal.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: None)
    settings = get_settings()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=log_config(settings),
        http=PROTOCOL,
        # Nothing here reads the client's address or scheme; rewriting them from
        # X-Forwarded-* on every request costs throughput for nothing.
        proxy_headers=False,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from worker.celery_app import celery_app

    argv = ["worker", "--loglevel", get_settings().log_level, "--queues", args.queues]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.beat:
        argv += ["--beat", "--schedule", args.schedule]
    if args.events:
        argv.append("--task-events")
    celery_app.worker_main(argv)
    return 0


def _beat(args: argparse.Namespace) -> int:
    from worker.celery_app import celery_app

    # Celery.start takes the arguments after the program name, the subcommand first.
    argv = ["beat", "--loglevel", get_settings().log_level, "--schedule", args.schedule]
    return int(celery_app.start(argv) or 0)


def _migrate(_args: argparse.Namespace) -> int:
    from migrations.apply import upgrade
    from scenecap.cli.database import database_errors

    with database_errors():
        upgrade(get_settings().database_url)
    print("database is at head")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from scenecap.cli.keys import create_command

    return create_command(
        get_settings().database_url,
        args.name,
        as_json=args.json,
        tokens_per_day=args.tokens_per_day,
    )


def _quota(value: str) -> int | None:
    if value.lower() == "none":
        return None
    try:
        tokens = int(value)
    except ValueError:
        tokens = 0
    if tokens < 1:
        raise argparse.ArgumentTypeError("a whole number of tokens, 1 or more, or 'none'")
    return tokens


def _keys_update(args: argparse.Namespace) -> int:
    from scenecap.cli.keys import update_command

    return update_command(get_settings().database_url, args.key, tokens_per_day=args.tokens_per_day)


def _keys_list(args: argparse.Namespace) -> int:
    from scenecap.cli.keys import list_command

    return list_command(get_settings().database_url, as_json=args.json)


def _keys_revoke(args: argparse.Namespace) -> int:
    from scenecap.cli.keys import revoke_command

    return revoke_command(get_settings().database_url, args.key, cancel_jobs=args.cancel_jobs)


def _analyze(args: argparse.Namespace) -> int:
    from scenecap.cli.analyze import run_analyze

    return run_analyze(args.target, get_settings(), job_fields(args), as_json=args.json)


def _submit(args: argparse.Namespace) -> int:
    from scenecap.cli.submit import run_submit

    return run_submit(args)


def _query(args: argparse.Namespace) -> int:
    """The commands that read a running service's jobs (scenecap/cli/query.py)."""
    from scenecap.cli import query

    commands = {
        "search": query.run_search,
        "ask": query.run_ask,
        "export": query.run_export,
        "get": query.run_get,
        "report": query.run_report,
        "list": query.run_list,
    }
    return commands[args.command](args)


# Each command imports what it needs when it runs: `scenecap submit` never loads the worker.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "dev": _dev,
    "demo": _demo,
    "api": _api,
    "worker": _worker,
    "beat": _beat,
    "migrate": _migrate,
    "keys create": _keys_create,
    "keys list": _keys_list,
    "keys update": _keys_update,
    "keys revoke": _keys_revoke,
    "analyze": _analyze,
    "submit": _submit,
    **dict.fromkeys(("search", "ask", "export", "get", "list", "report"), _query),
}


if __name__ == "__main__":
    sys.exit(main())
