"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temp folder.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to the
unprivileged ``nobody`` account and every server binary runs through ``runuser -u nobody``.
The folder is made with ``tempfile.mkdtemp`` under the system temp dir (not pytest's tmp
path, which is private to root) and handed to that account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.servers import free_port

# Debian keeps the server binaries out of PATH, one folder per major version: newest first.
BIN_DIRS = (*sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True),
            Path("/usr/local/bin"))
SERVER_ACCOUNT = "nobody"


def find_binary(name: str) -> Path | None:
    """A PostgreSQL binary on PATH or in Debian's versioned folders; None when absent."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    return next((folder / name for folder in BIN_DIRS if (folder / name).is_file()), None)


def missing_binaries() -> list[str]:
    return [name for name in ("initdb", "pg_ctl", "createdb") if find_binary(name) is None]


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster on 127.0.0.1 with a trusted ``postgres`` superuser."""

    port: int
    data_dir: Path

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        _run_as_server([find_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", name])
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _run_as_server(arguments: list) -> None:
    prefix = ["runuser", "-u", SERVER_ACCOUNT, "--"] if os.geteuid() == 0 else []
    subprocess.run(prefix + [str(part) for part in arguments], check=True,
                   capture_output=True, timeout=120)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster, yield it, then stop it and delete its folder."""
    root = Path(tempfile.mkdtemp(prefix="cxr-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=SERVER_ACCOUNT)
    data_dir, port = root / "data", free_port()
    try:
        _run_as_server([find_binary("initdb"), "-D", data_dir, "-U", "postgres",
                        "--auth=trust", "--encoding=UTF8", "--no-sync"])
        _run_as_server([find_binary("pg_ctl"), "-D", data_dir, "-l", root / "server.log", "-w",
                        "-o", f"-p {port} -h 127.0.0.1 -k {root} -F", "start"])
        try:
            yield PostgresServer(port, data_dir)
        finally:
            _run_as_server([find_binary("pg_ctl"), "-D", data_dir, "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
