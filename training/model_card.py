"""Write a run's model card from its own files, so every number in it comes from a command.

    python -m training.model_card --model RUN_DIR [--experiments RUN_DIR ...]

The prose (intended use, data, limits) is fixed text; the figures come from the run directory
of the model and of each experiment (model.run_dir): its metadata, metrics, calibration, gate
settings and history, and the benchmarks' outputs that bench/ood_gate.py, bench/latency.py and
bench/leave_one_source_out.py write there with --out. Nothing is timed or recomputed here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.coverage import AGE_GROUP_NAMES, coverage
from model.formatting import label_scores, score, share
from model.labels import COVID, NORMAL, display_name
from model.run_dir import (
    EXPLANATIONS_FILE,
    LATENCY_FILE,
    LEAVE_ONE_SOURCE_OUT_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    OOD_BENCHMARK_FILE,
    ROBUST_FINETUNE_FILE,
    Calibration,
    GateSettings,
    Metadata,
    if_present,
    read_calibration,
    read_gate_settings,
    read_history,
    read_json,
    read_metadata,
)
from model.run_metrics import GroupScores, Metrics, read_metrics

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

Two data roots, each split by patient (no patient in two splits; see each data set's README).
**Source** below is the manifest's patient-id namespace: one hospital or one collection.

- `cxr4` — **Kermany et al. 2018** (`kermany`; CC BY 4.0): NORMAL, BACTERIAL and VIRAL
  pneumonia of **children** aged 1–5 from one hospital in Guangzhou; **COVID-19** figures and
  films from publications (`ieee8023`, `figure1`, `actualmed`), adults.
- `adult` — **adult** NORMAL films (`rsna`: RSNA/NIH ChestX-ray14, radiologist-read normals;
  `nih`: NIH "No Finding"), adult **PNEUMONIA of unknown type** (`nih`, before 2020, so
  bacterial or viral: a *label set*, trained with the likelihood of the set and scored as "any
  of these"), and adult **COVID-19** films from Spanish hospitals (`bimcv`, BIMCV-COVID19+).

Shortcut defences in training: classes sampled equally often, sources within a class sampled
as count^0.5 (no single source defines a class), and augmentation that randomises what differs
between sources (gamma, resolution, noise, black or white borders, burned-in letters and side
markers) on top of small rotations, zooms and shifts.
"""

LIMITS = """\
## Known limits

- **Where it is not validated.** Bacterial vs viral pneumonia is validated in children only;
  in adults the model has only seen pneumonia of unknown type. COVID-19 is adult-only: it has
  never seen a child with COVID-19. Each adult class comes from one or two sources (normals from
  one US archive, COVID-19 from Spanish hospitals and publications), so hospital, scanner or text
  can still stand in for the label: the leave-one-source-out table above is the best estimate
  of how much, and the Grad-CAM must be checked (a heatmap on text, arrows, edges or outside the
  lungs means the suggestion should not be trusted).
- **Validation flatters.** Val comes from the same sources as train (and, for the adult normal
  and COVID-19 folders, may hold other films of training patients): expect lower figures on new
  hospitals, most of all normal films called pneumonia.
- **COVID-19 means a test-positive patient**, not a positive film: some of those films look
  normal. Never use the model to rule COVID-19 in or out.
- **Bacterial vs viral** from a radiograph alone is hard even for radiologists; treat that
  split as weak evidence.
- Calibration was fitted on the val split (temperature scaling); it does not transfer to a
  different population: `python -m training.evaluate --recalibrate` refits it on a site's own
  labelled X-rays.
"""


def ood_section(gate: GateSettings, benchmark: dict | None) -> list[str]:
    """The gate's method, its data-derived limits and how often it refuses, as Markdown lines."""
    limits, figures = gate.limits, gate.figures
    lines = [
        "", "## Out-of-distribution gate", "",
        f"Before any probability is shown, images are screened: {figures['method']}.", "",
        f"- Distance limit **{limits.max_distance:.1f}**: the "
        f"{1 - figures['target_refused_fraction']:.1%} quantile of the val X-rays' distances "
        f"(fitted on {figures['fitted_on']['train']} train and {figures['fitted_on']['val']} "
        "val images)",
        f"- Pixel limits: contrast at least {limits.min_contrast:.0f} grey levels, "
        f"neighbouring-pixel correlation at least {limits.min_neighbour_correlation:.2f} "
        f"(half the lowest seen on a training X-ray)",
        f"- Val chest X-rays refused: {figures['val_refused_fraction']:.2%} in-sample, "
        f"{figures['val_refused_by_distance_cross_validated']:.2%} when the limit is set on one "
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


def _latency(run_dir: Path) -> str:
    latency = if_present(read_json, run_dir / LATENCY_FILE)
    return "n/a" if latency is None else f"{latency['predict']['median_ms']:.0f} ms"


def _epochs_run(history: list[dict]) -> dict[str, int]:
    """Epochs each stage actually ran (the config's counts are upper bounds)."""
    return {stage: sum(1 for record in history if record["stage"] == stage)
            for stage in ("frozen", "finetune")}


def experiment_row(run_dir: Path, shipped_version: str) -> str:
    """One line of the experiment table: settings, the val loss runs are chosen by, val figures
    overall and for adults and children, cost; the shipped run is marked."""
    metadata, metrics = read_metadata(run_dir), read_metrics(run_dir)
    calibration, history = read_calibration(run_dir), read_history(run_dir)
    config = metadata.config
    pvn = metrics.pneumonia_vs_normal
    covid = metrics.per_class.get(COVID)
    roots = metadata.data_roots or config["data"]
    data = "+".join(Path(root).name for root in ([roots] if isinstance(roots, str) else roots))
    stages = _epochs_run(history)
    settings = (f"{data}; {stages['frozen']}+{stages['finetune']} ep run, "
                f"ft blocks {config['finetune_blocks'] or 'all'}, lr {config['lr_finetune']:g}, "
                f"dropout {config['dropout']}, source balance {config.get('source_balance', 0)}, "
                f"WiSE-FT alpha {config.get('wise_alpha', 1):g}"
                + (f", soup of the last {config['finetune_soup']} epochs"
                   if config.get("finetune_soup") else "")
                + (f", souped with {', '.join(metadata.souped_with)}"
                   if metadata.souped_with else ""))
    name = run_dir.name + (" (shipped)" if metadata.version == shipped_version else "")
    val_loss = min((record["val_loss"] for record in history if "val_loss" in record), default=None)
    size_mb = (run_dir / MODEL_FILE).stat().st_size / 1e6
    adult = metrics.subgroup("age_group", "adult")
    child = metrics.subgroup("age_group", "pediatric")
    return (f"| {name} | {settings} | {score(val_loss)} | {score(metrics.accuracy)} | "
            f"{score(metrics.macro_f1)} | {score(pvn.auc)} | "
            f"{score(covid and covid.recall, 2)} / {score(covid and covid.precision, 2)} | "
            f"{score(calibration.ece_after_cross_validated)} | "
            f"{score(adult and adult.recall.get(NORMAL), 2)} | "
            f"{score(adult and adult.called_covid_among_non_covid, 2)} | "
            f"{score(adult and adult.pneumonia_vs_normal_auc)} | "
            f"{score(child and child.pneumonia_vs_normal_auc)} | "
            f"{_external_cells(metrics)} | "
            f"{metadata.training_seconds / 60:.0f} min | {size_mb:.1f} MB | "
            f"{_latency(run_dir)} |")


def _external_cells(metrics: Metrics) -> str:
    """The external checks' headline figures, where the run was scored on them."""
    children = metrics.external.get("kermany_test_a")
    adults = metrics.external.get("lungs")
    return (f"{score(children and children.normal_recall, 2)} / "
            f"{score(children and children.pneumonia_vs_normal_auc)} | "
            f"{score(adults and adults.normal_recall, 2)} / "
            f"{score(adults and adults.called_covid_among_non_covid, 2)}")


def _robust_sentence(metadata: Metadata) -> str:
    """How the final weights were made from the stages' ends (the sweep below chose them)."""
    config = metadata.config
    soup, alpha = config.get("finetune_soup", 0), config.get("wise_alpha", 1.0)
    parts = []
    if soup:
        parts.append(f"the fine-tuned weights averaged over its last {soup} epochs (a "
                     "checkpoint soup)")
    if alpha < 1:
        parts.append(f"every weight set to {1 - alpha:g} x its value at the end of stage 1 + "
                     f"{alpha:g} x its fine-tuned value (WiSE-FT)")
    if metadata.souped_with:
        parts.append("the result averaged uniformly with the model of "
                     + ", ".join(metadata.souped_with) + " (a model soup)")
    return "; then " + "; then ".join(parts) + " (see below)" if parts else ""


def summary_lines(metadata: Metadata, calibration: Calibration, history: list[dict]) -> list[str]:
    """The card's title and the facts a reader checks first."""
    config = metadata.config
    stages = _epochs_run(history)
    return [
        f"# Model card: {metadata.version}", "",
        f"- **Backbone:** {metadata.backbone}, ImageNet weights: {metadata.weights_source}",
        f"- **Input:** {metadata.image_size}x{metadata.image_size}, grayscale stretched "
        f"(no padding); the model's first layer repeats it to 3 channels and applies the "
        f"normalisation `{metadata.preprocessing.normalization}`",
        f"- **Classes:** {', '.join(display_name(c) for c in metadata.classes)}",
        f"- **Trained:** {metadata.created_at} (commit {metadata.git_commit}), "
        f"{metadata.training_seconds / 60:.0f} min on the build machine's CPU; "
        f"{stages['frozen']} frozen-backbone epochs then {stages['finetune']} fine-tuning "
        f"epochs (learning rates {config['lr_frozen']:g} then {config['lr_finetune']:g}, "
        f"early stopping on val loss)" + _robust_sentence(metadata),
        f"- **Reproduce with:** seed {metadata.seed}; "
        + ", ".join(f"{name} {version}" for name, version in metadata.software.items()),
        f"- **Calibration:** temperature {calibration.temperature:.3f} fitted on "
        f"val; ECE {score(calibration.ece_before)} before, "
        f"{score(calibration.ece_after)} after (in-sample), "
        f"{score(calibration.ece_after_cross_validated)} on held-out halves of val",
    ]


def dataset_lines(metadata: Metadata) -> list[str]:
    """Images per label (class or label set) and split."""
    labels = [*metadata.classes, *(metadata.label_sets or {})]
    lines = ["Images per label and split:", "",
             "| split | " + " | ".join(display_name(c) for c in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for split, counts in metadata.dataset.items():
        lines.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in labels) + " |")
    return lines


def coverage_lines(metadata: Metadata) -> list[str]:
    """Age group x class: images in train and val, and whether it is validated."""
    rows = coverage(metadata)
    if not rows:
        return []
    lines = ["", "## Where it was trained and validated", "",
             "Images labelled exactly this class, and (in brackets) images of a label set that "
             "includes it (pneumonia of unknown type).", "",
             "| age group | class | train | val | status |", "|---|---|---|---|---|"]
    lines += [f"| {AGE_GROUP_NAMES.get(row.age_group, row.age_group)} | "
              f"{display_name(row.class_name)} | {row.train} ({row.train_untyped}) | "
              f"{row.val} ({row.val_untyped}) | {row.status} |" for row in rows]
    return lines


def validation_lines(metadata: Metadata, metrics: Metrics, calibration: Calibration
                     ) -> list[str]:
    """Val figures over all images, per class and as a confusion matrix."""
    pvn = metrics.pneumonia_vs_normal
    roots = ", ".join(Path(root).name for root in metadata.data_roots or []) or "val"
    lines = [
        "", f"## Validation results ({roots} val; hidden test sets will be lower)", "",
        f"- Accuracy **{score(metrics.accuracy)}** (a label set counts as right when any of "
        f"its classes is called), macro-F1 **{score(metrics.macro_f1)}** over the fully "
        f"labelled images (n = {metrics.n_samples} in all)",
        f"- Pneumonia (any) vs normal: accuracy {score(pvn.accuracy)}, AUC {score(pvn.auc)}, "
        f"sensitivity {score(pvn.sensitivity)}, specificity {score(pvn.specificity)}",
        f"- Bacterial vs viral (true bacterial/viral cases, children): "
        f"{score(pvn.bacterial_vs_viral_accuracy)}",
        f"- Expected calibration error after temperature scaling: "
        f"{score(metrics.calibration.ece)} (temperature fitted on these images), "
        f"{score(calibration.ece_after_cross_validated)} on held-out halves",
    ]
    for name, scores in metrics.label_sets.items():
        lines.append(f"- {display_name(name)} (type unknown, any of "
                     f"{', '.join(map(display_name, scores.classes))}): called one of them in "
                     f"{score(scores.accuracy)} of {scores.n}")
    lines += ["", "| class | precision | recall | F1 | support | one-vs-rest AUC |",
              "|---|---|---|---|---|---|"]
    for name in metadata.classes:
        row, auc = metrics.per_class[name], metrics.roc[name].auc
        lines.append(f"| {display_name(name)} | {score(row.precision)} | {score(row.recall)} "
                     f"| {score(row.f1)} | {row.support} | {score(auc)} |")
    lines += ["", "Confusion matrix of the fully labelled images (rows: true class, columns: "
              "predicted):", "",
              "| | " + " | ".join(display_name(c) for c in metadata.classes) + " |",
              "|---|" + "---|" * len(metadata.classes)]
    for name, row in zip(metadata.classes, metrics.confusion_matrix, strict=True):
        lines.append(f"| {display_name(name)} | " + " | ".join(map(str, row)) + " |")
    return lines


def _subgroup_cells(figures: GroupScores) -> str:
    return (f"{figures.n} | {score(figures.accuracy)} | {label_scores(figures.recall)} | "
            f"{score(figures.pneumonia_vs_normal_auc)} | "
            f"{score(figures.called_covid_among_non_covid, 2)} |")


def subgroup_lines(metrics: Metrics) -> list[str]:
    """The val figures per source and per age group (the metrics' subgroups)."""
    subgroups = metrics.subgroups
    if not subgroups:
        return []
    lines = ["", "## By source and age group (val)", "",
             "| group | n | accuracy | recall by label | pneumonia-vs-normal AUC | "
             "called COVID-19 among non-COVID |", "|---|---|---|---|---|---|"]
    for kind, groups in subgroups.items():
        lines += [f"| {kind.replace('_', ' ')}: {name} | {_subgroup_cells(figures)}"
                  for name, figures in groups.items()]
    return lines


def external_lines(metrics: Metrics) -> list[str]:
    """The external checks (metrics.json ``external``, `python -m training.evaluate
    --external`): populations no image of which was trained on, each with what it is."""
    external = metrics.external
    if not external:
        return []
    lines = ["", "## Hospitals and batches it was never trained on (external checks)", "",
             "`python -m training.evaluate --external DIR`: every image through the gate, as a "
             "hospital would meet it; the figures are those of the images it accepted. Compare "
             "with the val table above: same model, populations it has not seen.", ""]
    lines += [f"- **{name}** ({figures.n} images): {figures.description}"
              for name, figures in external.items()]
    lines += ["", "| set | n | refused | normal recall | called COVID-19 among non-COVID | "
              "pneumonia-vs-normal AUC | pneumonia-vs-normal accuracy | macro-F1 | ECE |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {figures.n} | {share(figures.refused_fraction)} | "
              f"{score(figures.normal_recall)} | "
              f"{score(figures.called_covid_among_non_covid)} | "
              f"{score(figures.pneumonia_vs_normal_auc)} | "
              f"{score(figures.pneumonia_vs_normal_accuracy)} | "
              f"{score(figures.macro_f1)} | {score(figures.ece)} |"
              for name, figures in external.items()]
    return lines


def site_lines(metrics: Metrics) -> list[str]:
    """The site adaptation (metrics.json ``site``, `python -m training.adapt`): what was
    adapted on which films, and before/after on the site's held-out films and the base val."""
    site = metrics.site
    if not site:
        return []
    return ["", "## Site adaptation", "",
            f"Adapted from **{site['base_model']}** to site **{site['name']}** with "
            f"`python -m training.adapt`: {site['n']} accepted site films "
            f"({', '.join(f'{label} {n}' for label, n in site['labels'].items())}), "
            f"{site['fitted_on']} fitted on, {site['held_out']} held out by "
            f"{site['held_out_by']}. Adapted: {site['adapted']}.", "",
            "Before: the base model; after: this one. Val: the base run's val films in its "
            "feature bank, age group not given except in the rows marked *age given* (as "
            "training scores val)." + _guard_sentence(site), "", site_table(site)]


def site_table(report: dict) -> str:
    """A site adaptation's before/after (metrics.json ``site``) as a Markdown table: the card's
    and ``python -m training.adapt``'s."""
    rows = [("held-out site films: normal recall", "held_out", "normal_recall"),
            ("held-out site films: called COVID-19 among non-COVID", "held_out",
             "called_covid_among_non_covid"),
            ("held-out site films: accuracy", "held_out", "accuracy"),
            ("held-out site films: pneumonia-vs-normal AUC", "held_out",
             "pneumonia_vs_normal_auc"),
            ("base val: COVID-19 recall", "val.all", COVID),
            ("base val: called COVID-19 among non-COVID", "val.all",
             "called_covid_among_non_covid"),
            ("base val: accuracy", "val.all", "accuracy"),
            ("base val children: pneumonia-vs-normal AUC", "val.children",
             "pneumonia_vs_normal_auc"),
            ("base val children: normal recall", "val.children", "normal_recall"),
            ("base val, age given: COVID-19 recall", "val.all_age_given", COVID),
            ("base val children, age given: pneumonia-vs-normal AUC", "val.children_age_given",
             "pneumonia_vs_normal_auc")]
    lines = ["| figure | before | after |", "|---|---|---|"]
    for title, where, key in rows:
        cells = []
        for when in ("before", "after"):
            part, _, sub = where.partition(".")
            data = report[f"{part}_{when}"]
            data = data.get(sub) if (data and sub) else data  # older reports: no age given
            value = None if data is None else (data["recall"].get(key) if key == COVID
                                               else data.get(key))
            cells.append("n/a" if value is None else f"{value:.3f}")
        lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _guard_sentence(site: dict) -> str:
    """How the site weight was chosen (reports from before the guard have none)."""
    guard = site.get("guard")
    if not guard:
        return ""
    tried = ", ".join(f"{row['site_weight']:g}"
                      + (" without the label anchor" if row.get("label_anchor") == 0 else "")
                      + f" ({'holds' if row['guard_holds'] else 'fails'})"
                      for row in site.get("site_weights_tried", []))
    return (f" Forgetting guard (val COVID-19 recall may fall by at most "
            f"{guard['covid_recall_may_fall']:g}, children's pneumonia-vs-normal AUC by at most "
            f"{guard['children_auc_may_fall']:g}, non-COVID called COVID-19 may rise by at "
            f"most {guard.get('called_covid_may_rise', 0):g}, age given): site weights tried "
            f"{tried}; "
            + ("it held." if guard["holds"] else "**it did not hold at any weight tried**."))


def _group_scores(row: dict) -> GroupScores:
    """A leave-one-source-out row's figures (the same ones a val subgroup has)."""
    return GroupScores(n=row["n"], accuracy=row["accuracy"], recall=row["recall"],
                       pneumonia_vs_normal_auc=row.get("pneumonia_vs_normal_auc"),
                       called_covid_among_non_covid=row.get("called_covid_among_non_covid"))


def loso_lines(rows: list[dict] | None, balance: float) -> list[str]:
    """The leave-one-source-out table (bench/leave_one_source_out.py) at the shipped balance."""
    if not rows:
        return []
    chosen = [row for row in rows if row["balance"] == balance]
    lines = ["", "## Sources it has never seen (leave one source out)", "",
             "`bench/leave_one_source_out.py`: a head on frozen ImageNet features trained without "
             f"one source (source balance {balance:g}), scored on all of that source (*unseen*), "
             "against the same head trained with the source and scored on its val split (*seen*). "
             "A floor for the fine-tuned model, and the best stand-in we have for new hospitals.",
             "", "| source | rows | n | accuracy | recall by label | pneumonia-vs-normal AUC | "
             "called COVID-19 among non-COVID | gate refused |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['source']} ({row['age_group']}) | {row['rows']} | "
              f"{_subgroup_cells(_group_scores(row))} {row['gate_refused']:.1%} |"
              for row in chosen]
    return lines


WISE_TABLE_HEAD = [
    "| alpha | val acc / macro-F1 | val COVID-19 recall / precision | val adults non-COVID called "
    "COVID-19 | val children AUC | kermany_test_a normal recall / AUC | lungs/ normal / "
    "COVID-19 |", "|---|---|---|---|---|---|---|"]


def _figures(figures: dict, *keys: str, digits: int = 2) -> str:
    return " / ".join(score(figures.get(key), digits) for key in keys)


def wise_row(row: dict, chosen: tuple[str, float] | None = None) -> str:
    """One mixture's line of the WiSE-FT table (bench.robust_finetune prints it as each is
    scored; the card's table marks the ``chosen`` (stage-2 end, alpha) bold)."""
    val = row["val"]
    end = row.get("end", "best")
    mark = "**" if chosen is not None and chosen[0] == end and abs(
        row["alpha"] - chosen[1]) < 1e-9 else ""
    end = "" if end == "best" else f"{end}, "
    return (f"| {mark}{end}{row['alpha']:g}{mark} | {_figures(val, 'accuracy', 'macro_f1')} | "
            f"{_figures(val, 'covid_recall', 'covid_precision')} | "
            f"{_figures(val, 'adult_called_covid_among_non_covid', digits=3)} | "
            f"{_figures(val, 'children_auc', digits=3)} | "
            f"{_figures(row.get('kermany_test_a', {}), 'normal_recall', 'pneumonia_vs_normal_auc')}"
            f" | {_figures(row.get('lungs', {}), 'normal_recall', 'called_covid_among_non_covid')}"
            " |")


def weights_label(end: str, finetune_blocks: int = 0, souped_with: list[str] | None = None
                  ) -> str:
    """How the sweep's rows and the card name a set of weights: the blocks fine-tuned when not
    all, the end of stage 2 (best, soup:K, epoch:N) and the versions of any runs souped with."""
    label = (f"top {finetune_blocks} blocks, " if finetune_blocks else "") + end
    return f"{label} with " + ", ".join(souped_with) if souped_with else label


def wise_lines(rows: list[dict] | None, metadata: Metadata) -> list[str]:
    """The robust fine-tuning sweep (bench/robust_finetune.py) that chose the shipped weights:
    how far to fine-tune (WiSE-FT), which end of stage 2 (its best epoch, an epoch, a soup of
    its last epochs) and any soup with other runs."""
    if not rows:
        return []
    config = metadata.config
    soup = config.get("finetune_soup", 0)
    end = weights_label(f"soup:{soup}" if soup else "best", config.get("finetune_blocks", 0),
                        metadata.souped_with)
    chosen = (end, config.get("wise_alpha", 1.0))
    return ["", "## How far to fine-tune (robust fine-tuning, chosen on the external checks)",
            "",
            "Every weight is (1 - alpha) x the end of stage 1 (frozen ImageNet backbone, trained "
            "head) + alpha x an end of stage 2 (`--wise-alpha`, WiSE-FT, Wortsman et al. CVPR "
            "2022): its lowest-val-loss epoch (alpha alone), its N-th epoch (`epoch:N`), or the "
            "mean of its last N epochs (`soup:N`, `--finetune-soup`); `with RUN` averages the "
            "result uniformly with another run's model (`--soup-with`, a model soup, Wortsman et "
            "al. ICML 2022). Each row scores one set of weights with no gate and no temperature: "
            "val with the age group known, the external checks with the age group estimated, as "
            "for an upload. The external checks chose the bold row; val alone would have chosen "
            "otherwise.",
            "", *WISE_TABLE_HEAD, *(wise_row(row, chosen) for row in rows)]


HEATMAP_MEANING = (
    "A heatmap shows which parts of the image raised the score of one class in this model; it "
    "is not a drawing of the disease, it does not say the finding is there, and a map that is "
    "hot outside the lungs (on text, markers, borders or the abdomen) is a reason to doubt the "
    "finding, not to look there.")


def explanation_lines(report: dict | None) -> list[str]:
    """"Where the model looks" (bench/explanations.py): each map method against the lungs."""
    if not report:
        return []
    lungs = report["lung_share_of_image"]["mean"]
    random_order = report["random_order"]
    lines = ["", "## Where the model looks", "", HEATMAP_MEANING, "",
             f"`bench/explanations.py` on {report['films']} held-out adult films with hand-drawn "
             f"lung masks ({report['refused_by_the_model']} refused by the model), explaining "
             f"the predicted class. The lungs cover {lungs:.0%} of these images: a map spread "
             "evenly would put that share inside them. Deletion / insertion AUC: the class's "
             f"probability as pixels are replaced by ({report['imputation']}) or restored in "
             "the map's order (lower deletion, higher insertion = more faithful); a random "
             f"order gives {random_order['deletion_auc']['mean']:.3f} ± "
             f"{random_order['deletion_auc']['sd']:.3f} / "
             f"{random_order['insertion_auc']['mean']:.3f} ± "
             f"{random_order['insertion_auc']['sd']:.3f}.",
             "", "| method @ layer | grid | heat in lungs (true mask) | with the segmenter's mask "
             "| hottest point in lungs | deletion AUC | insertion AUC | ms per film |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in report["methods"].items():
        shown = f"**{name}** (shown)" if name == report["shown"] else name
        shown += " (best by the numbers)" if name == report["chosen"] else ""
        lines.append(
            f"| {shown} | {row['grid']}x{row['grid']} | {row['heat_in_lungs']['mean']:.2f} | "
            f"{row['heat_in_lungs_segmenter_mask']['mean']:.2f} | "
            f"{row['hottest_point_in_lungs']:.0%} | {row['deletion_auc']['mean']:.3f} ± "
            f"{row['deletion_auc']['sd']:.3f} | {row['insertion_auc']['mean']:.3f} ± "
            f"{row['insertion_auc']['sd']:.3f} | {row['ms_per_film']:.0f} |")
    return lines


def experiment_lines(metadata: Metadata, experiments: list[Path]) -> list[str]:
    if not experiments:
        return []
    return [
        "", "## Experiments (val split of the shipped model's data; latency: "
        "`bench/latency.py`, warm decode + predict on a 2-core CPU)",
        "", "Accuracy to the child AUC: every run scored on the same val images (those of the "
        "shipped model's data roots). Val loss and ECE (on held-out halves) come from each "
        "run's own validation split, so they compare runs trained on the same data only. Within "
        "a run, the epoch with the lowest val loss is kept. A run trained on cxr4 alone was "
        "scored on its own (cxr4) val. The external checks (never trained on): "
        "kermany_test_a (children, a later batch) normal recall / pneumonia-vs-normal AUC, and "
        "lungs (adult normals, an unseen source) normal recall / called COVID-19.",
        "", "| run | settings | val loss | acc | macro-F1 | pneu-vs-normal AUC | "
        "COVID recall / precision | ECE | adult normal recall | adult non-COVID called COVID | "
        "adult pneu-vs-normal AUC | child pneu-vs-normal AUC | kermany_test_a normal / AUC | "
        "lungs normal / called COVID | train time | size | latency |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(experiment_row(path, metadata.version) for path in experiments),
    ]


def render(run_dir: Path, experiments: list[Path]) -> str:
    """The whole card as Markdown, section by section."""
    metadata, metrics = read_metadata(run_dir), read_metrics(run_dir)
    calibration = read_calibration(run_dir)
    gate = if_present(read_gate_settings, run_dir)
    lines = [
        *summary_lines(metadata, calibration, read_history(run_dir)),
        "", INTENDED_USE, DATA, *dataset_lines(metadata),
        *coverage_lines(metadata),
        *validation_lines(metadata, metrics, calibration),
        *subgroup_lines(metrics),
        *external_lines(metrics),
        *wise_lines(if_present(read_json, run_dir / ROBUST_FINETUNE_FILE), metadata),
        *site_lines(metrics),
        *loso_lines(if_present(read_json, run_dir / LEAVE_ONE_SOURCE_OUT_FILE),
                    metadata.config.get("source_balance", 0.0)),
        *(ood_section(gate, if_present(read_json, run_dir / OOD_BENCHMARK_FILE)) if gate else []),
        *explanation_lines(if_present(read_json, run_dir / EXPLANATIONS_FILE)),
        *experiment_lines(metadata, experiments),
        "", LIMITS,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--experiments", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    (args.model / MODEL_CARD_FILE).write_text(render(args.model, args.experiments))
    print(f"wrote {args.model / MODEL_CARD_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
