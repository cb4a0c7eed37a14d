"""The migration history brings an empty database to head and back."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from db.models import Base
from migrations.apply import downgrade, upgrade
from tests.conftest import recreate_database


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.integration
def test_upgrade_downgrade_upgrade_round_trip() -> None:
    url = recreate_database("scenecap_migrations_test")
    upgrade(url)
    assert tables(url) == set(Base.metadata.tables)
    downgrade(url, "base")
    assert tables(url) == set()
    upgrade(url)
    assert tables(url) == set(Base.metadata.tables)


@pytest.mark.integration
def test_migrations_match_the_models() -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = recreate_database("scenecap_migrations_test")
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == [], "models changed without a migration"


def test_sqlite_upgrade_for_the_embedded_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'nested' / 'dev.db'}"
    upgrade(url)
    # SQLite's full-text index is an FTS5 table, with FTS5's own tables behind it.
    fts = {name for name in tables(url) if name.startswith("passages_fts")}
    assert "passages_fts" in fts
    assert tables(url) - fts == set(Base.metadata.tables)
