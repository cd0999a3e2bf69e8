"""Figures are written the same way in the app, the model card and the CLI logs."""

from model.formatting import label_scores, score, share


def test_an_undefined_figure_is_not_available():
    assert (score(None), share(None)) == ("n/a", "n/a")


def test_scores_have_fixed_decimals_and_shares_are_percentages():
    assert (score(0.91234), score(0.91234, 2), score(1.0)) == ("0.912", "0.91", "1.000")
    assert share(0.8764) == "87.6%"


def test_label_scores_use_the_display_names():
    assert label_scores({"NORMAL": 0.9, "PNEUMONIA": 0.7, "COVID19": None}) == (
        "Normal 0.90, Pneumonia 0.70, COVID-19 n/a")
