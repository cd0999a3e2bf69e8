"""Site adaptation (training.adapt) and the feature bank it needs, on a tiny model and
synthetic films: the run it writes, and each refusal leaving nothing behind."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.job_status import DONE, REFUSED, read_status
from model.predictor import Predictor
from model.run_dir import FEATURE_BANK_FILE, read_metadata, write_metadata
from model.run_metrics import read_metrics
from testkit.model_factory import fit_synthetic_gate, make_run_dir
from testkit.predict_cli import predict_cli
from testkit.report_factory import write_reports
from testkit.synthetic_data import make_dataset, smooth_xray, synthetic_xray
from training import adapt, feature_bank, site_films
from training.config import CXR4_DATA, TrainConfig
from training.feature_bank import FeatureBank

SHARED_DATA = CXR4_DATA.parent  # ../shared/data


def reported_run(run_dir: Path, age_heads: list[str] | None = None) -> Path:
    """A factory run with reports and a training config, as training leaves it."""
    run_dir = write_reports(make_run_dir(run_dir, age_heads=age_heads))
    write_metadata(run_dir, replace(read_metadata(run_dir), config=TrainConfig().to_dict()))
    return run_dir


@pytest.fixture(scope="module", params=[None, ["adult", "pediatric"]], ids=["one-head",
                                                                            "age-heads"])
def banked_run(request, tmp_path_factory) -> Path:
    """A tiny run with reports and a feature bank built from a synthetic data root."""
    root = tmp_path_factory.mktemp("base")
    data = make_dataset(root / "data", per_class=8, val_per_class=4)
    run_dir = reported_run(root / "run", request.param)
    assert feature_bank.main(["--model", str(run_dir), "--data", str(data)]) == 0
    return run_dir


def write_site(folder: Path, count: int, label: str = "NORMAL", seed: int = 3) -> Path:
    """``count`` synthetic films of one class, brighter than the training ones (a new site)."""
    rng = np.random.default_rng(seed)
    (folder / label).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.clip(synthetic_xray(3, rng, (70, 90)).astype(int) + 40, 0, 255)
        Image.fromarray(image.astype(np.uint8)).save(folder / label / f"film_{index}.png")
    return folder


def test_the_bank_holds_train_and_val_features_of_every_label(banked_run):
    bank = FeatureBank.load(banked_run)
    assert set(bank.splits) == {"train", "val"}
    assert len(bank.labels) == 4 * (8 + 4)
    assert bank.features.dtype == np.float16 and bank.features.shape[1] == 16
    assert sorted(set(bank.labels.tolist())) == [0, 1, 2, 3]


def test_adapt_writes_a_complete_run_with_a_new_head_only(banked_run, tmp_path, capsys):
    site = write_site(tmp_path / "st-mary", 30)
    out, status = tmp_path / "adapted", tmp_path / "status.json"
    assert adapt.main(["--model", str(banked_run), "--site", str(site), "--out", str(out),
                       "--status", str(status)]) == 0
    base, adapted = Predictor.load(banked_run), Predictor.load(out)
    metadata = read_metadata(out)
    assert metadata.version == f"{base.version}+site-st-mary"
    saved = read_status(status)
    assert (saved.state, saved.out, saved.version) == (DONE, out, metadata.version)
    assert metadata.adapted_from["base_model"] == base.version
    for layer in base.model.layers:
        old, new = layer.get_weights(), adapted.model.get_layer(layer.name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(old, new, strict=True))
        assert same == (layer.name != "logits"), layer.name
    report = read_metrics(out).site
    assert report["n"] == 30 and report["fitted_on"] + report["held_out"] == 30
    assert report["held_out"] >= 6 and report["held_out_by"] == "file"
    # The site's held-out normals: more called normal than before.
    assert report["held_out_after"]["normal_recall"] > report["held_out_before"]["normal_recall"]
    assert "## Site adaptation" in (out / "MODEL_CARD.md").read_text()
    bank = FeatureBank.load(out)
    assert np.sum(bank.sources == "site:st-mary") == report["fitted_on"]
    assert "| base val: COVID-19 recall |" in capsys.readouterr().out


def test_an_adapted_run_names_its_site_on_every_json_line(banked_run, tmp_path):
    site = write_site(tmp_path / "films", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(banked_run), "--site", str(site), "--out", str(out),
                       "--name", "St Mary's"]) == 0
    lines = [json.loads(line) for line in
             predict_cli(site / "NORMAL", "--model", out).stdout.splitlines()]
    base = [json.loads(line) for line in
            predict_cli(site / "NORMAL", "--model", banked_run).stdout.splitlines()]
    assert {line["validated_at_site"] for line in lines if "label" in line} == {"St-Mary-s"}
    assert {line["validated_at_site"] for line in base if "label" in line} == {None}


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        adapt.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_adapt_refuses_an_existing_out(banked_run, tmp_path, capsys):
    site = write_site(tmp_path / "site", 25)
    out = tmp_path / "taken"
    out.mkdir()
    message = refused(["--model", str(banked_run), "--site", str(site), "--out", str(out)],
                      capsys)
    assert "exists" in message and not any(out.iterdir())


def test_adapt_refuses_too_few_films(banked_run, tmp_path, capsys):
    site = write_site(tmp_path / "site", 12)
    out = tmp_path / "out"
    message = refused(["--model", str(banked_run), "--site", str(site), "--out", str(out)],
                      capsys)
    assert "12 usable films" in message and "at least 20" in message
    assert not out.exists() and not list(tmp_path.glob(".out-*"))


def test_adapt_refuses_a_site_name_its_version_cannot_carry_and_says_so_in_its_status(
        banked_run, tmp_path, capsys):
    site = write_site(tmp_path / "site", 25)
    status = tmp_path / "status.json"
    message = refused(["--model", str(banked_run), "--site", str(site), "--out",
                       str(tmp_path / "out"), "--name", "n" * 41, "--status", str(status)],
                      capsys)
    assert "at most 40 characters" in message and not (tmp_path / "out").exists()
    saved = read_status(status)
    assert saved.state == REFUSED and saved.message in message


def test_adapt_refuses_an_unknown_label_folder(banked_run, tmp_path, capsys):
    site = write_site(write_site(tmp_path / "site", 25), 5, label="CATS")
    message = refused(["--model", str(banked_run), "--site", str(site), "--out",
                       str(tmp_path / "out")], capsys)
    assert "CATS" in message and not (tmp_path / "out").exists()


def test_adapt_refuses_a_label_set_the_bank_does_not_hold_and_says_so_in_its_status(
        banked_run, tmp_path, capsys):
    """The factory bank has the four classes only: a PNEUMONIA (either type) folder used to
    pass the site reading and crash the scoring with a traceback, the status left running."""
    site = write_site(write_site(tmp_path / "site", 22), 6, label="PNEUMONIA")
    status = tmp_path / "status.json"
    message = refused(["--model", str(banked_run), "--site", str(site), "--out",
                       str(tmp_path / "out"), "--status", str(status)], capsys)
    assert "PNEUMONIA films have a label the feature bank does not hold" in message
    assert not (tmp_path / "out").exists() and read_status(status).state == REFUSED


def test_adapt_lists_the_films_the_gate_refuses(banked_run, tmp_path, capsys):
    site = tmp_path / "site"
    (site / "NORMAL").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for index in range(25):  # films like those the synthetic gate was fitted on, and a blank
        Image.fromarray(smooth_xray(rng)).save(site / "NORMAL" / f"film_{index}.png")
    Image.fromarray(np.full((80, 80), 128, np.uint8)).save(site / "NORMAL" / "blank.png")

    gated = fit_synthetic_gate(reported_run(tmp_path / "gated"))
    (gated / FEATURE_BANK_FILE).write_bytes((banked_run / FEATURE_BANK_FILE).read_bytes())
    message = refused(["--model", str(gated), "--site", str(site), "--out",
                       str(tmp_path / "out")], capsys)
    assert "NORMAL/blank.png" in message and "refuses 1 of 26 films" in message
    assert not (tmp_path / "out").exists()


def test_familiarity_flags_about_the_set_share_of_known_films_and_films_far_from_all():
    from model.familiarity import Familiarity

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 32))
    known = np.concatenate([centre + 0.3 * rng.normal(0, 1, (200, 32)) for centre in centres])
    splits = np.where(np.arange(len(known)) % 4 == 0, "val", "train")
    familiarity = Familiarity.fit(known, splits, flagged_known=0.05)
    assert np.mean(~familiarity.familiar(known[splits == "val"])) == pytest.approx(0.05, abs=0.02)
    stranger = rng.normal(0, 1, (50, 32))  # a look no reference film has
    assert np.mean(~familiarity.familiar(stranger)) > 0.9
    assert np.mean(~familiarity.familiar(centres[0] + 0.3 * rng.normal(0, 1, (50, 32)))) < 0.2


def test_predict_lines_say_familiar_only_for_a_run_with_a_bank(banked_run, tmp_path, capsys):
    from pipeline import predict

    films = write_site(tmp_path / "films", 3)
    assert predict.main([str(films), "--model", str(banked_run)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(isinstance(line["familiar"], bool) for line in lines)
    bare = reported_run(tmp_path / "bare")
    assert predict.main([str(films), "--model", str(bare)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and not any("familiar" in line for line in lines)


def test_onboarding_makes_the_sites_films_familiar(banked_run, tmp_path):
    site = write_site(tmp_path / "site", 30)
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(banked_run), "--site", str(site), "--out", str(out),
                       "--holdout", "0.5"]) == 0
    before, after = Predictor.load(banked_run), Predictor.load(out)
    looks = site_films.read_site(site, before, None).looks  # held-out films included
    familiar_before, familiar_after = (np.mean(p.familiarity.familiar(looks))
                                       for p in (before, after))
    assert familiar_after >= max(familiar_before, 0.9)


@pytest.mark.parametrize(("name", "split_by"), [("lungs", "file"), ("kermany_test_a", "patient")])
def test_real_external_folders_read_as_sites(banked_run, tmp_path, name, split_by):
    """The two real layouts (manifest with an image column and no patients; label folders with
    a patient_id manifest), through the tiny model: read, split as they should be, adapted."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real films not found at {folder} (the shared data folder is absent)")
    out = tmp_path / "adapted"
    assert adapt.main(["--model", str(banked_run), "--site", str(folder), "--out", str(out),
                       "--holdout", "0.5", "--name", name]) == 0
    report = read_metrics(out).site
    assert report["n"] == {"lungs": 274, "kermany_test_a": 298}[name]
    assert report["held_out_by"] == split_by
    assert abs(report["held_out"] - report["n"] / 2) <= report["n"] * 0.1
