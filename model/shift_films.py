"""A site's films as the shift check (model.shift) reads them: files, folders or zips, each
through the product's one accept/refuse path (decode, ``admit``, the feature check), down to the
accepted films' pooled features. Shared by ``python -m training.site_check`` and the Sites page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.bounded_zip import DEFAULT_ZIP_LIMITS, ZipLimits, iter_members
from model.decode import DecodedImage, collect_files, decode_file, decode_image
from model.errors import ImageError

if TYPE_CHECKING:
    from model.predictor import Predictor

BATCH = 32
DECODE_THREADS = 4

Loader = Callable[[], DecodedImage] | str  # a film decoded on call, or why it cannot be read


def zip_loaders(name: str, data: bytes, limits: ZipLimits = DEFAULT_ZIP_LIMITS
                ) -> Iterator[Loader]:
    """Each image member of a .zip's bytes, within ``limits``."""
    for member in iter_members(name, data, limits):
        if isinstance(member, str):
            yield member
        else:
            label, content = member
            yield lambda content=content, label=label: decode_image(content, label)


def path_loaders(paths: list[Path]) -> Iterator[Loader]:
    """Each film under ``paths``: image files, folders (recursively) and .zip archives."""
    for path in paths:
        if path.suffix.lower() == ".zip" and path.is_file():
            yield from zip_loaders(path.name, path.read_bytes())
        elif path.exists():
            for file in collect_files([path]):
                yield lambda file=file: decode_file(file)
        else:
            yield f"{path} does not exist"


def accepted_features(predictor: Predictor, loaders: Iterable[Loader],
                      on_skip: Callable[[str], None] = lambda _: None
                      ) -> tuple[np.ndarray, int]:
    """(N, D) pooled features of the accepted films, and how many films were not used;
    ``on_skip`` hears why each one read or admitted was not (never a refusal of the feature
    check: those are counted only)."""

    def admitted(loader: Loader) -> np.ndarray | str:
        if isinstance(loader, str):
            return loader
        try:
            return predictor.admit(loader())
        except ImageError as error:
            return str(error)

    inputs, skipped = [], 0
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for outcome in pool.map(admitted, loaders):
            if isinstance(outcome, str):
                on_skip(outcome)
                skipped += 1
            else:
                inputs.append(outcome)
    kept = [prediction.features for start in range(0, len(inputs), BATCH)
            for prediction in predictor.classify(inputs[start:start + BATCH])
            if prediction.refusal is None]
    features = np.stack(kept) if kept else np.zeros((0, 0), np.float32)
    return features, skipped + len(inputs) - len(features)
