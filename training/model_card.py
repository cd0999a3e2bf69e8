"""Write a run's MODEL_CARD.md from its own files, so every number in it comes from a command.

    python -m training.model_card --model RUN_DIR [--experiments RUN_DIR ...]

The prose (intended use, data, limits) is fixed text; the figures come from metadata.json,
metrics.json, calibration.json, ood.json, ood_benchmark.json and history.json of the model and
of each experiment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from model.labels import display_name
from model.ood import OOD_JSON, OodGate

OOD_BENCHMARK_JSON = "ood_benchmark.json"  # bench/ood_gate.py --out RUN_DIR/ood_benchmark.json

INTENDED_USE = """\
## Intended use

Decision support for clinicians reading **frontal (PA/AP) chest radiographs**: it suggests one
of four classes — Normal, Bacterial pneumonia, Viral pneumonia, COVID-19 — with calibrated
probabilities and a Grad-CAM heatmap of the regions that drove the suggestion. **It is not a
diagnosis.** A qualified reader makes every clinical decision.

It must not be used: as the only reader of an image; for triage without human review; on
lateral views, CT, MR or other body parts (an out-of-distribution gate refuses most such
images, but it is not perfect); for findings other than these four classes (effusion, nodules,
pneumothorax, tubes and lines are not assessed); or to rule out COVID-19 (use PCR/antigen tests).
"""

DATA = """\
## Training data

`cxr4` (see the data set's README): train and val split by patient, no patient in two splits.

- **Kermany et al. 2018** (Chest X-Ray Images (Pneumonia), official train split; CC BY 4.0,
  Mendeley Data doi:10.17632/rscbjbr9sj.2): NORMAL, BACTERIAL and VIRAL pneumonia —
  **pediatric** patients aged 1–5 from one hospital in Guangzhou, distributed stretched to
  224x224.
- **COVID-19**: the ieee8023 covid-chestxray-dataset (Cohen et al.; licence per image: CC BY,
  CC BY-NC-SA, CC BY-NC-ND and unlabelled), Figure 1 and Actualmed COVID-19 initiatives
  (research use only) — **adult** patients, many portable AP films and figures from papers.
"""

LIMITS = """\
## Known limits

- **Source shortcut.** Every COVID-19 image is an adult film from publications and many
  hospitals; every other image is a pediatric film from one hospital. The model can separate
  COVID-19 by age, body habitus or image history without looking at the lungs, so COVID-19
  figures here overstate clinical performance. Check the Grad-CAM: a heatmap on text, arrows,
  edges or outside the lungs means the suggestion should not be trusted.
- **Validation flatters.** On these sources a frozen-feature baseline scored 0.98
  pneumonia-vs-normal accuracy on val but 0.83 on an independent test split: expect lower
  figures on new data, most of all normal films called pneumonia.
- **Bacterial vs viral** from a radiograph alone is hard even for radiologists; treat that
  split as weak evidence.
- Children's and adults' anatomy differ; the model has seen no adult normals and no adult
  bacterial or viral pneumonia.
- Calibration was fitted on the val split (temperature scaling); it does not transfer to a
  different population.
"""


def _read(path: Path) -> dict | list | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def cpu_latency_ms(run_dir: Path, repeats: int = 20) -> float:
    """Median single-image predict latency, warm, on this machine (a 224x224 input).

    The classifier alone: the gate would refuse the blank test image, and its own cost is
    reported with the gate.
    """
    from model.predictor import Predictor

    predictor = Predictor.load(run_dir)
    predictor.ood = OodGate.off("latency of the classifier alone")
    gray = np.full((224, 224), 128, np.uint8)
    predictor.predict(gray)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict(gray)
        timings.append(1000 * (time.perf_counter() - started))
    return statistics.median(timings)


def ood_section(ood: dict, benchmark: dict | None) -> list[str]:
    """The gate's method, its data-derived limits and how often it refuses, as Markdown lines."""
    limits = ood["limits"]
    lines = [
        "", "## Out-of-distribution gate", "",
        f"Before any probability is shown, images are screened: {ood['method']}.", "",
        f"- Distance limit **{limits['max_distance']:.1f}**: the "
        f"{1 - ood['target_refused_fraction']:.1%} quantile of the val X-rays' distances "
        f"(fitted on {ood['fitted_on']['train']} train and {ood['fitted_on']['val']} val images)",
        f"- Pixel limits: contrast at least {limits['min_contrast']:.0f} grey levels, "
        f"neighbouring-pixel correlation at least {limits['min_neighbour_correlation']:.2f} "
        f"(half the lowest seen on a training X-ray)",
        f"- Val chest X-rays refused: {ood['val_refused_fraction']:.2%} in-sample, "
        f"{ood['val_refused_by_distance_cross_validated']:.2%} when the limit is set on one "
        "half of val and measured on the other",
    ]
    if benchmark:
        non_xray = benchmark["non_xray"]
        lines.append(
            f"- Non-chest-X-ray set (`bench/ood_gate.py`: photos, CT/MR slices, documents, "
            f"screenshots, noise, blank images): **{non_xray['refused_fraction']:.1%}** of "
            f"{non_xray['images']} refused; it adds "
            f"{benchmark['latency']['predict_added_ms']:.1f} ms per image (median)")
        if non_xray.get("accepted"):
            lines.append(f"- Non-X-rays it let through: {', '.join(non_xray['accepted'])}")
        if benchmark.get("val", {}).get("refused"):
            lines.append(f"- Val X-rays it refused: {', '.join(benchmark['val']['refused'])}")
    return lines


def experiment_row(run_dir: Path, shipped_version: str) -> str:
    """One line of the experiment table: settings, the val loss runs are chosen by, val figures,
    cost; the shipped run is marked."""
    metadata, metrics = _read(run_dir / "metadata.json"), _read(run_dir / "metrics.json")
    calibration = _read(run_dir / "calibration.json") or {}
    history = _read(run_dir / "history.json") or []
    config = metadata["config"]
    pvn = metrics["pneumonia_vs_normal"]
    covid = metrics["per_class"].get("COVID19", {})
    settings = (f"{config['epochs_frozen']}+{config['epochs_finetune']} ep, "
                f"ft blocks {config['finetune_blocks'] or 'all'}, lr {config['lr_finetune']:g} "
                f"(plateau patience {config['reduce_lr_patience']}), dropout {config['dropout']}, "
                f"limit {config['limit_per_class'] or 'none'}, "
                f"weights {config['weights']}")
    name = run_dir.name + (" (shipped)" if metadata["version"] == shipped_version else "")
    val_loss = min((record["val_loss"] for record in history if "val_loss" in record), default=None)
    size_mb = (run_dir / "model.keras").stat().st_size / 1e6
    return (f"| {name} | {settings} | {_fmt(val_loss)} | {_fmt(metrics['accuracy'])} | "
            f"{_fmt(metrics['macro_f1'])} | {_fmt(pvn['accuracy'])} | {_fmt(pvn['auc'])} | "
            f"{_fmt(covid.get('recall'), 2)} / {_fmt(covid.get('precision'), 2)} | "
            f"{_fmt(calibration.get('ece_after_cross_validated'))} | "
            f"{metadata.get('training_seconds', 0) / 60:.0f} min | {size_mb:.1f} MB | "
            f"{cpu_latency_ms(run_dir):.0f} ms |")


def render(run_dir: Path, experiments: list[Path]) -> str:
    """The whole card as Markdown."""
    metadata = _read(run_dir / "metadata.json")
    metrics = _read(run_dir / "metrics.json")
    calibration = _read(run_dir / "calibration.json") or {}
    ood = _read(run_dir / OOD_JSON)
    history = _read(run_dir / "history.json") or []
    config = metadata["config"]
    pvn = metrics["pneumonia_vs_normal"]
    stages = {stage: sum(1 for r in history if r["stage"] == stage)
              for stage in ("frozen", "finetune")}
    lines = [
        f"# Model card: {metadata['version']}", "",
        f"- **Backbone:** {metadata['backbone']}, ImageNet weights: {metadata['weights_source']}",
        f"- **Input:** {metadata['image_size']}x{metadata['image_size']}, grayscale stretched "
        f"(no padding) and repeated to 3 channels, normalisation "
        f"`{metadata['preprocessing']['normalization']}`",
        f"- **Classes:** {', '.join(display_name(c) for c in metadata['classes'])}",
        f"- **Trained:** {metadata['created_at']} (commit {metadata['git_commit']}), "
        f"{metadata.get('training_seconds', 0) / 60:.0f} min on the build machine's CPU; "
        f"{stages['frozen']} frozen-backbone epochs then {stages['finetune']} fine-tuning "
        f"epochs (learning rates {config['lr_frozen']:g} then {config['lr_finetune']:g}, "
        f"early stopping on val loss)",
        f"- **Calibration:** temperature {calibration.get('temperature', 1.0):.3f} fitted on "
        f"val; ECE {_fmt(calibration.get('ece_before'))} before, "
        f"{_fmt(calibration.get('ece_after'))} after (in-sample), "
        f"{_fmt(calibration.get('ece_after_cross_validated'))} on held-out halves of val",
        "", INTENDED_USE, DATA,
        "Images per class and split:", "",
        "| split | " + " | ".join(display_name(c) for c in metadata["classes"]) + " |",
        "|---|" + "---|" * len(metadata["classes"]),
    ]
    for split, counts in metadata["dataset"].items():
        lines.append(f"| {split} | " + " | ".join(str(counts[c]) for c in metadata["classes"])
                     + " |")
    lines += [
        "", "## Validation results (cxr4 val; the hidden test split will be lower)", "",
        f"- 4-class accuracy **{_fmt(metrics['accuracy'])}**, macro-F1 "
        f"**{_fmt(metrics['macro_f1'])}** (n = {metrics.get('n_samples')})",
        f"- Pneumonia (any) vs normal: accuracy {_fmt(pvn['accuracy'])}, AUC {_fmt(pvn['auc'])}, "
        f"sensitivity {_fmt(pvn['sensitivity'])}, specificity {_fmt(pvn['specificity'])}",
        f"- Bacterial vs viral (true bacterial/viral cases): "
        f"{_fmt(pvn.get('bacterial_vs_viral_accuracy'))}",
        f"- Expected calibration error after temperature scaling: "
        f"{_fmt(metrics['calibration']['ece'])} (temperature fitted on these images), "
        f"{_fmt(calibration.get('ece_after_cross_validated'))} on held-out halves", "",
        "| class | precision | recall | F1 | support | one-vs-rest AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name in metadata["classes"]:
        row, auc = metrics["per_class"][name], metrics["roc"][name]["auc"]
        lines.append(f"| {display_name(name)} | {_fmt(row['precision'])} | {_fmt(row['recall'])} "
                     f"| {_fmt(row['f1'])} | {row['support']} | {_fmt(auc)} |")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
              "| | " + " | ".join(display_name(c) for c in metadata["classes"]) + " |",
              "|---|" + "---|" * len(metadata["classes"])]
    for name, row in zip(metadata["classes"], metrics["confusion_matrix"], strict=True):
        lines.append(f"| {display_name(name)} | " + " | ".join(map(str, row)) + " |")
    if ood:
        lines += ood_section(ood, _read(run_dir / OOD_BENCHMARK_JSON))
    if experiments:
        lines += [
            "", "## Experiments (val split; latency: warm single-image predict on a 2-core CPU)",
            "", "The shipped run is the one with the lowest val loss, the criterion early "
            "stopping uses, not the one with the best headline figure. ECE is measured on "
            "held-out halves of val.",
            "", "| run | settings | val loss | acc | macro-F1 | pneu-vs-normal acc | AUC | "
            "COVID recall / precision | ECE | train time | size | latency |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [experiment_row(path, metadata["version"]) for path in experiments]
    lines += ["", LIMITS]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--experiments", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    (args.model / "MODEL_CARD.md").write_text(render(args.model, args.experiments))
    print(f"wrote {args.model / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
