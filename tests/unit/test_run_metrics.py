"""metrics.json's one typed reader: every figure the pages and the card use, checked on read,
and writers that add a key keep every other key."""

from __future__ import annotations

import json
import shutil

import pytest

from model.run_dir import DEFAULT_RUN_DIR, METRICS_FILE, RunFileError
from model.run_metrics import (
    ExternalScores,
    GroupScores,
    merge_metrics_key,
    read_metrics,
    set_metrics_key,
)


@pytest.fixture()
def shipped_copy(tmp_path):
    shutil.copy2(DEFAULT_RUN_DIR / METRICS_FILE, tmp_path / METRICS_FILE)
    return tmp_path


def raw(run_dir):
    return json.loads((run_dir / METRICS_FILE).read_text())


def test_the_shipped_metrics_read_typed_with_the_files_figures():
    content, metrics = raw(DEFAULT_RUN_DIR), read_metrics(DEFAULT_RUN_DIR)
    assert metrics.classes == tuple(content["classes"])
    assert metrics.pneumonia_vs_normal.auc == content["pneumonia_vs_normal"]["auc"]
    assert metrics.calibration.ece == content["calibration"]["ece"]
    children = metrics.subgroup("age_group", "pediatric")
    assert isinstance(children, GroupScores)
    assert children.pneumonia_vs_normal_auc == \
        content["subgroups"]["age_group"]["pediatric"]["pneumonia_vs_normal_auc"]
    assert isinstance(metrics.external["lungs"], ExternalScores)
    assert metrics.external["lungs"].normal_recall == content["external"]["lungs"]["normal_recall"]
    assert metrics.subgroup("age_group", "elderly") is None


@pytest.mark.parametrize("path, value", [
    (("accuracy",), None), (("pneumonia_vs_normal", "auc"), "high"),
    (("external", "lungs", "n"), "274"), (("subgroups", "source", "nih", "recall"), [0.5]),
])
def test_a_mistyped_figure_fails_at_read_naming_its_key(shipped_copy, path, value):
    content = raw(shipped_copy)
    *parents, last = path
    node = content
    for key in parents:
        node = node[key]
    node[last] = value
    (shipped_copy / METRICS_FILE).write_text(json.dumps(content))
    with pytest.raises(RunFileError, match=".".join(path)):
        read_metrics(shipped_copy)


def test_a_missing_key_fails_at_read_naming_it(shipped_copy):
    content = raw(shipped_copy)
    del content["per_class"]
    (shipped_copy / METRICS_FILE).write_text(json.dumps(content))
    with pytest.raises(RunFileError, match="lacks per_class"):
        read_metrics(shipped_copy)


def test_later_keys_are_optional(shipped_copy):
    content = raw(shipped_copy)
    for key in ("external", "subgroups", "label_sets"):
        del content[key]
    (shipped_copy / METRICS_FILE).write_text(json.dumps(content))
    metrics = read_metrics(shipped_copy)
    assert (metrics.external, metrics.subgroups, metrics.label_sets, metrics.site) == \
        ({}, {}, {}, None)


def test_merging_an_external_check_keeps_the_others_and_every_other_key(shipped_copy):
    before = raw(shipped_copy)
    new = {**before["external"]["lungs"], "n": 7}
    merge_metrics_key(shipped_copy, "external", {"hospital_z": new})
    after = raw(shipped_copy)
    assert after["external"] == {**before["external"], "hospital_z": new}
    assert {k: v for k, v in after.items() if k != "external"} == \
        {k: v for k, v in before.items() if k != "external"}


def test_setting_a_key_replaces_it_and_keeps_unknown_keys(shipped_copy):
    content = {**raw(shipped_copy), "from_a_newer_tool": [1, 2]}
    (shipped_copy / METRICS_FILE).write_text(json.dumps(content))
    set_metrics_key(shipped_copy, "site", {"name": "a"})
    set_metrics_key(shipped_copy, "site", {"name": "b"})
    after = raw(shipped_copy)
    assert after["site"] == {"name": "b"} and after["from_a_newer_tool"] == [1, 2]
    assert read_metrics(shipped_copy).site == {"name": "b"}
