"""Studies and images as the worklist sees them, chosen from QIDO-RS answers (plain data in, out).

Each carries its UIDs for talking to the archive and opaque keys for everything people see;
``repr`` leaves the UIDs out so they cannot slip into a message or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacs.errors import NoFrontalImage
from pacs.keys import opaque_key

RADIOGRAPH_MODALITIES = ("CR", "DX")
FRONTAL_VIEWS = ("PA", "AP")
# QIDO-RS attribute tags (PS3.18 JSON uses tags, not keywords)
TAGS = {
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
    "StudyDate": "00080020", "StudyDescription": "00081030", "Modality": "00080060",
    "ViewPosition": "00185101", "BodyPartExamined": "00180015", "SeriesNumber": "00200011",
    "InstanceNumber": "00200013",
}


@dataclass(frozen=True)
class StudyQuery:
    """Which studies to list: a StudyDate range (YYYYMMDD, either end open) and a body part."""

    since: str | None = None
    until: str | None = None
    body_part: str | None = None
    limit: int = 1000

    def date_range(self) -> str | None:
        if self.since is None and self.until is None:
            return None
        return f"{self.since or ''}-{self.until or ''}"


@dataclass(frozen=True)
class StudyRef:
    """A study in the archive: shown by its key, date and description only."""

    uid: str = field(repr=False)
    key: str
    date: str  # YYYYMMDD, or "" when the archive has none
    description: str


@dataclass(frozen=True)
class ImageRef:
    """One image of a study, with the keys shown in its place."""

    study: StudyRef
    series_uid: str = field(repr=False)
    sop_uid: str = field(repr=False)
    series_key: str
    key: str
    view: str  # ViewPosition, or "" when the header says nothing


def value(attributes: dict, keyword: str) -> str:
    """The first value of a QIDO-RS JSON attribute as text ("" when absent)."""
    values = attributes.get(TAGS[keyword], {}).get("Value") or [""]
    return str(values[0]).strip()


def study_ref(attributes: dict, secret: bytes) -> StudyRef:
    uid = value(attributes, "StudyInstanceUID")
    return StudyRef(uid=uid, key=opaque_key("study", uid, secret),
                    date=value(attributes, "StudyDate"),
                    description=value(attributes, "StudyDescription"))


def frontal_images(study: StudyRef, instances: list[dict], secret: bytes,
                   body_part: str | None = None) -> list[ImageRef]:
    """The study's frontal radiographs (PA/AP); when no image names its view, the first one.

    Raises NoFrontalImage naming what the study holds instead (lateral only, say).
    """
    radiographs = sorted(
        (item for item in instances
         if value(item, "Modality") in RADIOGRAPH_MODALITIES
         and _body_part_matches(value(item, "BodyPartExamined"), body_part)),
        key=lambda item: (_number(value(item, "SeriesNumber")),
                          _number(value(item, "InstanceNumber"))),
    )
    frontal = [item for item in radiographs if value(item, "ViewPosition") in FRONTAL_VIEWS]
    if not frontal:
        frontal = [item for item in radiographs if not value(item, "ViewPosition")][:1]
    if frontal:
        return [_image_ref(study, item, secret) for item in frontal]
    if not radiographs:
        part = f" of the {body_part.lower()}" if body_part else ""
        raise NoFrontalImage(f"Study {study.key} has no radiograph (CR or DX){part} to analyse.")
    views = sorted({value(item, "ViewPosition") for item in radiographs})
    lateral = all(view in ("LL", "RL", "LAT", "LATERAL") for view in views)
    kind = "it is lateral only" if lateral else "its views are"
    raise NoFrontalImage(f"Study {study.key} has no frontal (PA or AP) image: {kind} "
                         f"({', '.join(views)}). The model reads frontal chest X-rays only.")


def _image_ref(study: StudyRef, attributes: dict, secret: bytes) -> ImageRef:
    series_uid = value(attributes, "SeriesInstanceUID")
    sop_uid = value(attributes, "SOPInstanceUID")
    return ImageRef(study=study, series_uid=series_uid, sop_uid=sop_uid,
                    series_key=opaque_key("series", series_uid, secret),
                    key=opaque_key("image", sop_uid, secret),
                    view=value(attributes, "ViewPosition"))


def _body_part_matches(found: str, wanted: str | None) -> bool:
    return wanted is None or not found or found.upper() == wanted.upper()


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 1 << 30  # unnumbered images sort last
