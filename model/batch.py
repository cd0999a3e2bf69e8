"""Many images through the one accept/refuse path: decode in threads, the model in batches.

The CLI (files or the PACS), the worklist and the benchmarks all call ``classify``; each
item's loader gives a ``DecodedImage`` (from a file, an upload or the archive), then the
classifier's ``admit`` and ``classify`` decide (model.classifier), exactly as for one upload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from model.decode import DecodedImage
from model.errors import ImageError
from model.prediction import Prediction

if TYPE_CHECKING:
    from model.classifier import Admitted, Classifier

DECODE_THREADS = 4
Item = TypeVar("Item")


@dataclass(frozen=True)
class Classified(Generic[Item]):
    """One item's outcome: its prediction, or the message saying why there is none."""

    item: Item
    image: DecodedImage | None  # None when it could not be loaded or decoded
    prediction: Prediction


def classify(items: Sequence[Item], load: Callable[[Item], DecodedImage], predictor: Classifier,
             batch_size: int = 32, expected_errors: tuple[type[Exception], ...] = (ImageError,),
             age_group: str | None = None) -> Iterator[Classified[Item]]:
    """Yield each item's outcome, in order; loading runs one batch ahead of the model.

    A loader's ``expected_errors`` (a bad file, a study the archive cannot serve) become that
    item's message; anything else is a bug and propagates. ``age_group`` ("adult", "child")
    applies to every item; None or "auto": each DICOM header's, else the model's estimate.
    """

    def admit(item: Item) -> tuple[DecodedImage | None, Admitted | str]:
        image = None
        try:
            image = load(item)
            return image, predictor.admit(image)
        except expected_errors as error:
            return image, str(error)

    chunks = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        pending: list[Future] = [pool.submit(admit, item) for item in chunks[0]] if chunks else []
        for index, chunk in enumerate(chunks):
            loaded = [future.result() for future in pending]
            following = chunks[index + 1] if index + 1 < len(chunks) else []
            pending = [pool.submit(admit, item) for item in following]
            yield from _decide(chunk, loaded, predictor, age_group)


def _decide(chunk: Sequence[Item], loaded: list[tuple[DecodedImage | None, Admitted | str]],
            predictor: Classifier, age_group: str | None) -> Iterator[Classified[Item]]:
    admitted = [ImageError(outcome) if isinstance(outcome, str) else outcome
                for _, outcome in loaded]
    known = [None if image is None else predictor.known_age(image, age_group)
             for image, _ in loaded]
    predictions = predictor.classify(admitted, known)
    for item, (image, _), prediction in zip(chunk, loaded, predictions, strict=True):
        yield Classified(item, image, prediction)
