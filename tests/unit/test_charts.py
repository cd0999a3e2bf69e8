"""The admin charts show exactly what the run's files say; tested without Streamlit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.labels import CLASS_NAMES, display_name
from model.prediction import Prediction
from model.run_dir import METRICS_FILE, RunFileError
from model.run_metrics import RocCurve
from testkit.report_factory import FROZEN_EPOCHS, history_records
from webapp.charts import (
    PRIMARY,
    confusion_matrix_figure,
    coverage_rows,
    dataset_rows,
    per_class_rows,
    probability_chart,
    reliability_figure,
    roc_figure,
    subgroup_rows,
    training_curves,
)
from webapp.reports import read_reports


@pytest.fixture(scope="module")
def run_dir(factory_run_dir):
    return factory_run_dir


@pytest.fixture(scope="module")
def reports(run_dir):
    return read_reports(run_dir)


def test_probability_bars_show_every_class_and_highlight_the_most_likely():
    probabilities = {"NORMAL": 0.1, "BACTERIAL_PNEUMONIA": 0.6, "VIRAL_PNEUMONIA": 0.25,
                     "COVID19": 0.05}
    bars = probability_chart(Prediction.of(probabilities, "v1")).data[0]
    assert list(bars.x) == list(probabilities.values())
    assert list(bars.y) == [display_name(name) for name in probabilities]
    assert [colour == PRIMARY for colour in bars.marker.color] == [False, True, False, False]
    assert list(bars.text) == ["10.0%", "60.0%", "25.0%", "5.0%"]


def test_confusion_matrix_counts_are_the_files_counts(reports):
    metrics = reports.metrics
    heatmap = confusion_matrix_figure(metrics.classes, metrics.confusion_matrix).data[0]
    assert np.array_equal(heatmap.z, metrics.confusion_matrix)
    assert list(heatmap.y) == [display_name(name) for name in CLASS_NAMES]


def test_row_normalised_confusion_matrix_gives_shares_of_each_true_class(reports):
    metrics = reports.metrics
    counts = np.asarray(metrics.confusion_matrix, dtype=float)
    shares = np.asarray(confusion_matrix_figure(metrics.classes, metrics.confusion_matrix,
                                                normalised=True).data[0].z)
    assert shares == pytest.approx(counts / counts.sum(axis=1, keepdims=True))


def test_an_empty_true_class_row_stays_zero_when_normalised():
    shares = confusion_matrix_figure(["NORMAL", "COVID19"], [[3, 1], [0, 0]],
                                     normalised=True).data[0].z
    assert np.array_equal(shares, [[0.75, 0.25], [0.0, 0.0]])


def test_per_class_rows_follow_the_metrics_file(reports):
    rows = per_class_rows(reports.metrics)
    assert [row["Class"] for row in rows] == [display_name(name) for name in CLASS_NAMES]
    for row, name in zip(rows, CLASS_NAMES, strict=True):
        scores = reports.metrics.per_class[name]
        assert (row["Precision"], row["Recall"], row["F1"], row["Support"]) == (
            scores.precision, scores.recall, scores.f1, scores.support)


def test_roc_curves_carry_each_class_curve_and_auc(reports):
    traces = roc_figure(reports.metrics).data
    assert len(traces) == len(CLASS_NAMES) + 1  # one per class and the chance line
    for trace, name in zip(traces, CLASS_NAMES, strict=False):
        curve = reports.metrics.roc[name]
        assert tuple(trace.x) == curve.fpr and tuple(trace.y) == curve.tpr
        assert f"AUC {curve.auc:.3f}" in trace.name


def test_a_class_without_auc_is_labelled_not_available(reports):
    roc = {**reports.metrics.roc, "COVID19": RocCurve(auc=None, fpr=(), tpr=())}
    assert "AUC n/a" in roc_figure(replace(reports.metrics, roc=roc)).data[3].name


def test_reliability_diagram_shows_the_non_empty_bins_before_and_after_scaling(reports):
    calibration = reports.calibration
    _, before, after = reliability_figure(calibration).data
    for trace, all_bins, ece in ((before, calibration.bins_before, calibration.ece_before),
                                 (after, calibration.bins_after, calibration.ece_after)):
        bins = [item for item in all_bins if item["count"]]
        assert list(trace.x) == [item["confidence"] for item in bins]
        assert list(trace.y) == [item["accuracy"] for item in bins]
        assert f"ECE {ece:.3f}" in trace.name
    assert f"T = {calibration.temperature:.2f}" in after.name


def test_training_curves_mark_where_fine_tuning_starts():
    history = history_records()
    figure = training_curves(history)
    assert len(figure.data) == 4  # train and val for loss and accuracy
    loss = figure.data[0]
    assert list(loss.x) == [record["epoch"] for record in history]
    assert list(loss.y) == [record["loss"] for record in history]
    boundaries = {shape.x0 for shape in figure.layout.shapes}
    assert boundaries == {FROZEN_EPOCHS + 0.5}


def test_training_curves_of_a_single_stage_have_no_boundary():
    frozen_only = [record for record in history_records() if record["stage"] == "frozen"]
    assert not training_curves(frozen_only).layout.shapes


def test_dataset_rows_count_each_class_and_split_with_totals(reports):
    rows = dataset_rows(reports.metadata)
    dataset = reports.metadata.dataset
    for row, name in zip(rows, CLASS_NAMES, strict=False):
        assert row["train"] == dataset["train"][name] and row["val"] == dataset["val"][name]
        assert row["total"] == dataset["train"][name] + dataset["val"][name]
    assert rows[-1]["Class"] == "All classes"
    assert rows[-1]["total"] == sum(dataset["train"].values()) + sum(dataset["val"].values())


def test_reports_of_a_folder_without_files_are_absent(tmp_path):
    reports = read_reports(tmp_path)
    assert (reports.metadata, reports.metrics, reports.history, reports.calibration,
            reports.model_card) == (None, None, None, None, None)


def test_a_damaged_report_file_is_named(tmp_path):
    (tmp_path / METRICS_FILE).write_text("{not json")
    with pytest.raises(RunFileError, match=METRICS_FILE):
        read_reports(tmp_path)


def test_subgroup_rows_cover_every_image_once_per_kind(reports):
    rows = subgroup_rows(reports.metrics)
    for kind in ("source", "age group"):
        assert sum(row["Images"] for row in rows if row["By"] == kind) == \
            reports.metrics.n_samples
    assert {row["Group"] for row in rows} == {"hospital_a", "hospital_b", "adult", "pediatric"}
    for row in rows:
        assert 0.0 <= row["Accuracy"] <= 1.0 and row["Recall by label"]


def test_coverage_rows_name_what_was_never_validated(reports):
    rows = coverage_rows(reports.metadata)
    assert len(rows) == 2 * len(CLASS_NAMES)
    assert all(row["Status"] == "trained and validated" for row in rows), \
        "the factory's two hospitals hold every class"
