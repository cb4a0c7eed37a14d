"""Where the API's hot reads run: on the event loop, through psycopg's async connections for
PostgreSQL, and through a SQLAlchemy engine for SQLite (`dev`, the embedded default).

A thread hop and SQLAlchemy's execution of a statement (checkout, result metadata, row
processing) cost the API more than PostgreSQL takes to answer these reads; on the event
loop, a compiled statement runs straight on an autocommit connection: one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cache
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine, Select, make_url
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.compiler import Compiled

from db.session import make_engine, server_options
from scenecap.core.errors import DatabaseUnavailable, ServiceUnavailable

log = logging.getLogger(__name__)
Row = Mapping[str, Any]
_POSTGRESQL = postgresql.psycopg.dialect()


class Reads(ABC):
    """Runs read-only statements outside any transaction; opened and closed with the app."""

    dialect: str

    @staticmethod
    def of(
        database_url: str, max_connections: int, statement_timeout: float | None = None
    ) -> Reads:
        if database_url.startswith("postgresql"):
            return PostgresReads(database_url, max_connections, statement_timeout)
        return SqliteReads(make_engine(database_url, autocommit=True))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abstractmethod
    async def rows(self, statement: Select[Any], values: dict[str, Any]) -> list[Row]:
        """The statement's rows as mappings of column name to value."""


class PostgresReads(Reads):
    """psycopg's async connections in a pool of their own, in autocommit mode."""

    dialect = "postgresql"

    def __init__(
        self, database_url: str, max_connections: int, statement_timeout: float | None = None
    ) -> None:
        self.conninfo = make_url(database_url).set(drivername="postgresql")
        options = {"autocommit": True, "connect_timeout": 5, **server_options(statement_timeout)}
        self.pool = AsyncConnectionPool(
            self.conninfo.render_as_string(hide_password=False),
            min_size=1,
            max_size=max_connections,
            kwargs=options,
            timeout=10,
            open=False,
        )
        # After a connection failed: each read first checks the server answers, so reads
        # fail at once during an outage instead of waiting out the pool's timeout.
        self.down = False
        self._checks: set[asyncio.Task[None]] = set()  # held, or the loop may drop them

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def rows(self, statement: Select[Any], values: dict[str, Any]) -> list[Row]:
        compiled = _compiled(statement)
        if self.down:
            if not await self._reachable():
                raise DatabaseUnavailable("the database is unavailable; try again shortly")
            self.down = False
        try:
            async with self.pool.connection() as connection:
                cursor = await connection.execute(
                    compiled.string, compiled.construct_params(values)
                )
                names = [column.name for column in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]
        except PoolTimeout:
            # No connection came free in time: all busy (overload), or none can be made.
            if not await self._reachable():
                self.down = True
                raise DatabaseUnavailable(
                    "the database is unavailable; try again shortly"
                ) from None
            raise ServiceUnavailable(
                "the service is overloaded; try again shortly", {"retry_after": 5}
            ) from None
        except psycopg.OperationalError as exc:
            log.warning("database unavailable: %s", exc)
            self.down = True
            # An outage breaks every pooled connection, not only this one: test them all now,
            # so the first requests after it ends do not fail one by one.
            check = asyncio.get_running_loop().create_task(self._check())
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)
            raise DatabaseUnavailable("the database is unavailable; try again shortly") from None

    async def _reachable(self) -> bool:
        try:
            connection = await psycopg.AsyncConnection.connect(
                self.conninfo.render_as_string(hide_password=False), connect_timeout=2
            )
        except psycopg.Error:
            return False
        await connection.close()
        return True

    async def _check(self) -> None:
        with contextlib.suppress(psycopg.Error):
            await self.pool.check()


class SqliteReads(Reads):
    """A SQLAlchemy engine on SQLite, called on the event loop itself. These reads are a few
    indexed rows of a local file, tens of microseconds, less than a hop to a thread costs
    (that hop held GET of a job to 0.23x /healthz); in WAL mode a reader never waits for
    the writer (the worker), so the loop is not held waiting either."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def close(self) -> None:
        self.engine.dispose()

    async def rows(self, statement: Select[Any], values: dict[str, Any]) -> list[Row]:
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(statement, values).mappings()]


@cache
def _compiled(statement: Select[Any]) -> Compiled:
    return statement.compile(dialect=_POSTGRESQL)
