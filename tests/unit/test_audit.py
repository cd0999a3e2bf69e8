"""The audit trail on SQLite and on a real PostgreSQL server: append, chain, tamper, export."""

from __future__ import annotations

import csv
import io
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from records import actions, audit
from records.audit import Event, export_csv, record, verify_chain
from records.audit_key import AUDIT_KEY_ENV, audit_key
from records.db import open_database
from records.settings import DATABASE_URL_ENV, load_settings
from records.tables import GENESIS_HASH, AuditEvent, AuditHead
from testkit import REPO_ROOT
from testkit.dicom_factory import FAKE_PATIENT, make_dicom

ANALYSIS_EVENT = Event("rita", "radiologist", actions.ANALYSIS, image_sha256="ab" * 32,
                       image_bytes=1234, model_version="v1", label="NORMAL",
                       probabilities={"NORMAL": 0.9, "COVID19": 0.1}, latency_ms=42.5)


def rows(database) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_an_event_is_one_row_with_its_fields_and_a_chained_hash(database):
    first = record(database, Event("ada", "admin", actions.SIGN_IN))
    second = record(database, ANALYSIS_EVENT)

    stored = rows(database)
    assert [row.id for row in stored] == [first, second]
    assert [row.seq for row in stored] == [1, 2]
    assert stored[1].prev_hash == stored[0].row_hash
    assert (stored[1].username, stored[1].role, stored[1].label) == ("rita", "radiologist",
                                                                      "NORMAL")
    assert stored[1].probabilities == '{"COVID19":0.1,"NORMAL":0.9}'
    assert stored[1].latency_ms == 42.5 and stored[1].image_bytes == 1234
    assert verify_chain(database).intact and verify_chain(database).rows_checked == 2


@pytest.mark.parametrize(("tamper", "first_broken"),
                         [("edit", 2), ("delete", 2), ("forge hash", 3)])
def test_the_check_names_the_first_changed_or_removed_row(database, tamper, first_broken):
    """A row whose hash was recomputed without the key is named itself."""
    for label in ("NORMAL", "COVID19", "VIRAL_PNEUMONIA", "NORMAL"):
        record(database, Event("rita", "radiologist", actions.ANALYSIS, label=label))
    with database.session() as session, session.begin():
        if tamper == "edit":
            session.execute(update(AuditEvent).where(AuditEvent.seq == 2)
                            .values(label="NORMAL"))
        elif tamper == "delete":
            session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
        else:
            row = session.scalar(select(AuditEvent).where(AuditEvent.seq == 3))
            row.label = "NORMAL"
            row.row_hash = audit.row_hash(row)

    check = verify_chain(database)
    assert not check.intact
    assert check.first_broken_seq == first_broken


def test_a_removed_last_row_is_noticed(database):
    for _ in range(3):
        record(database, ANALYSIS_EVENT)
    with database.session() as session, session.begin():
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
    assert verify_chain(database).first_broken_seq == 3


def test_concurrent_appends_neither_lose_nor_fork_the_chain(database):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: record(database, ANALYSIS_EVENT), range(40)))
    assert len(set(ids)) == 40
    assert [row.seq for row in rows(database)] == list(range(1, 41))
    assert verify_chain(database).intact


def test_the_csv_export_holds_the_rows_of_the_date_range(database):
    record(database, ANALYSIS_EVENT)
    today = audit.now_utc().date()
    exported = list(csv.DictReader(io.StringIO(export_csv(database, today, today))))
    assert len(exported) == 1
    assert exported[0]["label"] == "NORMAL" and exported[0]["username"] == "rita"
    assert exported[0]["row_hash"] == rows(database)[0].row_hash
    yesterday = today - timedelta(days=1)
    assert export_csv(database, yesterday, yesterday).count("\n") == 1


def test_a_sop_instance_uid_is_stored_only_as_a_salted_hash(database):
    gray = np.full((64, 64), 120, dtype=np.uint8)
    dicom = make_dicom(gray, patient=FAKE_PATIENT)
    uid_hash = audit.sop_uid_hash(database, dicom, "scan.dcm")
    assert uid_hash is not None and len(uid_hash) == 64
    assert audit.sop_uid_hash(database, dicom, "scan.dcm") == uid_hash
    assert audit.sop_uid_hash(database, b"\x89PNG not dicom", "chest.png") is None
    assert audit.sop_uid_hash(database, b"garbage", "broken.dcm") is None


def test_a_failed_write_raises_audit_unavailable(database):
    AuditHead.__table__.drop(database.engine)
    with pytest.raises(audit.AuditUnavailable, match="cannot be written"):
        record(database, ANALYSIS_EVENT)


def test_the_audit_cli_verifies_and_exports(database, database_url):
    record(database, ANALYSIS_EVENT)
    env = {DATABASE_URL_ENV: database_url, "PATH": "",
           AUDIT_KEY_ENV: audit_key(load_settings()).decode()}  # the key this process signs with
    verified = subprocess.run([sys.executable, "-m", "records.audit", "verify"], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "intact: 1 rows" in verified.stdout
    today = str(audit.now_utc().date())
    exported = subprocess.run([sys.executable, "-m", "records.audit", "export", "--start", today,
                               "--end", today], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert exported.returncode == 0 and exported.stdout.count("\n") == 3  # header, 2 rows
    with database.session() as session, session.begin():
        session.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(label="COVID19"))
    broken = subprocess.run([sys.executable, "-m", "records.audit", "verify"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and "broken at row 1" in broken.stdout


def forge(database, seq: int, label: str) -> None:
    """What an attacker with write access to the database can do with this module's own
    functions: change a row, recompute every later hash and the head."""
    with database.session() as session, session.begin():
        chain = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        chain[seq - 1].label = label
        for index in range(seq - 1, len(chain)):
            if index:
                chain[index].prev_hash = chain[index - 1].row_hash
            chain[index].row_hash = audit.row_hash(chain[index])
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(
            last_hash=chain[-1].row_hash))


def test_a_chain_forged_with_the_modules_own_functions_fails_verification(database):
    for label in ("NORMAL", "COVID19", "VIRAL_PNEUMONIA", "NORMAL"):
        record(database, Event("rita", "radiologist", actions.ANALYSIS, label=label))
    forge(database, 2, "NORMAL")
    check = verify_chain(database)
    assert not check.intact and check.first_broken_seq == 2
    assert "written without the audit key" in check.reason


def test_a_removed_last_row_with_a_rewound_head_is_noticed(database):
    for _ in range(3):
        record(database, ANALYSIS_EVENT)
    with database.session() as session, session.begin():
        second = session.scalar(select(AuditEvent).where(AuditEvent.seq == 2))
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(
            seq=2, last_hash=second.row_hash))
    check = verify_chain(database)
    assert not check.intact and "head of the trail is not signed" in check.reason


def test_a_trail_from_before_the_key_stays_verifiable_as_pre_key(tmp_path):
    """Rows written by the unkeyed version (schema 0001) verify after the migration, are
    reported as pre-key, and an edit among them still shows."""
    from alembic import command
    from alembic.config import Config

    from records.db import MIGRATIONS_DIR, create_database_engine, migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_database_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with Session(engine) as session, session.begin():  # the old append: plain SHA-256
        prev_hash = GENESIS_HASH
        for seq in (1, 2):
            row = AuditEvent(seq=seq, at=audit.now_utc(), username="rita", role="radiologist",
                             action=actions.ANALYSIS, label="NORMAL", prev_hash=prev_hash)
            row.row_hash = audit.row_hash(row)
            session.add(row)
            prev_hash = row.row_hash
        session.execute(sa_update(AuditHead.__table__).where(AuditHead.__table__.c.id == 1)
                        .values(seq=2, last_hash=prev_hash))
    migrate(engine)
    database = open_database(url)
    check = verify_chain(database)
    assert check.intact and check.pre_key_rows == 2 and "first 2 were written before" in (
        check.summary())
    record(database, ANALYSIS_EVENT)
    check = verify_chain(database)
    assert check.intact and check.rows_checked == 3 and check.pre_key_rows == 2
    with database.session() as session, session.begin():
        session.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(label="COVID19"))
    assert verify_chain(database).first_broken_seq == 1


def test_the_key_file_is_made_private_and_a_readable_one_is_refused(tmp_path, monkeypatch):
    from records.audit_key import KEY_FILE, AuditKeyError, audit_key
    from records.settings import Settings

    monkeypatch.delenv("CXR_AUDIT_KEY", raising=False)
    settings = Settings(data_dir=tmp_path / "data", database_url="unused")
    key = audit_key(settings)
    path = settings.data_dir / KEY_FILE
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    other = Settings(data_dir=tmp_path / "other", database_url="unused")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / KEY_FILE).write_text("0" * 64)
    (tmp_path / "other" / KEY_FILE).chmod(0o644)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        audit_key(other)
    monkeypatch.setenv("CXR_AUDIT_KEY", "from the secret store")
    assert audit_key(other) == b"from the secret store"
