"""Model performance, for admins: how training went and where the model errs.

Every number and chart comes from the run directory's files (its metrics, history,
calibration and metadata); nothing is recomputed here.
"""

import streamlit as st

from model.formatting import score, share
from model.run_dir import (
    CALIBRATION_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    METRICS_FILE,
    Metadata,
    RunFileError,
)
from model.run_metrics import Metrics
from webapp.charts import (
    confusion_matrix_figure,
    coverage_rows,
    dataset_rows,
    external_rows,
    per_class_rows,
    reliability_figure,
    roc_figure,
    subgroup_rows,
    training_curves,
)
from webapp.reports import RunReports, read_reports
from webapp.resources import run_dir
from webapp.session import require_admin

CHART_CONFIG = {"displaylogo": False}


def show_headline(metrics: Metrics) -> None:
    binary = metrics.pneumonia_vs_normal
    columns = st.columns(6)
    columns[0].metric("Accuracy", share(metrics.accuracy),
                      help="Share of validation images given the right one of the four classes.")
    columns[1].metric("Macro F1", score(metrics.macro_f1))
    columns[2].metric("Pneumonia AUC", score(binary.auc),
                      help="Any pneumonia (COVID-19 included) against normal, by 1 - p(normal).")
    columns[3].metric("Sensitivity", share(binary.sensitivity),
                      help="Pneumonia (any kind) called pneumonia, at p(normal) < 0.5.")
    columns[4].metric("Specificity", share(binary.specificity),
                      help="Normal X-rays called normal, at p(normal) ≥ 0.5.")
    columns[5].metric("ECE", score(metrics.calibration.ece),
                      help="Expected calibration error of the calibrated probabilities: the "
                      "average gap between confidence and accuracy.")


def show_errors(metrics: Metrics) -> None:
    st.subheader("Where the model errs")
    matrix, table = st.columns([4, 3], gap="large")
    with matrix:
        scale = st.radio(
            "Confusion matrix", ["Counts", "Row-normalised"], horizontal=True,
            key="confusion_scale", help="Row-normalised: the share of each true class.",
        )
        st.plotly_chart(
            confusion_matrix_figure(metrics.classes, metrics.confusion_matrix,
                                    normalised=scale == "Row-normalised"),
            config=CHART_CONFIG, key="confusion_matrix",
        )
    with table:
        st.markdown("**Per class**")
        st.dataframe(
            per_class_rows(metrics),
            hide_index=True,
            column_config={
                name: st.column_config.NumberColumn(format="%.3f")
                for name in ("Precision", "Recall", "F1")
            },
        )


def show_curves(reports: RunReports) -> None:
    roc, reliability = st.columns(2, gap="large")
    with roc:
        st.subheader("ROC curves (one vs rest)")
        st.plotly_chart(roc_figure(reports.metrics), config=CHART_CONFIG, key="roc")
    with reliability:
        st.subheader("Calibration")
        if reports.calibration is None:
            st.info(f"{CALIBRATION_FILE} is absent: the probabilities are not temperature-scaled.")
        else:
            st.plotly_chart(reliability_figure(reports.calibration), config=CHART_CONFIG,
                            key="reliability")


def show_training(history: list[dict] | None) -> None:
    st.subheader("Training")
    if not history:
        st.info(f"{HISTORY_FILE} is absent: no training curves for this model.")
        return
    st.plotly_chart(training_curves(history), config=CHART_CONFIG, key="training_curves")


def show_subgroups(metrics: Metrics, metadata: Metadata) -> None:
    st.subheader("By source and age group")
    st.caption("A model can learn the hospital or the age instead of the lungs: the same "
               "figures for each source and age group of the validation split. Sources it was "
               "never validated on are not here.")
    rows = subgroup_rows(metrics)
    if rows:
        st.dataframe(rows, hide_index=True, column_config={
            name: st.column_config.NumberColumn(format="%.3f")
            for name in ("Accuracy", "Pneumonia-vs-normal AUC", "Called COVID-19 among non-COVID")
        })
    else:
        st.info(f"This model's {METRICS_FILE} has no subgroups (it predates them).")
    coverage = coverage_rows(metadata)
    if coverage:
        st.markdown("**Where the model was trained and validated**")
        st.dataframe(coverage, hide_index=True)


def show_external(metrics: Metrics) -> None:
    st.subheader("Hospitals and batches it was never trained on")
    st.caption("External checks: every image through the out-of-distribution gate, as a "
               "hospital would meet it; the figures are those of the images it accepted. "
               "Compare with the validation figures above.")
    rows = external_rows(metrics)
    if not rows:
        st.info(f"This model's {METRICS_FILE} has no external checks: "
                "`python -m training.evaluate --model RUN_DIR --external DIR` adds them.")
        return
    st.dataframe(rows, hide_index=True, key="external_checks", column_config={
        "Refused": st.column_config.NumberColumn(format="percent"),
        **{name: st.column_config.NumberColumn(format="%.3f") for name in (
            "Normal recall", "Called COVID-19 among non-COVID", "Pneumonia-vs-normal AUC",
            "Pneumonia-vs-normal accuracy", "Macro F1", "ECE")},
    })


def show_dataset(metadata: Metadata) -> None:
    st.subheader("Data")
    st.caption(f"Images per class and split, as {METADATA_FILE} recorded them at training time.")
    st.dataframe(dataset_rows(metadata), hide_index=True)


require_admin()
st.title("Model performance")
try:
    reports = read_reports(run_dir())
except RunFileError as error:
    st.error(str(error))
    st.stop()

if reports.metadata is None or reports.metrics is None:
    st.warning(
        f"No evaluated model in {reports.run_dir}: {METADATA_FILE} and {METRICS_FILE} are "
        "written by `python -m training.train`."
    )
    st.stop()

metadata, metrics = reports.metadata, reports.metrics
st.caption(
    f"Model version {metadata.version} ({metadata.backbone}), "
    f"scored on the validation split: {metrics.n_samples} images. "
    f"Read from the model's {METRICS_FILE}, {HISTORY_FILE}, {CALIBRATION_FILE} and "
    f"{METADATA_FILE}."
)
show_headline(metrics)
show_errors(metrics)
show_curves(reports)
show_subgroups(metrics, metadata)
show_external(metrics)
show_training(reports.history)
show_dataset(metadata)
