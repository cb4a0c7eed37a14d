"""Engines, session factories, and the one way work is queued: after its transaction commits.

Sessions are owned by the edges (a request, a task, a command). Code inside a unit of work
calls `enqueue(session, task, ...)`; the message is sent by the factory's sender once that
session's transaction commits, and dropped if it rolls back, so a worker never looks for a
row that is not there yet (polar's JobQueueManager works the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class Message:
    """A task to send: its name, its arguments, and a delay in seconds."""

    task: str
    args: tuple[Any, ...]
    countdown: float = 0.0


# Sends one message to the workers (the API's and the worker's JobQueue.send).
Sender = Callable[[Message], None]
_SENDER, _OUTBOX = "scenecap.sender", "scenecap.outbox"


def make_engine(
    database_url: str,
    *,
    max_connections: int = 15,
    pre_ping: bool = True,
    autocommit: bool = False,
    statement_timeout: float | None = None,
) -> Engine:
    """Create an engine suited to the URL (SQLite for dev, PostgreSQL in production).

    PostgreSQL connections are opened on demand, up to max_connections, and kept: a pool
    that closes what it opened past a core size churns a server process per request under
    load. `pre_ping` tests each connection as it leaves the pool (a round trip); without it,
    a connection broken by an outage fails one statement, and that failure discards every
    pooled connection. An `autocommit` engine serves reads that need no transaction: each
    statement is one round trip, with no BEGIN before it and no ROLLBACK after. With
    `statement_timeout` (seconds; PostgreSQL) a statement running longer is cancelled.
    """
    isolation = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}, **isolation
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        database_url,
        pool_pre_ping=pre_ping,
        pool_size=max_connections,
        max_overflow=0,
        connect_args={"connect_timeout": 5, **server_options(statement_timeout)},
        **isolation,
    )


def server_options(statement_timeout: float | None) -> dict[str, str]:
    """PostgreSQL connection options: the statement timeout, if any."""
    if statement_timeout is None:
        return {}
    return {"options": f"-c statement_timeout={round(statement_timeout * 1000)}"}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the dev worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine, sender: Sender | None = None) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit, and whose sessions send
    what was enqueued in them through `sender` after each commit (nothing, without one: the
    outbox sweep and the reaper pick such work up)."""
    return sessionmaker(engine, expire_on_commit=False, info={_SENDER: sender})


def enqueue(session: Session, task: str, *args: Any, countdown: float = 0.0) -> None:
    """Send a task once this session's transaction commits; drop it if it rolls back."""
    session.info.setdefault(_OUTBOX, []).append(Message(task, args, countdown))


def release_connection(session: Session) -> None:
    """End the session's transaction now, so its pooled connection goes back to the pool
    instead of idling while the request waits on something slow (a thread, a URL check).
    What was enqueued so far is sent; the session stays usable."""
    session.commit()


def commit_now(session: Session) -> None:
    """Commit now, so the transaction's locks go at once, but leave what was enqueued to be
    sent when the unit of work ends (its last commit, an empty one, sends it): a broker
    outage then reaches the caller from there, as it would have without this commit."""
    messages = session.info.pop(_OUTBOX, [])
    session.commit()
    session.info[_OUTBOX] = messages


@event.listens_for(Session, "after_commit")
def _send_outbox(session: Session) -> None:
    messages: list[Message] = session.info.pop(_OUTBOX, [])
    sender: Sender | None = session.info.get(_SENDER)
    if sender is not None:
        for message in messages:
            sender(message)


@event.listens_for(Session, "after_rollback")
def _drop_outbox(session: Session) -> None:
    session.info.pop(_OUTBOX, None)


def rowcount(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed (SQLAlchemy types its result as a plain
    Result, which hides the attribute every DML result has)."""
    return int(result.rowcount)


def ping(engine: Engine) -> None:
    """Run a trivial query; raises if the database is unreachable."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def dialect_insert(session: Session) -> Any:
    """The dialect's INSERT (PostgreSQL or SQLite), which offers ON CONFLICT clauses."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
