"""Every test file lies in the folder of its kind (docs/TESTING.md), so `pytest tests/unit` stays
the fast loop and each kind's marker is true: a file at tests/ root or in another folder fails."""

from __future__ import annotations

from tests.conftest import KINDS, TESTS


def test_every_test_file_lies_in_a_kind_folder():
    misplaced = [str(path.relative_to(TESTS)) for path in TESTS.rglob("test_*.py")
                 if path.relative_to(TESTS).parts[0] not in KINDS]
    assert not misplaced, f"move these into tests/{{{','.join(KINDS)}}}/: {misplaced}"


def test_every_kind_folder_is_a_package():
    """Module names stay unique across kinds (tests.unit.test_x, tests.app.test_x)."""
    assert [kind for kind in KINDS if not (TESTS / kind / "__init__.py").is_file()] == []
