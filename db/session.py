"""Engines and session factories; sessions are owned by the edges (routes, tasks, CLI)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, *, max_connections: int = 15) -> Engine:
    """Create an engine suited to the URL (SQLite for dev, PostgreSQL in production).

    PostgreSQL connections are opened on demand, up to max_connections.
    """
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=min(5, max_connections),
        max_overflow=max(0, max_connections - 5),
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the dev worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Run a trivial query; raises if the database is unreachable."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def dialect_insert(session: Session) -> Any:
    """The dialect's INSERT (PostgreSQL or SQLite), which offers ON CONFLICT clauses."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
