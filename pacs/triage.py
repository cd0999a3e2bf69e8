"""A PACS query through the model: every listed study's frontal images, or why it has none.

The CLI and the worklist page both read the archive through ``triage``; each image goes
through ``model.batch.classify``, the same accept/refuse path as an uploaded file.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.batch import Classified, classify
from model.decode import DecodedImage
from model.errors import ImageError
from pacs.client import PacsClient
from pacs.errors import NoFrontalImage, PacsError
from pacs.studies import ImageRef, StudyQuery, StudyRef

if TYPE_CHECKING:
    from model.classifier import Classifier

LISTING_THREADS = 4


@dataclass(frozen=True)
class StudyProblem:
    """A listed study with nothing to analyse, and the message saying why."""

    study: StudyRef
    message: str


WorkItem = ImageRef | StudyProblem


def work_items(client: PacsClient, query: StudyQuery) -> list[WorkItem]:
    """The query's studies, each as its frontal images or as the problem that stops it.

    Raises PacsError when the archive cannot be searched at all (unreachable, login refused).
    """
    studies = client.search_studies(query)

    def images_of(study: StudyRef) -> list[WorkItem]:
        try:
            return list(client.frontal_images(study, query.body_part))
        except PacsError as error:
            return [StudyProblem(study, str(error))]

    with ThreadPoolExecutor(LISTING_THREADS) as pool:
        return [item for items in pool.map(images_of, studies) for item in items]


def keys(item: WorkItem) -> dict[str, str | None]:
    """What is shown of an item: opaque image, study and series keys."""
    if isinstance(item, StudyProblem):
        return {"file": None, "study": item.study.key, "series": None}
    return {"file": item.key, "study": item.study.key, "series": item.series_key}


def triage(client: PacsClient, items: list[WorkItem], predictor: Classifier,
           batch_size: int = 32, age_group: str | None = None,
           ) -> Iterator[Classified[WorkItem]]:
    """Each item's outcome, in order: probabilities, or the refusal or archive error;
    ``age_group`` as for model.batch.classify (None: each header's, else estimated)."""

    def load(item: WorkItem) -> DecodedImage:
        if isinstance(item, StudyProblem):
            raise NoFrontalImage(item.message)
        return client.retrieve(item)

    return classify(items, load, predictor, batch_size, expected_errors=(ImageError, PacsError),
                    age_group=age_group)
