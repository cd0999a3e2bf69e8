"""Held-out estimates from one labelled set: fit on a random half, score on the other."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def random_halves(
    size: int, repeats: int, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fitted, held_out) index arrays: ``repeats`` random halvings, each half used both ways."""
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        order = rng.permutation(size)
        halves = order[: size // 2], order[size // 2:]
        yield halves
        yield halves[::-1]
