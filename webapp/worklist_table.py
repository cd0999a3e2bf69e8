"""The worklist as the page shows it: rows sorted most suspicious first, the table, its CSV.

Opaque keys, the study's date and description, never a patient identifier or a UID in text.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from model.labels import NORMAL, display_name
from model.lung_fields import LOW_HEAT_IN_LUNGS
from records.safe_csv import csv_text
from webapp.worklist import WorklistRow

NOT_NORMAL = "not normal"  # the default sort: 1 - P(NORMAL)
HEAT_IN_LUNGS = "heat in lungs (least first)"  # the maps to read with most care first


def sort_score(row: WorklistRow, class_name: str = NOT_NORMAL) -> float:
    """How suspicious a row is: P(not normal), or P(class_name), or how little of its map is in
    the lungs (1 - share; 1 where no lung field was found); refused rows score -1."""
    probabilities = row.prediction.probabilities
    if probabilities is None:
        return -1.0
    if class_name == HEAT_IN_LUNGS:
        return 1.0 if row.heat_in_lungs is None else 1.0 - row.heat_in_lungs
    if class_name == NOT_NORMAL:
        return 1.0 - probabilities.get(NORMAL, 0.0)
    return probabilities[class_name]


def sorted_rows(rows: list[WorklistRow], class_name: str = NOT_NORMAL) -> list[WorklistRow]:
    """Most suspicious first; refused rows last, in their original order."""
    return sorted(rows, key=lambda row: -sort_score(row, class_name))


def looked_outside_lungs(rows: list[WorklistRow]) -> list[WorklistRow]:
    """Analysed rows whose map put less than half its heat in the lungs, or found no lungs."""
    return [row for row in rows if row.prediction.probabilities is not None
            and (row.heat_in_lungs is None or row.heat_in_lungs < LOW_HEAT_IN_LUNGS)]


def viewer_link(row: WorklistRow, viewer_url: str | None) -> str | None:
    """The study in the PACS viewer (where identity lives), when a viewer URL is configured."""
    if not viewer_url or row.pacs_item is None:
        return None
    return viewer_url.replace("{study_uid}", quote(row.pacs_item.study.uid, safe=""))


def table(rows: list[WorklistRow], classes: list[str], class_name: str = NOT_NORMAL,
          viewer_url: str | None = None) -> list[dict[str, object]]:
    """The rows as the page shows them, in the given order: no identifiers, no UIDs in text."""
    records = []
    for row in rows:
        probabilities, label = row.prediction.probabilities, row.prediction.label
        record: dict[str, object] = {
            "thumbnail": row.thumbnail,
            "image": row.key,
            "score": None if probabilities is None else round(sort_score(row, class_name), 4),
            "label": None if label is None else display_name(label),
            "heat in lungs": row.heat_in_lungs,
        }
        for name in classes:
            record[display_name(name)] = None if probabilities is None else round(
                probabilities[name], 4)
        age = row.prediction.age
        record.update({
            "age group": None if age is None else (
                f"{age.group} (estimated)" if age.source == "estimated" else age.group),
            "validated at site": (None if probabilities is None else
                                  row.prediction.validated_at_site or "not validated"),
            "refusal": row.prediction.refusal,
            "study date": _formatted_date(row.study_date),
            "study description": row.study_description or None,
            "study": row.study_key,
            "model version": row.prediction.model_version,
        })
        if viewer_url:
            record["viewer"] = viewer_link(row, viewer_url)
        records.append(record)
    return records


def _formatted_date(date: str) -> str | None:
    try:
        return datetime.strptime(date, "%Y%m%d").date().isoformat()
    except ValueError:
        return date or None


def to_csv(rows: list[WorklistRow], classes: list[str], class_name: str = NOT_NORMAL) -> bytes:
    """The table as CSV (without thumbnails or viewer links), for download."""
    records = table(rows, classes, class_name)
    columns = [column for column in records[0] if column != "thumbnail"] if records else []
    return csv_text(columns, ([record[column] for column in columns] for record in records)
                    ).encode("utf-8")
