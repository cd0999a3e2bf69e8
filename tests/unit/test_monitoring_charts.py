"""Monitoring's time axes read as days whatever the span, and each model switch is marked."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from webapp.charts import DAY_MS, class_mix_figure, daily_volume_figure, latency_figure


def summary(days: int) -> pd.DataFrame:
    """daily_summary's shape (records.monitoring) over ``days`` UTC days."""
    return pd.DataFrame({"day": pd.date_range("2026-12-01", periods=days, freq="D"),
                         "analyses": 5, "refusals": 1, "median_latency_ms": 80.0,
                         "refusal_rate": 0.1})


def mix(days: int) -> pd.DataFrame:
    return pd.DataFrame({"NORMAL": 0.5, "COVID19": 0.5},
                        index=pd.date_range("2026-12-01", periods=days, freq="D"))


def figures(days: int, switches=()) -> list:
    return [daily_volume_figure(summary(days), switches), latency_figure(summary(days), switches),
            class_mix_figure(mix(days), {"NORMAL": 0.5, "COVID19": 0.5}, switches)]


@pytest.mark.parametrize("days", [1, 2])
def test_one_or_two_days_tick_once_a_day_as_dates_not_fractions_of_a_second(days):
    for figure in figures(days):
        axis = figure.layout.xaxis
        assert axis.type == "date" and axis.tickformat == "%d %b %Y"
        assert axis.dtick == DAY_MS  # Plotly's own step for one point: a fraction of a second
        assert axis.ticklabelmode == "period"  # the label sits across its day
        start, end = (pd.Timestamp(value) for value in axis.range)
        assert (start, end) == (pd.Timestamp("2026-12-01"),
                                pd.Timestamp("2026-12-02") + pd.Timedelta(days=days - 1))
        assert all(trace.xperiod == DAY_MS for trace in figure.data)  # drawn across the day


def test_a_long_span_ticks_every_few_days():
    for figure in figures(60):
        assert figure.layout.xaxis.dtick == 6 * DAY_MS  # at most 10 ticks over 60 days


def test_each_model_switch_is_marked_with_its_version_and_widens_the_axis_to_it():
    switched = [(datetime(2026, 12, 1, 9, 30), "base+site-st-mary"),
                (datetime(2026, 12, 3, 16, 0), "base")]
    for figure in figures(1, switched):
        assert [shape.x0 for shape in figure.layout.shapes if shape.type == "line"
                and shape.yref == "paper"] == [at for at, _ in switched]
        assert [note.text for note in figure.layout.annotations] == [
            "model base+site-st-mary", "model base"]
        assert pd.Timestamp(figure.layout.xaxis.range[1]) == pd.Timestamp("2026-12-04")
