"""Every training setting in one place, with defaults a newcomer can run.

The CLI (`python -m training.train`) exposes each field as `--field-name`; runs record the
resolved config in their metadata so a result can always be traced to its settings.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from model.labels import BACTERIAL, VIRAL

# The data folder beside this checkout (../shared/data): the default data roots, and the real
# X-rays the benchmarks and tests use.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CXR4_DATA = SHARED_DATA / "cxr4"


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
    # Shortcut defences: what differs between sources (scanner contrast curve, resolution and
    # sharpness, noise, borders, burned-in text and markers) is randomised, so it cannot
    # stand in for the label.
    gamma: float = 0.35  # gamma drawn from [1 - g, 1 + g]
    min_resolution: float = 0.35  # down- then up-sampled by a factor in [this, 1]
    noise: float = 6.0  # Gaussian noise, sigma in grey levels, drawn from [0, noise]
    border: float = 0.12  # each side masked with probability 1/4 up to this fraction of it
    text_probability: float = 0.5  # chance of burning random letters or markers in


@dataclass(frozen=True)
class TrainConfig:
    """A two-stage transfer-learning run: frozen backbone + new head, then fine-tuning."""

    # One or more data roots (repeat --data); their manifests are merged, splits kept.
    data: tuple[Path, ...] = (CXR4_DATA, SHARED_DATA / "adult")
    out: Path = Path("runs/latest")
    backbone: str = "efficientnet_lite0"
    # "imagenet", "none", a path to a local weights file, or a trained run's backbone: its run
    # directory or the FILE.weights.h5 training.export_backbone wrote (training.base_model)
    weights: str = "imagenet"
    image_size: int | None = None  # None: the backbone's native size
    batch_size: int = 32
    # A linear probe trained further before fine-tuning distorts the features less (LP-FT,
    # Kumar et al. ICLR 2022): 6 epochs took val loss 0.98 -> 0.92 (3 epochs: 0.98), and the
    # run that followed read the children's later batch far better (normal recall 0.51 ->
    # 0.69 in the model card's sweep). About 70 s an epoch on a quiet 2-core CPU.
    epochs_frozen: int = 6
    # About 2.7 min an epoch on a quiet 2-core CPU; val loss still fell at the 5th (the card's
    # history), but the unseen adult normals swung epoch to epoch (--finetune-soup below).
    epochs_finetune: int = 5
    lr_frozen: float = 1e-3
    # 10x smaller than the head's (the Keras guide: 10-100x). On cxr4, 3e-5 with plateau patience 1
    # decayed to 1e-7 within 10 epochs and ended at a higher val loss (see the model card).
    lr_finetune: float = 1e-4
    finetune_blocks: int = 0  # 0: unfreeze the whole backbone; N: only its top N blocks
    # Weight-space ensembling (WiSE-FT, Wortsman et al. CVPR 2022): every weight becomes
    # (1 - alpha) x its value at the end of stage 1 + alpha x its value at the end of stage 2.
    # 1 keeps the fine-tuned weights; less keeps more of what the frozen ImageNet features
    # transfer to hospitals not in training. Chosen on the external checks, never on val
    # (bench.robust_finetune prints the sweep, the model card records it). After the longer
    # probe and the soup below, mixing with stage 1 no longer helped both checks together.
    wise_alpha: float = 1.0
    # 0: stage 2 ends at its best epoch; N: at the uniform average of its last N epochs'
    # weights (a checkpoint soup), mixed with stage 1 as above. The unseen adult normals called
    # normal swung 0.15 / 0.95 / 0.58 / 0.68 / 0.49 over the 5 epochs; the mean of the last 4
    # (the first is a burn-in) read 0.73 with val COVID-19 recall 0.95.
    finetune_soup: int = 4
    # Run directories, comma-separated, of the same network trained otherwise (say, another
    # stage-1 length): this run's final weights are averaged uniformly with their model files
    # (a model soup across runs, Wortsman et al. ICML 2022), after the steps above.
    soup_with: str = ""
    dropout: float = 0.4
    label_smoothing: float = 0.05
    class_weighting: bool = True  # sample each class equally often (label sets shared out)
    # Folders that hold a set of classes, not one: NAME=CLASS+CLASS[;NAME=...]. Trained with the
    # likelihood of the set (log of its summed probabilities), scored as "any of these".
    label_sets: str = f"PNEUMONIA={BACTERIAL}+{VIRAL}"
    # Sources whose patients are children (the manifest's patient-id namespace); others adult.
    pediatric_sources: str = "kermany"
    # One block of class logits per age group (model.populations): within a block age is
    # constant, so it cannot stand in for a class. Frozen-feature probes (model card): fewer
    # unseen adult normals called COVID-19 than one shared head.
    age_heads: bool = True
    # Within each class, sources are sampled as count ** (1 - source_balance): 0 leaves them as
    # they come, 1 makes every source of a class equally frequent.
    source_balance: float = 0.5
    # Images drawn per epoch (None: as many as there are training images): about 60 % of the
    # 8,254 training images of cxr4 + adult, so an epoch is a bounded cost on a CPU.
    samples_per_epoch: int | None = 5000
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.3
    val_fraction: float = 0.15  # used only when the data folder has no val/ split
    limit_per_class: int | None = None
    seed: int = 1337
    distribute: str = "none"  # "none", "mirrored" (one machine) or "multiworker" (TF_CONFIG)
    # Finish an interrupted run in --out: no fitting; its best checkpoint and history are
    # calibrated, scored and written as the run's files, as if training had ended there.
    finish_from_checkpoint: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def soup_runs(self) -> list[Path]:
        """The --soup-with run directories."""
        return [Path(part.strip()) for part in self.soup_with.split(",") if part.strip()]

    def label_set_map(self) -> dict[str, tuple[str, ...]]:
        """The --label-sets string as {folder name: the classes it stands for}."""
        return parse_label_sets(self.label_sets)

    def to_dict(self) -> dict:
        """JSON-ready settings, paths as strings."""
        return json_ready(dataclasses.asdict(self))


def parse_label_sets(text: str) -> dict[str, tuple[str, ...]]:
    """'PNEUMONIA=A+B;X=C+D' -> {'PNEUMONIA': ('A', 'B'), 'X': ('C', 'D')}."""
    sets: dict[str, tuple[str, ...]] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, _, members = entry.partition("=")
        classes = tuple(filter(None, (member.strip() for member in members.split("+"))))
        if not name.strip() or len(classes) < 2:
            raise ValueError(f"label set {entry!r} must read NAME=CLASS+CLASS[+...]")
        sets[name.strip()] = classes
    return sets


def json_ready(value):
    """Paths to strings, recursively, so a config can be written as JSON."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [json_ready(item) for item in value]
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
        if isinstance(default, tuple):
            parser.add_argument(flag, dest=dest, type=type(default[0]), action="append",
                                default=argparse.SUPPRESS, help="repeat for several (default: "
                                + " ".join(str(item) for item in default) + ")")
        elif isinstance(default, bool):
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS
            )
        elif spec.type == "int | None":
            parser.add_argument(flag, dest=dest, type=_parse_optional_int,
                                default=argparse.SUPPRESS)
        else:
            kind = Path if isinstance(default, Path) else type(default)
            parser.add_argument(flag, dest=dest, type=kind, default=argparse.SUPPRESS)


def build_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with one flag per config field; unset flags keep the defaults."""
    parser = argparse.ArgumentParser(description=description)
    _add_fields(parser, TrainConfig)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults overridden by the flags that were given (`none` included: an unset flag is
    absent from ``args``, so `--samples-per-epoch none` really means None)."""
    given = vars(args)
    augment = {key.split("__", 1)[1]: value for key, value in given.items() if "__" in key}
    top = {key: tuple(value) if isinstance(value, list) else value
           for key, value in given.items() if "__" not in key}
    return TrainConfig(**top, augment=AugmentConfig(**augment))
