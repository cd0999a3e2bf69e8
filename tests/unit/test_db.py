"""The database layer on SQLite and a real PostgreSQL server: migrations, WAL, URLs."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from records.db import migrate, normalised_url, open_database
from records.tables import Base


def test_the_migrations_build_exactly_the_tables_the_models_describe(database):
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_migrating_again_changes_nothing(database):
    before = sorted(inspect(database.engine).get_table_names())
    migrate(database.engine)
    assert sorted(inspect(database.engine).get_table_names()) == before
    assert set(before) >= {"users", "audit_events", "audit_head", "feedback", "app_settings"}


def test_a_sqlite_file_and_its_folder_are_created_in_wal_mode(tmp_path):
    path = tmp_path / "new" / "folder" / "cxr.db"
    database = open_database(f"sqlite:///{path}")
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert path.is_file()
    finally:
        database.engine.dispose()


def test_a_plain_postgresql_url_gets_the_psycopg_driver():
    assert normalised_url("postgresql://cxr:pw@db/cxr") == "postgresql+psycopg://cxr:pw@db/cxr"
    assert normalised_url("sqlite:////data/cxr.db") == "sqlite:////data/cxr.db"
