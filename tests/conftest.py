"""Shared fixtures (where the real data lives, a skip when it is absent), and each test's kind
from its folder: tests/unit, tests/app, tests/browser, tests/services (docs/TESTING.md)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from testkit.apptest import ADMIN, RADIOLOGIST
from training.config import CXR4_DATA

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "app", "browser", "services")  # the folders of tests/, each a marker
SERVER_FIXTURES = {"postgres", "pacs_archive", "ray_address"}
RAY_GROUP = "ray"  # the tests that share the session's one local Ray cluster


def needs_a_server(item: pytest.Item) -> bool:
    """Whether a test starts PostgreSQL, Orthanc or Ray, wherever its file lies: the
    PostgreSQL case of `database_url` does, its SQLite case does not."""
    callspec = getattr(item, "callspec", None)
    return (bool(SERVER_FIXTURES & set(item.fixturenames))
            or (callspec is not None and callspec.params.get("database_url") == "postgresql"))


def only_unit_paths(config: pytest.Config) -> bool:
    """Whether every path on the command line lies in tests/unit (the fast loop), with no -m."""
    if config.option.markexpr or not config.args:
        return False
    unit = TESTS / "unit"
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
             for arg in config.args]
    return all(path.is_relative_to(unit) for path in paths)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's kind, and `services` too when it needs a server; a run
    of tests/unit alone leaves those out, so it starts no server. Keep each test module on one
    pytest-xdist worker (its module fixtures are built once), and every test that uses Ray on
    the same worker: one local Ray cluster per machine."""
    for item in items:
        kind = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if kind in KINDS:
            item.add_marker(kind)
        if needs_a_server(item):
            item.add_marker("services")
        if item.get_closest_marker("xdist_group") is None:
            group = RAY_GROUP if "ray_address" in item.fixturenames else item.module.__name__
            item.add_marker(pytest.mark.xdist_group(group))
    if only_unit_paths(config):
        left_out = [item for item in items if item.get_closest_marker("services")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker("services")]


@pytest.fixture(scope="session")
def cxr4_dir() -> Path:
    """The real labelled X-rays in ../shared; tests that need them skip when they are absent."""
    if not (CXR4_DATA / "val").is_dir():
        pytest.skip(f"real X-rays not found at {CXR4_DATA} (the shared data folder is absent)")
    return CXR4_DATA


@pytest.fixture(scope="session")
def postgres(request):
    """One throwaway PostgreSQL 15 cluster for the session; skips only without its binaries."""
    from testkit.postgres import missing_binaries, postgres_server

    missing = missing_binaries()
    if missing:
        pytest.skip(f"PostgreSQL binaries not found ({', '.join(missing)}): install Debian's "
                    "postgresql package to run the storage tests against PostgreSQL")
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'cxr.db'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def database(database_url):
    from records.db import open_database

    opened = open_database(database_url)
    yield opened
    opened.engine.dispose()


@pytest.fixture(scope="session")
def factory_model_dir(tmp_path_factory) -> Path:
    """A small factory-built model without reports, built once per session: tests only read
    it (a test that changes a run directory builds its own)."""
    from testkit.model_factory import make_run_dir

    return make_run_dir(tmp_path_factory.mktemp("factory-model"))


@pytest.fixture(scope="session")
def factory_predictor(factory_model_dir):
    """The factory model loaded once per session, for tests that only call it."""
    from model.predictor import Predictor

    return Predictor.load(factory_model_dir)


@pytest.fixture(scope="session")
def factory_run_dir(tmp_path_factory) -> Path:
    """A small factory-built model with its reports, for page tests that need no real one;
    built once per session, read only."""
    from testkit.model_factory import make_run_dir
    from testkit.report_factory import write_reports

    return write_reports(make_run_dir(tmp_path_factory.mktemp("factory-run")))


@pytest.fixture
def app_database_url(tmp_path, monkeypatch) -> str:
    """A SQLite database with an admin and a radiologist, handed over as $CXR_DATABASE_URL."""
    from records.accounts import CLI_ACTOR, add_account
    from records.db import open_database
    from records.settings import DATABASE_URL_ENV

    url = f"sqlite:///{tmp_path / 'data' / 'cxr.db'}"
    database = open_database(url)
    add_account(database, CLI_ACTOR, *ADMIN, "admin")
    add_account(database, CLI_ACTOR, *RADIOLOGIST, "radiologist")
    database.engine.dispose()
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return url


@pytest.fixture(scope="session")
def pacs_archive(tmp_path_factory):
    """A real Orthanc (DICOMweb) holding one study of each variant in testkit.pacs_studies,
    made from real X-rays when ../shared is present; skipped when Orthanc is not installed."""
    from testkit.orthanc import missing_reason, running_orthanc
    from testkit.pacs_studies import PacsArchive, chest_studies, xray_images

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    studies = chest_studies(xray_images(CXR4_DATA, 8))
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        for study in studies:
            for dicom in study.files:
                orthanc.store(dicom)
        yield PacsArchive(orthanc, studies)


@pytest.fixture(scope="session")
def ray_address() -> str:
    """The one local Ray cluster of a test session (2 CPUs), for the model server and Ray Data
    tests; started on first use, so a run without them pays nothing."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[serve,data]')")
    from testkit.model_server import ray_cluster

    with ray_cluster(num_cpus=2) as address:
        yield address
