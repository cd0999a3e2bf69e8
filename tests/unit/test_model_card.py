"""The model card is rendered from a run's own files: every figure in it comes from them."""

from __future__ import annotations

from dataclasses import replace

import keras
import pytest

from model.run_dir import (
    LATENCY_FILE,
    LEAVE_ONE_SOURCE_OUT_FILE,
    OOD_BENCHMARK_FILE,
    read_calibration,
    read_gate_settings,
    read_history,
    read_metadata,
    write_json,
    write_metadata,
)
from model.run_metrics import read_metrics
from testkit.model_factory import fit_synthetic_gate, make_run_dir
from testkit.report_factory import write_reports
from training.config import TrainConfig
from training.model_card import render


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A factory run with reports, a training config and a fitted gate, as training leaves it."""
    run_dir = write_reports(make_run_dir(tmp_path_factory.mktemp("card")))
    write_metadata(run_dir, replace(
        read_metadata(run_dir), training_seconds=1500.0,
        config=TrainConfig(epochs_frozen=3, epochs_finetune=4).to_dict()))
    return fit_synthetic_gate(run_dir)


def test_card_quotes_the_runs_metrics_and_calibration(run_dir):
    card = render(run_dir, [])
    metrics, calibration = read_metrics(run_dir), read_calibration(run_dir)
    assert card.startswith("# Model card: test-model-1\n")
    assert f"macro-F1 **{metrics.macro_f1:.3f}**" in card
    assert f"{calibration.ece_after_cross_validated:.3f} on held-out halves of val" in card
    assert "3 frozen-backbone epochs then 4 fine-tuning epochs" in card
    assert f"seed 0; keras {keras.__version__}" in card
    assert "It is not a\ndiagnosis." in card


def test_card_reports_the_gates_data_derived_limits(run_dir):
    card = render(run_dir, [])
    gate = read_gate_settings(run_dir)
    assert "## Out-of-distribution gate" in card
    assert f"Distance limit **{gate.limits.max_distance:.1f}**" in card
    assert f"{gate.figures['val_refused_fraction']:.2%} in-sample" in card
    assert "Non-chest-X-ray set" not in card, "no benchmark file, no benchmark figure"
    write_json(run_dir / OOD_BENCHMARK_FILE, {
        "non_xray": {"images": 250, "refused_fraction": 0.992, "accepted": ["ramp.png"]},
        "val": {"refused": ["COVID19/figure.jpg"]},
        "latency": {"predict_added_ms": 0.4}})
    card = render(run_dir, [])
    assert "**99.2%** of 250 refused; it adds 0.4 ms per image" in card
    assert "let through: ramp.png" in card and "refused: COVID19/figure.jpg" in card


def test_experiment_table_has_a_row_per_run(run_dir):
    card = render(run_dir, [run_dir, run_dir])
    rows = [line for line in card.splitlines() if line.startswith(f"| {run_dir.name} (shipped) |")]
    assert len(rows) == 2
    best_val_loss = min(record["val_loss"] for record in read_history(run_dir))
    settings = ("cxr4+adult; 3+4 ep run, ft blocks all, lr 0.0001, dropout 0.4, "
                "source balance 0.5, WiSE-FT alpha 1, soup of the last 4 epochs")
    assert f"{settings} | {best_val_loss:.3f} |" in rows[0]
    adult = read_metrics(run_dir).subgroup("age_group", "adult")
    assert f"| {adult.recall['NORMAL']:.2f} | {adult.called_covid_among_non_covid:.2f} |" \
        in rows[0]
    assert rows[0].endswith("| 25 min | 0.0 MB | n/a |"), "no latency file, no latency"
    write_json(run_dir / LATENCY_FILE, {"predict": {"median_ms": 41.6}})
    assert render(run_dir, [run_dir]).count("| 42 ms |") == 1


def test_card_shows_subgroups_and_where_the_model_was_validated(run_dir):
    card = render(run_dir, [])
    figures = read_metrics(run_dir).subgroup("source", "hospital_a")
    assert f"| source: hospital_a | {figures.n} | {figures.accuracy:.3f} |" in card
    assert "## Where it was trained and validated" in card
    assert "| children | COVID-19 |" in card and "trained and validated" in card
    assert "## Sources it has never seen" not in card, "no benchmark file, no table"


def test_card_quotes_the_leave_one_source_out_benchmark(run_dir):
    row = {"balance": 0.5, "source": "nih", "age_group": "adult", "rows": "unseen", "n": 120,
           "accuracy": 0.8, "recall": {"NORMAL": 0.9, "PNEUMONIA": 0.7},
           "pneumonia_vs_normal_auc": 0.88, "called_covid_among_non_covid": 0.04,
           "gate_refused": 0.01}
    write_json(run_dir / LEAVE_ONE_SOURCE_OUT_FILE, [row, {**row, "balance": 0.0, "n": 7}])
    card = render(run_dir, [])
    assert ("| nih (adult) | unseen | 120 | 0.800 | Normal 0.90, Pneumonia 0.70 | 0.880 | "
            "0.04 | 1.0% |") in card
    assert "| nih (adult) | unseen | 7 |" not in card, "only the shipped source balance"


def test_card_bolds_the_shipped_row_of_the_robust_fine_tuning_sweep(run_dir, tmp_path):
    """The sweep's rows name their end of stage 2; the one the run's own settings (soup, alpha,
    runs souped with) made is bold, and no other."""
    import shutil

    from model.run_dir import ROBUST_FINETUNE_FILE

    copy = shutil.copytree(run_dir, tmp_path / "run")
    figures = {"val": {"accuracy": 0.8, "macro_f1": 0.8, "covid_recall": 0.9},
               "kermany_test_a": {"normal_recall": 0.7, "pneumonia_vs_normal_auc": 0.97},
               "lungs": {"normal_recall": 0.8, "called_covid_among_non_covid": 0.2}}
    write_json(copy / ROBUST_FINETUNE_FILE, [
        {"alpha": 0.5, "end": "best", **figures},
        {"alpha": 1.0, "end": "soup:4", **figures},
        {"alpha": 1.0, "end": "soup:4 with old-model", **figures},
        {"alpha": 1.0, "end": "top 6 blocks, soup:4 with old-model", **figures}])
    write_metadata(copy, replace(read_metadata(copy), souped_with=["old-model"], config=replace(
        TrainConfig(), finetune_soup=4, wise_alpha=1.0, soup_with="runs/old",
        finetune_blocks=6).to_dict()))
    card = render(copy, [])
    assert "| **top 6 blocks, soup:4 with old-model, 1** | 0.80 / 0.80 |" in card
    assert "| soup:4, 1 |" in card and "| 0.5 |" in card
    assert card.count("| **") == 1
