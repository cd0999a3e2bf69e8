"""Site adaptation's age blocks and forgetting guard (training.adapt), on a tiny age-heads model
and synthetic films: only the site's age block moves, the site weight is chosen by the guard
and reported, and what the model must not lose is in metrics.json and the card."""

from __future__ import annotations

import numpy as np
import pytest

from model.predictor import Predictor
from model.run_metrics import read_metrics
from testkit.synthetic_data import make_dataset
from tests.unit.test_site_adaptation import refused, reported_run, write_site
from training import adapt, feature_bank, forgetting_guard, site_films

N_CLASSES = 4


@pytest.fixture(scope="module")
def age_heads_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    data = make_dataset(root / "data", per_class=8, val_per_class=4)
    run_dir = reported_run(root / "run", ["adult", "pediatric"])
    assert feature_bank.main(["--model", str(run_dir), "--data", str(data)]) == 0
    return run_dir


def logits_kernel(run_dir) -> tuple[np.ndarray, np.ndarray]:
    return tuple(Predictor.load(run_dir).model.get_layer("logits").get_weights())


@pytest.mark.parametrize(("age_group", "moved", "kept"), [("child", 1, 0), ("adult", 0, 1)])
def test_a_site_moves_only_its_own_age_block(age_heads_run, tmp_path, age_group, moved, kept):
    site = write_site(tmp_path / "site", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(age_heads_run), "--site", str(site), "--out", str(out),
                       "--age-group", age_group, "--site-weight", "1"]) == 0
    (kernel_before, bias_before), (kernel_after, bias_after) = (logits_kernel(age_heads_run),
                                                                logits_kernel(out))
    block = {index: slice(index * N_CLASSES, (index + 1) * N_CLASSES) for index in (0, 1)}
    assert np.array_equal(kernel_before[:, block[kept]], kernel_after[:, block[kept]])
    assert np.array_equal(bias_before[block[kept]], bias_after[block[kept]])
    assert not np.allclose(kernel_before[:, block[moved]], kernel_after[:, block[moved]])
    report = read_metrics(out).site
    assert report["age_blocks"] == [("adult", "pediatric")[moved]]


def test_the_site_weight_is_chosen_by_the_forgetting_guard(age_heads_run, tmp_path, capsys):
    site = write_site(tmp_path / "site", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(age_heads_run), "--site", str(site), "--out", str(out),
                       "--age-group", "adult"]) == 0
    report = read_metrics(out).site
    tried = report["site_weights_tried"]
    # Each weight, largest first, with the label anchor and then without it.
    assert [(row["site_weight"], row["label_anchor"]) for row in tried] == [
        (weight, anchor) for weight in adapt.SITE_WEIGHTS
        for anchor in adapt.LABEL_ANCHORS][:len(tried)]
    assert report["label_anchor"] == tried[-1]["label_anchor"]
    # Every try before the chosen one failed the guard; the chosen one is the last tried.
    assert not any(row["guard_holds"] for row in tried[:-1])
    assert report["site_weight"] == tried[-1]["site_weight"]
    assert report["guard"]["holds"] == tried[-1]["guard_holds"]
    kept = report["kept"]
    for figure in ("covid_recall_age_given", "covid_recall",
                   "children_pneumonia_vs_normal_auc_age_given"):
        assert set(kept[figure]) == {"before", "after"}, figure
    assert kept["covid_recall_age_given"]["before"] == (
        report["val_before"]["all_age_given"]["recall"]["COVID19"])
    card = (out / "MODEL_CARD.md").read_text()
    assert "| base val, age given: COVID-19 recall |" in card
    assert "chosen by the forgetting guard" in card
    assert "Forgetting guard (val COVID-19 recall may fall by at most 0," in card
    assert f"site weights tried {adapt.SITE_WEIGHTS[0]:g} (" in card
    assert "| base val, age given: COVID-19 recall |" in capsys.readouterr().out


def test_a_given_site_weight_is_the_only_one_tried(age_heads_run, tmp_path):
    site = write_site(tmp_path / "site", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(age_heads_run), "--site", str(site), "--out", str(out),
                       "--site-weight", "0.3"]) == 0
    report = read_metrics(out).site
    assert [row["site_weight"] for row in report["site_weights_tried"]] in ([0.3], [0.3, 0.3])
    assert report["site_weight"] == 0.3 and "given" in report["adapted"]


def test_a_site_weight_must_be_positive(age_heads_run, tmp_path, capsys):
    site = write_site(tmp_path / "site", 25)
    message = refused(["--model", str(age_heads_run), "--site", str(site), "--out",
                       str(tmp_path / "out"), "--site-weight", "0"], capsys)
    assert "positive" in message and not (tmp_path / "out").exists()


def figures(covid: float | None, auc: float | None, called: float | None = 0.03) -> dict:
    return {"all_age_given": {"recall": {} if covid is None else {"COVID19": covid},
                              "called_covid_among_non_covid": called},
            "children_age_given": {"pneumonia_vs_normal_auc": auc}}


@pytest.mark.parametrize(("after", "holds"), [
    (figures(0.93, 0.992), True),  # COVID-19 recall kept, AUC down 0.004: within
    (figures(0.92, 0.996), False),  # COVID-19 recall down 0.01 (one film in a hundred)
    (figures(0.95, 0.989), False),  # children's AUC down 0.007
    (figures(0.97, 0.999), True),  # both better
    (figures(0.97, 0.999, 0.04), False),  # more non-COVID films called COVID-19
    (figures(0.93, 0.996, 0.02), True),  # fewer
])
def test_the_guard_keeps_covid_recall_and_the_childrens_auc(after, holds):
    assert forgetting_guard.guard_holds(figures(0.93, 0.996), after) is holds


def test_the_guard_ignores_a_figure_the_val_cannot_give():
    assert forgetting_guard.guard_holds(figures(0.93, None), figures(0.93, 0.5))
    assert forgetting_guard.guard_holds(figures(None, 0.99), figures(None, 0.99))


def test_when_no_weight_passes_the_smallest_is_used_and_said(age_heads_run, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(adapt, "guard_holds", lambda before, after: False)  # none passes
    site = write_site(tmp_path / "site", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(age_heads_run), "--site", str(site), "--out", str(out),
                       "--age-group", "adult"]) == 0
    report = read_metrics(out).site
    assert [row["site_weight"] for row in report["site_weights_tried"]] == [
        weight for weight in adapt.SITE_WEIGHTS for _ in adapt.LABEL_ANCHORS]
    assert report["site_weight"] == adapt.SITE_WEIGHTS[-1] and not report["guard"]["holds"]
    assert report["label_anchor"] == adapt.LABEL_ANCHORS[-1]
    assert "(to the base head alone)" in report["adapted"]
    assert "GUARD NOT MET at the smallest weight" in report["adapted"]
    assert "**it did not hold at any weight tried**" in (out / "MODEL_CARD.md").read_text()


def test_a_site_mostly_of_one_age_group_is_read_as_that_group():
    class Estimating:  # what _populations_from_raw reads of a predictor
        age_heads = ["adult", "pediatric"]
        classes = ["A", "B", "C", "D"]

    raw = np.zeros((20, 8))
    raw[:19, 4:] = 5.0  # 19 films read as children
    raw[19, :4] = 5.0  # one as an adult: taken for a misread
    assert site_films._populations_from_raw(Estimating(), raw).tolist() == [1] * 20
    raw[:5, 4:], raw[:5, :4] = 0.0, 5.0  # 14 of 20 children: a mixed site, read per film
    assert site_films._populations_from_raw(Estimating(), raw).tolist() == [0] * 5 + [1] * 14 + [0]
