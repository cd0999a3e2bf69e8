"""Robust fine-tuning, judged on the external checks: the WiSE-FT mixing coefficient swept.

    python -m bench.robust_finetune RUN_DIR [--alphas 0 0.25 0.5 0.75 1]
        [--end best|soup:K|epoch:N] [--soup-with RUN ...] [--out FILE]

RUN_DIR is a training run (its metadata names the data roots whose val films are scored) that
kept both ends of its schedule in ``checkpoints/``
(``frozen.keras``: the end of stage 1, the backbone frozen; ``finetune.keras``: the end of
stage 2, its lowest-val-loss epoch). ``--end`` takes another end of stage 2 from the run's
per-epoch weights: ``soup:K`` the mean of its last K epochs (``--finetune-soup K``),
``epoch:N`` its N-th epoch (fine-tuning for fewer epochs); ``--soup-with RUN`` averages each
mixture with another run's model (``training.train --soup-with``). For each alpha every weight is
``(1 - alpha) x stage 1 + alpha x stage 2``
(training.schedule.mix_weights, what ``--wise-alpha`` ships) and the mixture
is scored with no gate and no temperature, neither of which moves an argmax or an AUC: on val
with the age group known (as training scores it), and on each external check with the age group
estimated by the model (as for a JPEG upload). The external checks choose alpha; nothing is
fitted on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np

from model.age_groups import AGE_GROUPS
from model.calibration import softmax
from model.labels import COVID, NORMAL
from model.populations import class_logits
from model.run_dir import ROBUST_FINETUNE_FILE, read_metadata, write_json
from training.config import SHARED_DATA
from training.data import LoadedSplit
from training.evaluate import load_labelled
from training.external import accepted_figures, load_external
from training.metrics import classification_metrics
from training.model_card import WISE_TABLE_HEAD, weights_label, wise_row
from training.schedule import (
    average_epochs,
    epoch_checkpoints,
    mix_weights,
    run_model_weights,
    soup_with,
    stage_checkpoint,
    weights_by_path,
)

EXTERNAL = (SHARED_DATA / "kermany_test_a", SHARED_DATA / "lungs")
DEFAULT_ALPHAS = (0.0, 0.25, 0.4, 0.5, 0.65, 0.8, 1.0)


def run_logits(logits_model: keras.Model, images: np.ndarray, populations: np.ndarray,
               n_classes: int) -> np.ndarray:
    """Class logits, read per known age group (index) or marginalised (-1)."""
    raw = logits_model.predict(images, batch_size=64, verbose=0)
    return np.asarray(class_logits(raw, populations, len(AGE_GROUPS), n_classes))


def val_figures(logits: np.ndarray, split: LoadedSplit, space) -> dict:
    """The val figures a hospital asks about, from training.metrics."""
    metrics = classification_metrics(split.labels, softmax(logits), space.classes,
                                     space.set_map(), split.groups())
    groups = metrics["subgroups"]["age_group"]  # a run's data may lack one age group
    adult, children = groups.get("adult", {}), groups.get("pediatric", {})
    return {
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "covid_recall": metrics["per_class"][COVID]["recall"],
        "covid_precision": metrics["per_class"][COVID]["precision"],
        "adult_normal_recall": adult.get("recall", {}).get(NORMAL),
        "adult_called_covid_among_non_covid": adult.get("called_covid_among_non_covid"),
        "children_auc": children.get("pneumonia_vs_normal_auc"),
    }


def stage_two_end(model: keras.Model, run_dir: Path, end: str) -> dict[str, np.ndarray]:
    """The weights ``--end`` names: "best" (the model as loaded), "soup:K" or "epoch:N"."""
    kind, _, number = end.partition(":")
    if kind == "soup":
        average_epochs(model, run_dir, int(number))
    elif kind == "epoch":
        files = epoch_checkpoints(run_dir)
        if not 1 <= int(number) <= len(files):
            raise SystemExit(f"{run_dir} kept {len(files)} fine-tuning epochs, not {number}")
        model.load_weights(files[int(number) - 1])
    elif end != "best":
        raise SystemExit(f"--end must read best, soup:K or epoch:N, not {end!r}")
    return weights_by_path(model)


def sweep(run_dir: Path, alphas: list[float], end: str = "best",
          soup_runs: list[Path] | None = None) -> list[dict]:
    """One row of figures per alpha; with ``soup_runs``, each mixture averaged uniformly with
    those runs' models (``--soup-with``), the row's end naming them."""
    model = keras.saving.load_model(stage_checkpoint(run_dir, "finetune"), compile=False)
    tuned = stage_two_end(model, run_dir, end)
    frozen = weights_by_path(keras.saving.load_model(stage_checkpoint(run_dir, "frozen"),
                                                     compile=False))
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    image_size = model.inputs[0].shape[1]
    metadata = read_metadata(run_dir)
    soup_runs = soup_runs or []
    others = {run: run_model_weights(run) for run in soup_runs}  # read once, used per alpha
    label = weights_label(end, metadata.config.get("finetune_blocks", 0),
                          [read_metadata(run).version for run in soup_runs])
    val, space = load_labelled(metadata, image_size,
                               [Path(root) for root in metadata.data_roots], "val")
    n_classes = len(space.classes)
    val_groups = np.array([AGE_GROUPS.index(group) for group in val.age_groups])
    externals = {folder.name: load_external(folder, space, image_size) for folder in EXTERNAL
                 if folder.is_dir()}
    rows = []
    for alpha in alphas:
        started = time.monotonic()
        mix_weights(model, frozen, tuned, alpha)
        if others:
            soup_with(model, others)
        row = {"alpha": alpha, "end": label, "val": val_figures(
            run_logits(logits_model, val.images, val_groups, n_classes), val, space)}
        for name, split in externals.items():
            logits = run_logits(logits_model, split.images, np.full(len(split.labels), -1),
                                n_classes)
            row[name] = accepted_figures(split.labels, softmax(logits), space)
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(wise_row(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS))
    parser.add_argument("--end", default="best",
                        help="stage 2's end: best (default), soup:K or epoch:N")
    parser.add_argument("--soup-with", type=Path, action="append", default=[], metavar="RUN",
                        help="average each mixture uniformly with this run's model (repeat)")
    parser.add_argument("--out", type=Path,
                        help=f"write the rows as JSON here (RUN_DIR/{ROBUST_FINETUNE_FILE} puts "
                             "the sweep in the run's model card)")
    args = parser.parse_args()
    print("\n".join(WISE_TABLE_HEAD), flush=True)
    rows = sweep(args.run_dir, args.alphas, args.end, args.soup_with)
    if args.out:
        write_json(args.out, rows)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
