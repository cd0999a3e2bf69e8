"""Every training setting in one place, with defaults a newcomer can run.

The CLI (`python -m training.train`) exposes each field as `--field-name`; runs record the
resolved config in their metadata so a result can always be traced to its settings.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation that suits frontal chest X-rays: small geometric and photometric changes.

    No horizontal flip by default: the heart is on the left, and a flipped film is a
    different (rare) clinical picture, not a free extra sample.
    """

    rotation_degrees: float = 10.0
    zoom: float = 0.15
    shift: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.25
    horizontal_flip: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """A two-stage transfer-learning run: frozen backbone + new head, then fine-tuning."""

    data: Path = Path("../shared/data/cxr4")
    out: Path = Path("runs/latest")
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"  # "imagenet", "none", or a path to a local weights file
    image_size: int | None = None  # None: the backbone's native size
    batch_size: int = 32
    epochs_frozen: int = 3
    epochs_finetune: int = 10
    lr_frozen: float = 1e-3
    # 10x smaller than the head's (the Keras guide: 10-100x). On cxr4, 3e-5 with plateau patience 1
    # decayed to 1e-7 within 10 epochs and ended at a higher val loss (see the model card).
    lr_finetune: float = 1e-4
    finetune_blocks: int = 0  # 0: unfreeze the whole backbone; N: only its top N blocks
    dropout: float = 0.4
    label_smoothing: float = 0.05
    class_weighting: bool = True
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.3
    val_fraction: float = 0.15  # used only when the data folder has no val/ split
    limit_per_class: int | None = None
    seed: int = 1337
    distribute: str = "none"  # "none", "mirrored" (one machine) or "multiworker" (TF_CONFIG)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        """JSON-ready settings, paths as strings."""
        return json_ready(dataclasses.asdict(self))


def json_ready(value):
    """Paths to strings, recursively, so a config can be written as JSON."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def _add_fields(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    for spec in dataclasses.fields(cls):
        has_default = spec.default is not dataclasses.MISSING
        default = spec.default if has_default else spec.default_factory()
        if dataclasses.is_dataclass(default):
            _add_fields(parser, type(default), prefix=f"{spec.name}-")
            continue
        flag = "--" + prefix + spec.name.replace("_", "-")
        dest = prefix.replace("-", "__") + spec.name
        if isinstance(default, bool):
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None
            )
        elif spec.type == "int | None":
            parser.add_argument(flag, dest=dest, type=_parse_optional_int, default=None)
        else:
            kind = Path if isinstance(default, Path) else type(default)
            parser.add_argument(flag, dest=dest, type=kind, default=None)


def build_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with one flag per config field; unset flags keep the defaults."""
    parser = argparse.ArgumentParser(description=description)
    _add_fields(parser, TrainConfig)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults overridden by the flags that were given."""
    given = {key: value for key, value in vars(args).items() if value is not None}
    augment = {key.split("__", 1)[1]: value for key, value in given.items() if "__" in key}
    top = {key: value for key, value in given.items() if "__" not in key}
    return TrainConfig(**top, augment=AugmentConfig(**augment))
