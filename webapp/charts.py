"""Plotly figures and tables for the app, built from a run's files; tested without Streamlit.

Nothing here computes a metric: every number is read from what training and evaluation wrote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from model.coverage import coverage
from model.formatting import label_scores, score
from model.labels import display_name
from model.prediction import Prediction
from model.run_dir import Calibration, Metadata
from model.run_metrics import Metrics

PRIMARY = "#1d5fa8"
ACCENT = "#e07b39"
MUTED = "#9fb3c8"
GRID = "#e6ebf1"
CLASS_COLOURS = ("#2a9d8f", "#1d5fa8", "#e07b39", "#c0392b")
FONT = {"family": "sans-serif", "size": 13, "color": "#1b2430"}


def _layout(figure: go.Figure, **layout) -> go.Figure:
    defaults = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
    figure.update_layout(
        font=FONT, plot_bgcolor="white", paper_bgcolor="white", **{**defaults, **layout}
    )
    return figure


def probability_chart(prediction: Prediction) -> go.Figure:
    """Horizontal bars of every class's calibrated probability, the most likely one highlighted;
    a class the age group's head was never trained on reads "not assessed"."""
    probabilities, top = prediction.probabilities, prediction.label
    names = list(probabilities)
    skipped = prediction.age.not_assessed if prediction.age is not None else ()
    figure = go.Figure(
        go.Bar(
            x=[probabilities[name] for name in names],
            y=[display_name(name) for name in names],
            orientation="h",
            marker_color=[PRIMARY if name == top else MUTED for name in names],
            text=["not assessed" if name in skipped else f"{probabilities[name]:.1%}"
                  for name in names],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    figure.update_xaxes(range=[0, 1.12], tickformat=".0%", showgrid=True, gridcolor=GRID)
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, height=210, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                   showlegend=False)


def _stage_boundary(history: list[dict]) -> float | None:
    """Halfway between the last frozen epoch and the first fine-tuning epoch, if both ran."""
    frozen = [record["epoch"] for record in history if record["stage"] == "frozen"]
    finetune = [record["epoch"] for record in history if record["stage"] == "finetune"]
    if not frozen or not finetune:
        return None
    return (max(frozen) + min(finetune)) / 2


def training_curves(history: list[dict]) -> go.Figure:
    """Loss and accuracy per epoch, train and validation, with the start of fine-tuning marked."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                           horizontal_spacing=0.08)
    epochs = [record["epoch"] for record in history]
    stages = [record["stage"] for record in history]
    for column, metric in enumerate(("loss", "accuracy"), start=1):
        for prefix, label, dash in (("", "train", "solid"), ("val_", "validation", "dash")):
            figure.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[record.get(prefix + metric) for record in history],
                    customdata=stages,
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=column == 1,
                    line={"color": PRIMARY if prefix else ACCENT, "dash": dash},
                    hovertemplate=f"epoch %{{x}} (%{{customdata}})<br>{label} {metric} "
                    "%{y:.3f}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    boundary = _stage_boundary(history)
    if boundary is not None:
        for column in (1, 2):
            figure.add_vline(x=boundary, line_dash="dot", line_color="#5b6b7d", row=1, col=column)
        figure.add_annotation(
            x=boundary, y=1.0, xref="x", yref="y domain", text="fine-tuning starts",
            showarrow=False, xanchor="left", yanchor="top", font={"size": 11, "color": "#5b6b7d"},
        )
    figure.update_xaxes(title_text="epoch", gridcolor=GRID)
    figure.update_yaxes(gridcolor=GRID)
    figure.update_yaxes(tickformat=".0%", row=1, col=2)
    return _layout(figure, height=360, legend={"orientation": "h", "y": -0.2})


def confusion_matrix_figure(classes: Sequence[str], confusion_matrix: Sequence[Sequence[int]],
                            normalised: bool = False,
                            axes: tuple[str, str] = ("true class", "predicted class"),
                            rows: Sequence[str] | None = None) -> go.Figure:
    """Rows are the true class, columns the predicted one; counts, or shares of each true class.

    ``axes`` names the rows and columns when they are something else (radiologist vs model);
    ``rows``, when given, names rows that are not the classes (a site's label sets)."""
    names = [display_name(name) for name in classes]
    row_names = [display_name(name) for name in (classes if rows is None else rows)]
    counts = np.asarray(confusion_matrix, dtype=float)
    if normalised:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        text = [[f"{value:.0%}" for value in row] for row in values]
    else:
        values = counts
        text = [[f"{int(value)}" for value in row] for row in values]
    figure = go.Figure(
        go.Heatmap(
            z=values.tolist(),
            x=names,
            y=row_names,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalised else None,
            colorbar={"title": "share" if normalised else "images", "thickness": 12},
            hovertemplate=f"{axes[0]} %{{y}}<br>{axes[1]} %{{x}}<br>%{{text}}<extra></extra>",
        )
    )
    figure.update_xaxes(title_text=axes[1], side="bottom")
    figure.update_yaxes(title_text=axes[0], autorange="reversed")
    return _layout(figure, height=420)


def per_class_rows(metrics: Metrics) -> list[dict]:
    """The per-class precision, recall, F1 and support as table rows, in the model's order."""
    return [
        {
            "Class": display_name(name),
            "Precision": metrics.per_class[name].precision,
            "Recall": metrics.per_class[name].recall,
            "F1": metrics.per_class[name].f1,
            "Support": metrics.per_class[name].support,
        }
        for name in metrics.classes
    ]


def roc_figure(metrics: Metrics) -> go.Figure:
    """One-vs-rest ROC curve of each class with its AUC (n/a where a class is absent)."""
    figure = go.Figure()
    for name, colour in zip(metrics.classes, CLASS_COLOURS, strict=False):
        curve = metrics.roc[name]
        auc = score(curve.auc)
        figure.add_trace(
            go.Scatter(
                x=curve.fpr, y=curve.tpr, mode="lines",
                name=f"{display_name(name)} (AUC {auc})", line={"color": colour, "width": 2},
                hovertemplate="FPR %{x:.2f}<br>TPR %{y:.2f}<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                   line={"color": "#b0b8c4", "dash": "dot"}, hoverinfo="skip")
    )
    figure.update_xaxes(title_text="false positive rate", range=[0, 1], gridcolor=GRID)
    figure.update_yaxes(title_text="true positive rate", range=[0, 1.02], gridcolor=GRID)
    return _layout(figure, height=420, legend={"x": 0.45, "y": 0.05, "bgcolor": "rgba(0,0,0,0)"})


def reliability_figure(calibration: Calibration) -> go.Figure:
    """Accuracy against confidence per bin, before and after temperature scaling.

    A calibrated model follows the diagonal; marker size shows how many images a bin holds.
    """
    figure = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                   line={"color": "#b0b8c4", "dash": "dot"}, hoverinfo="skip")
    )
    temperature = calibration.temperature
    for all_bins, ece, label, colour in (
        (calibration.bins_before, calibration.ece_before, "before scaling", ACCENT),
        (calibration.bins_after, calibration.ece_after, f"after scaling (T = {temperature:.2f})",
         PRIMARY),
    ):
        bins = [item for item in all_bins if item["count"]]
        largest = max((item["count"] for item in bins), default=1)
        figure.add_trace(
            go.Scatter(
                x=[item["confidence"] for item in bins],
                y=[item["accuracy"] for item in bins],
                customdata=[item["count"] for item in bins],
                mode="lines+markers",
                name=f"{label}, ECE {ece:.3f}",
                line={"color": colour},
                marker={"size": [6 + 14 * (item["count"] / largest) ** 0.5 for item in bins]},
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>"
                "%{customdata} images<extra></extra>",
            )
        )
    figure.update_xaxes(title_text="confidence (top-class probability)", range=[0, 1],
                        tickformat=".0%", gridcolor=GRID)
    figure.update_yaxes(title_text="accuracy", range=[0, 1.02], tickformat=".0%", gridcolor=GRID)
    return _layout(figure, height=440, legend={"orientation": "h", "y": -0.2})


def dataset_rows(metadata: Metadata) -> list[dict]:
    """Images per class (and label set) and split, from the run's metadata, with totals."""
    dataset = metadata.dataset
    splits = list(dataset)
    rows = []
    for name in [*metadata.classes, *(metadata.label_sets or {})]:
        counts = {split: int(dataset[split].get(name, 0)) for split in splits}
        rows.append({"Class": display_name(name), **counts, "total": sum(counts.values())})
    totals = {split: sum(row[split] for row in rows) for split in splits}
    rows.append({"Class": "All classes", **totals, "total": sum(totals.values())})
    return rows


def subgroup_rows(metrics: Metrics) -> list[dict]:
    """One row per source and per age group: the metrics' ``subgroups``, for a table."""
    rows = []
    for kind, groups in metrics.subgroups.items():
        for name, figures in groups.items():
            rows.append({
                "By": kind.replace("_", " "), "Group": name, "Images": figures.n,
                "Accuracy": figures.accuracy,
                "Recall by label": label_scores(figures.recall),
                "Pneumonia-vs-normal AUC": figures.pneumonia_vs_normal_auc,
                "Called COVID-19 among non-COVID": figures.called_covid_among_non_covid,
            })
    return rows


def external_rows(metrics: Metrics) -> list[dict]:
    """One row per external check (the metrics' ``external``), with what the set is."""
    return [{
        "Set": name, "What it is": figures.description, "Images": figures.n,
        "Refused": figures.refused_fraction, "Normal recall": figures.normal_recall,
        "Called COVID-19 among non-COVID": figures.called_covid_among_non_covid,
        "Pneumonia-vs-normal AUC": figures.pneumonia_vs_normal_auc,
        "Pneumonia-vs-normal accuracy": figures.pneumonia_vs_normal_accuracy,
        "Macro F1": figures.macro_f1, "ECE": figures.ece,
    } for name, figures in metrics.external.items()]


def coverage_rows(metadata: Metadata) -> list[dict]:
    """Age group x class: images seen in training and validation, and what that makes it."""
    return [{"Age group": row.age_group, "Class": display_name(row.class_name),
             "Train": row.train, "Train (type unknown)": row.train_untyped, "Val": row.val,
             "Val (type unknown)": row.val_untyped, "Status": row.status}
            for row in coverage(metadata)]


DAY_MS = 86_400_000
MAX_DAY_TICKS = 10


def _day_axis(figure: go.Figure, days, switches: Sequence[tuple[datetime, str]] = (),
              period_days: int = 1) -> go.Figure:
    """An x axis of whole UTC days, each value drawn across its period (a day, or a week from
    its Monday) and each tick labelled as a day ("02 Dec 2026"), whatever the span: Plotly's
    own ticks for one or two days are fractions of a second ("23:59:59.9995"). Model switches
    (time, version) get a dashed line at their time, inside the period they happened in, and
    the version."""
    times = pd.to_datetime(pd.Series(list(days) + [at for at, _ in switches]))
    first, last = times.min().floor("D"), times.max().floor("D")
    periods = ((last - first).days + 1) / period_days
    step = period_days * max(1, math.ceil(periods / MAX_DAY_TICKS))
    figure.update_traces(xperiod=period_days * DAY_MS, xperiodalignment="middle")
    figure.update_traces(width=0.8 * period_days * DAY_MS, selector={"type": "bar"})
    figure.update_xaxes(type="date", tickformat="%d %b %Y", ticklabelmode="period",
                        tick0=first, dtick=step * DAY_MS,
                        range=[first, last + pd.Timedelta(days=period_days)])
    for at, version in switches:
        figure.add_shape(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1,
                         line={"color": MUTED, "dash": "dash", "width": 1})
        figure.add_annotation(x=at, xref="x", y=1, yref="paper", yanchor="bottom",
                              text=f"model {version}", showarrow=False, font={"size": 10})
    return figure


def daily_volume_figure(summary, switches: Sequence[tuple[datetime, str]] = ()) -> go.Figure:
    """Analyses and refusals per day (stacked bars), with the refusal rate on a second axis."""
    figure = go.Figure([
        go.Bar(x=summary["day"], y=summary["analyses"], name="analyses", marker_color=PRIMARY),
        go.Bar(x=summary["day"], y=summary["refusals"], name="refusals", marker_color=ACCENT),
        go.Scatter(x=summary["day"], y=summary["refusal_rate"], name="refusal rate",
                   yaxis="y2", mode="lines+markers", line={"color": MUTED}),
    ])
    figure.update_layout(barmode="stack", yaxis={"title": "uploads"},
                         yaxis2={"title": "refusal rate", "overlaying": "y", "side": "right",
                                 "tickformat": ".0%", "range": [0, 1], "dtick": 0.25})
    return _layout(_day_axis(figure, summary["day"], switches), height=340)


def latency_figure(summary, switches: Sequence[tuple[datetime, str]] = ()) -> go.Figure:
    figure = go.Figure(go.Scatter(x=summary["day"], y=summary["median_latency_ms"],
                                  mode="lines+markers", line={"color": PRIMARY},
                                  name="median latency"))
    figure.update_yaxes(title_text="median analysis time (ms)", rangemode="tozero")
    return _layout(_day_axis(figure, summary["day"], switches), height=300)


def class_mix_figure(mix_by_day, expected: dict[str, float],
                     switches: Sequence[tuple[datetime, str]] = ()) -> go.Figure:
    """Each class's daily share of predictions (lines) against its validation share (dotted)."""
    figure = go.Figure()
    for colour, name in zip(CLASS_COLOURS, expected, strict=False):
        figure.add_trace(go.Scatter(x=mix_by_day.index, y=mix_by_day[name], mode="lines+markers",
                                    name=display_name(name), line={"color": colour}))
        figure.add_hline(y=expected[name], line={"color": colour, "dash": "dot"})
    figure.update_yaxes(title_text="share of the day's analyses", tickformat=".0%",
                        range=[0, 1])
    return _layout(_day_axis(figure, mix_by_day.index, switches), height=360)


def shift_by_week_figure(series, switches: Sequence[tuple[datetime, str]] = ()) -> go.Figure:
    """The weekly shift score (webapp.site_shift.weekly_shift) against its threshold (dotted);
    a week with too few films for a score is a grey cross on the axis, with its count."""
    scored, few = series[series["score"].notna()], series[series["score"].isna()]
    figure = go.Figure([
        go.Scatter(x=scored["week"], y=scored["score"], name="shift score",
                   mode="lines+markers", line={"color": PRIMARY}),
        go.Scatter(x=scored["week"], y=scored["threshold"], name="threshold",
                   mode="lines+markers", line={"color": ACCENT, "dash": "dot"}),
        go.Scatter(x=few["week"], y=[0.0] * len(few), name="too few films", mode="markers",
                   marker={"color": MUTED, "symbol": "x", "size": 10},
                   text=[f"too few films ({count})" for count in few["films"]],
                   hovertemplate="%{text}<extra></extra>"),
    ])
    figure.update_yaxes(title_text="score (AUC against the training films)", range=[0, 1.05])
    return _layout(_day_axis(figure, series["week"], switches, period_days=7), height=340)
