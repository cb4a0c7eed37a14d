"""The `scenecap` command: run the service's processes and manage it (DESIGN §7)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from scenecap.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenecap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="the whole service on this machine, embedded defaults")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    demo = commands.add_parser(
        "demo", help="start the embedded service, analyse a generated sample video, print it"
    )
    demo.add_argument("--port", type=int, default=8000)

    api = commands.add_parser("api", help="the HTTP API (uvicorn)")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)

    worker = commands.add_parser("worker", help="a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument("--queues", default="media,webhooks")
    worker.add_argument("--beat", action="store_true", help="also run the scheduler in-process")
    worker.add_argument("--events", action="store_true", help="send task events (for Flower)")
    commands.add_parser("beat", help="the scheduler for periodic work (job reaper)")
    commands.add_parser("migrate", help="alembic upgrade head on the configured database")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create an API key (printed once)")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help='print {"key", "webhook_secret"}')

    analyze = commands.add_parser(
        "analyze", help="run the pipeline in this process on one file or URL and print the result"
    )
    analyze.add_argument("target", metavar="PATH_OR_URL")
    _job_options(analyze)

    submit = commands.add_parser("submit", help="submit a media URL to a running service")
    submit.add_argument("media_url", metavar="URL")
    submit.add_argument("--wait", action="store_true", help="follow the job live, then print it")
    submit.add_argument(
        "--api-url",
        default=os.environ.get("SCENECAP_API_URL", "http://127.0.0.1:8000"),
        help="the service (default: $SCENECAP_API_URL or http://127.0.0.1:8000)",
    )
    submit.add_argument(
        "--api-key",
        default=os.environ.get("SCENECAP_API_KEY"),
        help="your API key (default: $SCENECAP_API_KEY)",
    )
    _job_options(submit)
    return parser


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", action="store_true", help="one frame per detected scene")
    parser.add_argument("--max-frames", type=int, default=60, choices=range(1, 61), metavar="1-60")
    parser.add_argument("--json", action="store_true", help="print the job as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        from scenecap.dev import run_dev

        return run_dev(host=args.host, port=args.port)
    if args.command == "demo":
        from scenecap.dev import run_demo

        return run_demo(port=args.port)
    if args.command == "api":
        import uvicorn

        from scenecap.logs import log_config

        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=log_config(get_settings()),
        )
        return 0
    if args.command == "worker":
        return _worker(args.concurrency, args.queues, beat=args.beat, events=args.events)
    if args.command == "beat":
        from worker.celery_app import celery_app

        level = get_settings().log_level
        celery_app.start(["celery", "beat", "--loglevel", level, "--schedule", _beat_schedule()])
        return 0
    if args.command == "analyze":
        from scenecap.analyze import run_analyze

        return run_analyze(
            args.target,
            get_settings(),
            use_scenes=args.scenes,
            as_json=args.json,
            max_frames=args.max_frames,
        )
    if args.command == "submit":
        from scenecap.submit import run_submit

        return run_submit(args)
    if args.command == "migrate":
        from db.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at head")
        return 0
    return _create_key(args.name, as_json=args.json)


def _worker(concurrency: int | None, queues: str, *, beat: bool, events: bool) -> int:
    from worker.celery_app import celery_app

    argv = ["worker", "--loglevel", get_settings().log_level, "--queues", queues]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if beat:
        argv += ["--beat", "--schedule", _beat_schedule()]
    if events:
        argv.append("--task-events")
    celery_app.worker_main(argv)
    return 0


def _beat_schedule() -> str:
    # Beat keeps its last-run times in a file; the working directory may not be writable.
    return str(Path(tempfile.gettempdir()) / "scenecap-beat-schedule")


def issue_key(name: str) -> tuple[str, str]:
    """Create an API key in the configured database; return (key, webhook secret)."""
    from db.keys import create_key
    from db.session import make_engine, make_session_factory

    engine = make_engine(get_settings().database_url)
    with make_session_factory(engine).begin() as session:
        key, plaintext = create_key(session, name)
        secret = key.webhook_secret
    engine.dispose()
    return plaintext, secret


def _create_key(name: str, *, as_json: bool) -> int:
    plaintext, secret = issue_key(name)
    if as_json:
        print(json.dumps({"key": plaintext, "webhook_secret": secret}))
    else:
        print(f"API key for {name!r} (shown once, keep it safe):\n  {plaintext}")
        print(f"Webhook signing secret:\n  {secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
