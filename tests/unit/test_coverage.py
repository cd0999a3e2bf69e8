"""Where the model was and was not validated, read from its metadata's populations."""

from dataclasses import replace

from model.coverage import coverage, not_validated, validation_warning
from testkit.model_factory import metadata

METADATA = replace(
    metadata(),
    label_sets={"PNEUMONIA": ["BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA"]},
    populations={
        "train": {
            "kermany": {"age_group": "pediatric",
                        "counts": {"NORMAL": 5, "BACTERIAL_PNEUMONIA": 4, "VIRAL_PNEUMONIA": 3}},
            "nih": {"age_group": "adult", "counts": {"NORMAL": 2, "PNEUMONIA": 6}},
            "bimcv": {"age_group": "adult", "counts": {"COVID19": 7}},
        },
        "val": {
            "kermany": {"age_group": "pediatric", "counts": {"NORMAL": 1, "VIRAL_PNEUMONIA": 1}},
            "nih": {"age_group": "adult", "counts": {"NORMAL": 1, "PNEUMONIA": 2}},
        },
    },
)


def _row(age, name):
    return next(row for row in coverage(METADATA) if (row.age_group, row.class_name) == (age, name))


def test_counts_split_exact_labels_from_label_sets():
    adult_bacterial = _row("adult", "BACTERIAL_PNEUMONIA")
    assert (adult_bacterial.train, adult_bacterial.train_untyped) == (0, 6)
    assert (adult_bacterial.val, adult_bacterial.val_untyped) == (0, 2)
    assert _row("pediatric", "NORMAL").train == 5


def test_each_status_is_named():
    assert _row("adult", "NORMAL").status == "trained and validated"
    assert _row("adult", "VIRAL_PNEUMONIA").status.startswith("validated only within a label set")
    assert _row("adult", "COVID19").status == "trained, not validated"
    assert _row("pediatric", "BACTERIAL_PNEUMONIA").status == "trained, not validated"
    assert _row("pediatric", "COVID19").status == "neither trained nor validated"


def test_not_validated_lists_every_gap_and_nothing_validated():
    gaps = not_validated(METADATA)
    assert "COVID-19 in children (neither trained nor validated)" in gaps
    assert any(gap.startswith("Bacterial pneumonia in adults") for gap in gaps)
    assert not any(gap.startswith("Normal in") for gap in gaps)
    assert len(gaps) == 8 - 3  # 8 rows, validated: adult normal, child normal, child viral


def test_a_model_without_populations_has_no_rows():
    assert metadata().populations is None
    assert coverage(metadata()) == []
    assert not_validated(metadata()) == []


def test_a_suggestion_is_flagged_where_its_class_was_not_validated():
    warning = validation_warning(METADATA, "BACTERIAL_PNEUMONIA")
    assert warning.startswith("Bacterial pneumonia has not been validated")
    assert "adults: validated only within a label set" in warning
    assert "children: trained, not validated" in warning
    assert validation_warning(METADATA, "NORMAL") is None
