"""Monitoring, for admins: how the model behaves in use, read from the audit trail."""

import streamlit as st

from model.labels import display_name
from model.run_dir import METRICS_FILE, RunFileError
from model.shift import MIN_FILMS, ShiftError
from records.audit import now_utc
from records.model_activations import switches as model_switches
from records.monitoring import (
    agreement_matrix,
    agreement_rows,
    class_mix_by_day,
    class_mix_drift,
    daily_summary,
    readings,
    refusal_rate,
    uploads,
    validation_mix,
)
from records.settings import load_settings
from webapp.charts import (
    class_mix_figure,
    confusion_matrix_figure,
    daily_volume_figure,
    latency_figure,
    shift_by_week_figure,
)
from webapp.kept_models import kept_models
from webapp.reports import read_reports
from webapp.resources import app_database, configured_run_dir, load_shift_check, run_dir
from webapp.session import require_admin
from webapp.site_shift import WEEKS, comparable_versions, recent_weeks

CHART_CONFIG = {"displaylogo": False}

require_admin()
database, settings = app_database(), load_settings()
st.title("Monitoring")
try:
    metrics = read_reports(run_dir()).metrics
except RunFileError as error:
    st.error(str(error))
    st.stop()
if metrics is None:
    st.warning(f"The served model has no {METRICS_FILE}: there is no validation mix to "
               "compare with.")
    st.stop()

frame = uploads(database)
if frame.empty:
    st.info("No image has been analysed yet: the charts appear after the first upload.")
    st.stop()

classes = list(metrics.classes)
expected = validation_mix(metrics.classes, metrics.confusion_matrix)
drift = class_mix_drift(frame, expected, now_utc(), settings)
test = (f"Test: total-variation distance between the predicted-class mix of the last "
        f"{settings.drift_window_days} days ({drift.analyses} analyses) and the mix the model "
        f"predicted on its validation split; warning above {drift.threshold:.2f} with at least "
        f"{drift.min_analyses} analyses. Now: {drift.distance:.3f}.")
if drift.drifted:
    st.warning("**The class mix has drifted** from validation: the patients, the scanners or "
               "the model's behaviour may have changed. Review recent cases. " + test,
               icon=":material/warning:")
else:
    st.caption(test)

summary = daily_summary(frame)
switches = [(switch.at, switch.served.version) for switch in model_switches(database)]
total_analyses, total_refusals = int(summary["analyses"].sum()), int(summary["refusals"].sum())
columns = st.columns(4)
columns[0].metric("Analyses", total_analyses)
columns[1].metric("Refusal rate", f"{refusal_rate(frame):.1%}",
                  help=f"{total_refusals} images refused. A worklist batch counts as one upload "
                  "here, however many images it held, so one large batch cannot skew the rate.")
columns[2].metric("Median analysis time", f"{frame['latency_ms'].median():.0f} ms")
columns[3].metric("Drift distance", f"{drift.distance:.3f}")

volume, latency = st.columns(2, gap="large")
with volume:
    st.subheader("Uploads per day")
    st.plotly_chart(daily_volume_figure(summary, switches), config=CHART_CONFIG, key="daily_volume")
with latency:
    st.subheader("Analysis time")
    st.plotly_chart(latency_figure(summary, switches), config=CHART_CONFIG, key="latency")

if switches:
    st.caption("Dashed lines: the served model was switched (Sites page) to the version named.")
st.subheader("Predicted-class mix against validation (dotted)")
st.plotly_chart(class_mix_figure(class_mix_by_day(frame, classes), expected, switches),
                config=CHART_CONFIG, key="class_mix")

st.subheader("Films against the training films, by week")
try:
    check = load_shift_check(run_dir())
    versions = comparable_versions(check, kept_models(configured_run_dir(), settings.sites_dir))
    with st.spinner("Scoring each week's films…"):
        by_week = recent_weeks(database, check, versions, now_utc())
except (ShiftError, RunFileError) as error:
    st.info(f"No weekly shift check: {error}")
else:
    if by_week.empty:
        st.info(f"No film analysed in the last {WEEKS} weeks has its features kept (a model "
                "server's answers carry none): the weekly check appears once films are "
                "analysed here.")
    else:
        st.plotly_chart(shift_by_week_figure(by_week, switches), config=CHART_CONFIG,
                        key="shift_by_week")
        few = by_week[by_week["score"].isna()]
        st.caption(f"Each week's analysed films (models {', '.join(versions)}) against the "
                   "served model's training films: above the dotted threshold, that week's "
                   "films differ from them; validate on local labelled films. Weeks with fewer "
                   f"than {MIN_FILMS} films are not scored (crosses)"
                   + (f": {len(few)} of the {len(by_week)} shown." if len(few) else "."))

st.subheader("Agreement with radiologists")
read = readings(database)
if read.empty:
    st.info("No radiologist feedback yet.")
    st.stop()
matrix, table = st.columns([4, 3], gap="large")
with matrix:
    st.plotly_chart(
        confusion_matrix_figure(classes, agreement_matrix(read, classes),
                                axes=("radiologist's class", "model's class")),
        config=CHART_CONFIG, key="agreement_matrix")
with table:
    st.dataframe(agreement_rows(read, classes), hide_index=True, key="agreement_table",
                 column_config={"Agreement": st.column_config.NumberColumn(format="percent")})
    st.caption(f"{len(read)} readings; agreement is the share of readings that agreed with "
               f"the model's class ({', '.join(display_name(name) for name in classes)}).")
