"""The run directory: the one contract between training, inference, the app, the model card,
the benchmarks and the tests.

Every file a run directory may hold is named here, and nowhere else. The files with a shape of
their own are read and written here as frozen dataclasses (``Metadata``, ``Calibration``,
``GateSettings``), checked on read; metrics.json (read typed by model.run_metrics) and
history.json stay plain data, their keys a public contract of their own (training.metrics,
training.schedule). A file that is absent is
a ``MissingRunFileError``, one that cannot be used a ``RunFileError``: both name the file and
say what is wrong.

``format_version`` says how to read a file, and a reader refuses a version it does not know.
Optional keys added later (metadata's ``label_sets``, ``populations``, ``data_roots``) left it
at 1: a version-1 reader that ignores them still reads such a file right. A change an older
reader would misread must raise it. Keys this code does not know are ignored on read.
Metadata version 2: the model normalises its input itself (model.normalization), so it takes
the resized grey image; a version-1 model expected normalised RGB and is converted by
``python -m training.convert_normalization --run DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model.input_normalizations import NORMALIZATIONS
from model.preprocess import INTERPOLATION, RESIZE

DEFAULT_RUN_DIR = Path(__file__).resolve().parent / "artifacts"  # the shipped model
MODEL_FILE = "model.keras"  # the network, without optimiser state (training.train)
METADATA_FILE = "metadata.json"  # Metadata (training.train)
HISTORY_FILE = "history.json"  # one record per epoch of both stages (training.train)
CALIBRATION_FILE = "calibration.json"  # Calibration (training.evaluate)
METRICS_FILE = "metrics.json"  # the validation metrics (training.evaluate)
OOD_FILE = "ood.json"  # GateSettings (training.fit_ood)
OOD_ARRAYS_FILE = "ood.npz"  # the gate's class means and whitening matrix (training.fit_ood)
OOD_BENCHMARK_FILE = "ood_benchmark.json"  # bench/ood_gate.py --out
LATENCY_FILE = "latency_benchmark.json"  # bench/latency.py --out
LEAVE_ONE_SOURCE_OUT_FILE = "leave_one_source_out.json"  # bench/leave_one_source_out.py --out
EXPLANATIONS_FILE = "explanations.json"  # bench/explanations.py (where the model looks)
MODEL_CARD_FILE = "MODEL_CARD.md"  # training.model_card
TRAIN_LOG_FILE = "train.log"  # training.train
FEATURE_BANK_FILE = "feature_bank.npz"  # training data's pooled features (training.feature_bank)
FAMILIARITY_FILE = "familiarity.json"  # the familiarity flag measured (bench/familiarity.py)
ROBUST_FINETUNE_FILE = "robust_finetune.json"  # the WiSE-FT sweep (bench/robust_finetune.py)
CHECKPOINTS_DIR = "checkpoints"  # each stage's best weights (training.schedule)

METADATA_FORMAT_VERSION = 2  # 2: normalisation inside the model
MAX_VERSION_CHARS = 100  # a version names its model in every audit row (records.tables)
OOD_FORMAT_VERSION = 1

_Read = TypeVar("_Read")


class RunFileError(RuntimeError):
    """A run-directory file that cannot be used; the message names the file and the problem."""


class MissingRunFileError(RunFileError):
    """A run-directory file that is not there."""


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How an image becomes the model's input: model.preprocess's one path (the model takes
    its (S, S) uint8 grey image), and the backbone's normalisation, which the model's first
    layer applies (model.normalization); recorded for people, never applied again."""

    resize: str = RESIZE
    interpolation: str = INTERPOLATION
    normalization: str


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """metadata.json: what the model expects and how it was made. Fields in the file's order;
    ``None`` marks an optional field a format-1 file may lack (it is then left out)."""

    format_version: int = METADATA_FORMAT_VERSION
    version: str  # the model version people quote
    classes: tuple[str, ...]  # the model's outputs, in order
    label_sets: dict[str, list[str]] | None = None  # folder name -> the classes it may be
    image_size: int
    preprocessing: Preprocessing
    backbone: str
    weights_source: str
    gradcam_layer: str
    logits_layer: str
    # The age groups whose blocks of class logits the model outputs, in order (model.populations);
    # absent: one block, the classes themselves.
    age_heads: list[str] | None = None
    dataset: dict  # split -> label -> images
    data_roots: list[str] | None = None
    populations: dict | None = None  # split -> source -> {"age_group", "counts": label -> n}
    seed: int
    config: dict  # the whole TrainConfig, as training.config.TrainConfig.to_dict() gives it
    software: dict  # package -> version
    training_seconds: float
    created_at: str  # ISO 8601, UTC
    git_commit: str
    # A site-adapted run (training.adapt): {"base_model", "site", "adapted_at", "adapted"}.
    adapted_from: dict | None = None
    # A model soup across runs (training.train --soup-with): the other runs' versions.
    souped_with: list[str] | None = None

    def to_dict(self) -> dict:
        """The file's content, as plain data."""
        return _json_data(self)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """calibration.json: the fitted temperature and what it did to the calibration error.

    The bins are plain data, as model.calibration.reliability_bins gives them.
    """

    temperature: float
    ece_before: float
    ece_after: float  # in-sample: on the images the temperature was fitted on
    ece_after_cross_validated: float | None = None  # absent in runs calibrated before it existed
    bins_before: tuple[dict, ...]
    bins_after: tuple[dict, ...]

    def to_dict(self) -> dict:
        """The file's content, as plain data."""
        return _json_data(self)


@dataclass(frozen=True)
class OodLimits:
    """The gate's three numbers, each derived from data by training.fit_ood."""

    max_distance: float
    min_contrast: float
    min_neighbour_correlation: float


@dataclass(frozen=True)
class LookRange:
    """The span of one simple pixel measure over the training X-rays (model.image_looks)."""

    low: float
    high: float


@dataclass(frozen=True)
class GateSettings:
    """ood.json: the out-of-distribution gate's limits and version, and the figures of its
    fitting (method, image counts, refusal rates, distance quantiles) that the model card
    quotes, kept as plain data; ``look_ranges`` name what looked wrong in a refusal (absent in
    gates fitted before them)."""

    limits: OodLimits
    figures: dict
    format_version: int = OOD_FORMAT_VERSION
    look_ranges: dict[str, LookRange] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """The file's content: the figures, then the version, the limits and the ranges."""
        content = {**self.figures, "format_version": self.format_version,
                   "limits": _json_data(self.limits)}
        if self.look_ranges:
            content["look_ranges"] = _json_data(self.look_ranges)
        return content


# ---- plain JSON files ----------------------------------------------------------------------

def read_json(path: Path) -> Any:
    """A JSON file's content; MissingRunFileError or RunFileError naming the file."""
    if not path.is_file():
        raise MissingRunFileError(f"{path.name} is missing from {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(f"{path} cannot be read: {error}") from error


def write_json(path: Path, content: Any) -> None:
    """Pretty JSON, NumPy scalars and arrays and paths included, written whole."""
    path.write_text(json.dumps(content, indent=2, default=_python_value) + "\n")


def read_feature_bank(run_dir: Path, keys: Sequence[str], optional: Sequence[str] = ()
                      ) -> dict[str, np.ndarray]:
    """The named arrays of the run's feature bank (training.feature_bank writes it; model.shift,
    model.familiarity and the pages read parts of it); ``optional`` ones only where the file has
    them (older banks have no looks). MissingRunFileError or RunFileError naming the file."""
    path = Path(run_dir) / FEATURE_BANK_FILE
    if not path.is_file():
        raise MissingRunFileError(f"{FEATURE_BANK_FILE} is missing from {run_dir}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in (*keys, *optional)
                    if key in keys or key in arrays.files}
    except (OSError, KeyError, ValueError) as error:
        raise RunFileError(f"{path} cannot be read: {error}") from error


def if_present(read: Callable[[Path], _Read], location: Path) -> _Read | None:
    """``read(location)`` (a run directory or a file), or None when the file is absent; a
    damaged file still raises."""
    try:
        return read(location)
    except MissingRunFileError:
        return None


# ---- the run directory's files -------------------------------------------------------------

def read_metadata(run_dir: Path) -> Metadata:
    """metadata.json, checked: its version, every field, and a preprocessing this code does."""
    path = Path(run_dir) / METADATA_FILE
    return parse_metadata(read_json(path), path)


def parse_metadata(content: Any, path: Path) -> Metadata:
    """Metadata from the content of ``path``, checked as ``read_metadata`` does."""
    content = _object(content, path)
    if content.get("format_version") == 1:
        raise RunFileError(f"{path} has format_version 1: its model expects normalised RGB "
                           f"input; convert the run with `python -m "
                           f"training.convert_normalization --run {path.parent}`")
    _check_version(content, METADATA_FORMAT_VERSION, path)
    metadata = parse_fields(Metadata, content, path)
    if not metadata.classes or not all(isinstance(name, str) for name in metadata.classes):
        raise RunFileError(f"{path}: classes should be a list of names, not {metadata.classes}")
    if metadata.image_size <= 0:
        raise RunFileError(f"{path}: image_size must be positive, got {metadata.image_size}")
    preprocessing = metadata.preprocessing
    if preprocessing.normalization not in NORMALIZATIONS:
        raise RunFileError(f"{path}: unknown preprocessing normalization "
                           f"{preprocessing.normalization!r} (known: {', '.join(NORMALIZATIONS)})")
    for name in ("resize", "interpolation"):
        value, done = getattr(preprocessing, name), getattr(Preprocessing, name)
        if value != done:
            raise RunFileError(f"{path}: preprocessing {name} {value!r} is not what "
                               f"model.preprocess does ({done!r})")
    return metadata


def write_metadata(run_dir: Path, metadata: Metadata) -> None:
    write_json(Path(run_dir) / METADATA_FILE, metadata.to_dict())


def read_calibration(run_dir: Path) -> Calibration:
    """calibration.json, with a positive, finite temperature."""
    path = Path(run_dir) / CALIBRATION_FILE
    calibration = parse_fields(Calibration, read_json(path), path)
    if not 0 < calibration.temperature < math.inf:
        raise RunFileError(f"{path}: the temperature must be positive, "
                           f"got {calibration.temperature}")
    return calibration


def write_calibration(run_dir: Path, calibration: Calibration) -> None:
    write_json(Path(run_dir) / CALIBRATION_FILE, calibration.to_dict())


def read_gate_settings(run_dir: Path) -> GateSettings:
    """ood.json: its version and limits checked, the figures as written."""
    path = Path(run_dir) / OOD_FILE
    content = _object(read_json(path), path)
    _check_version(content, OOD_FORMAT_VERSION, path)
    if "limits" not in content:
        raise RunFileError(f"{path} lacks limits")
    limits = parse_fields(OodLimits, content["limits"], path, "limits.")
    looks = {name: parse_fields(LookRange, bounds, path, f"look_ranges.{name}.")
             for name, bounds in _object(content.get("look_ranges", {}), path).items()}
    figures = {key: value for key, value in content.items()
               if key not in ("format_version", "limits", "look_ranges")}
    return GateSettings(limits, figures, content["format_version"], looks)


def write_gate_settings(run_dir: Path, settings: GateSettings) -> None:
    write_json(Path(run_dir) / OOD_FILE, settings.to_dict())


def read_history(run_dir: Path) -> list[dict]:
    """history.json: one record per epoch (stage, epoch, losses, accuracies, learning rate)."""
    path = Path(run_dir) / HISTORY_FILE
    history = read_json(path)
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        raise RunFileError(f"{path} should hold a list of epoch records")
    return history


def write_history(run_dir: Path, history: list[dict]) -> None:
    write_json(Path(run_dir) / HISTORY_FILE, history)


def read_model_card(run_dir: Path) -> str:
    """MODEL_CARD.md's Markdown."""
    path = Path(run_dir) / MODEL_CARD_FILE
    if not path.is_file():
        raise MissingRunFileError(f"{path.name} is missing from {path.parent}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunFileError(f"{path} cannot be read: {error}") from error


# ---- reading and writing dataclasses as JSON -----------------------------------------------

_JSON_TYPES = {str: (str,), int: (int,), float: (int, float), tuple: (list,), list: (list,),
               dict: (dict,)}
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", tuple: "a list",
               list: "a list", dict: "an object"}


def _object(content: Any, path: Path) -> dict:
    if not isinstance(content, dict):
        raise RunFileError(f"{path} should hold a JSON object, not {reprlib.repr(content)}")
    return content


def _check_version(content: dict, readable: int, path: Path) -> None:
    """Refuse a file of a format this code does not know, before reading its fields."""
    if "format_version" not in content:
        raise RunFileError(f"{path} lacks format_version")
    if content["format_version"] != readable:
        raise RunFileError(f"{path} has format_version {content['format_version']!r}; this "
                           f"code reads version {readable} only: update the code")


def parse_fields(cls: type, content: Any, path: Path, where: str = ""):
    """A dataclass from a JSON object: each field without a default required, each value of
    the JSON type its annotation names (a tuple from a list, a dataclass from an object, and
    each value of a ``dict[str, X]`` parsed as X)."""
    if not isinstance(content, dict):
        raise RunFileError(f"{path}: {where or 'the file '}should be a JSON object, "
                           f"not {reprlib.repr(content)}")
    missing = [where + field.name for field in fields(cls)
               if field.name not in content and field.default is MISSING
               and field.default_factory is MISSING]
    if missing:
        raise RunFileError(f"{path} lacks {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for field in fields(cls):
        if field.name not in content:
            continue
        values[field.name] = _parse_value(hints[field.name], content[field.name], path,
                                          f"{where}{field.name}")
    return cls(**values)


def _parse_value(hint: Any, value: Any, path: Path, where: str) -> Any:
    """One value of the JSON type ``hint`` names; ``where`` is its dotted name, for messages."""
    if isinstance(hint, types.UnionType):  # X | None
        if value is None:
            return None
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    if dataclasses.is_dataclass(hint):
        return parse_fields(hint, value, path, f"{where}.")
    kind = typing.get_origin(hint) or hint
    if isinstance(value, bool) or not isinstance(value, _JSON_TYPES[kind]):
        raise RunFileError(f"{path}: {where} should be {_JSON_NAMES[kind]}, "
                           f"not {reprlib.repr(value)}")
    if kind is dict and typing.get_args(hint):
        _, item = typing.get_args(hint)
        return {key: _parse_value(item, entry, path, f"{where}.{key}")
                for key, entry in value.items()}
    return tuple(value) if kind is tuple else value


def _json_data(value: Any) -> Any:
    """Plain JSON data: dataclasses as objects without their None fields, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {field.name: _json_data(getattr(value, field.name)) for field in fields(value)
                if getattr(value, field.name) is not None}
    if isinstance(value, tuple | list):
        return [_json_data(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_data(item) for key, item in value.items()}
    return value


def _python_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
