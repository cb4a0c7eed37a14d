"""The configured database for short-lived commands: one transaction, one clear error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.session import make_engine, make_session_factory
from scenecap.core.errors import DatabaseUnavailable


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn an unreachable database into DatabaseUnavailable (one line, not a traceback)."""
    try:
        yield
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc.orig}") from None


@contextmanager
def transaction(database_url: str) -> Iterator[Session]:
    """One transaction on the database, committed if the block succeeds."""
    engine = make_engine(database_url)
    try:
        with database_errors(), make_session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()
