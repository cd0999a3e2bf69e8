"""The one database: engine, sessions, and the schema brought up to date on every start.

SQLite (the default) runs in WAL mode so readers never block the writer; PostgreSQL is chosen
by a ``postgresql+psycopg://`` URL. Alembic's migrations in records/migrations are the only
thing that creates or changes tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class Database:
    """An engine and its session factory; pass it to the functions that store things."""

    engine: Engine
    sessions: sessionmaker[Session]

    def session(self) -> Session:
        return self.sessions()


def _sqlite_pragmas(busy_seconds: float):
    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def normalised_url(url: str) -> str:
    """A bare ``postgresql://`` URL gets the psycopg 3 driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def create_database_engine(url: str, sqlite_busy_seconds: float = 10.0) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created on first start."""
    url = normalised_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": sqlite_busy_seconds})
    event.listen(engine, "connect", _sqlite_pragmas(sqlite_busy_seconds))
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is there already)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(url: str, sqlite_busy_seconds: float = 10.0) -> Database:
    """Connect, migrate, and hand back the database every entry point uses."""
    engine = create_database_engine(url, sqlite_busy_seconds)
    migrate(engine)
    return Database(engine, sessionmaker(engine, expire_on_commit=False))
