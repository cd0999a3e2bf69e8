"""A trained network as the base of another chest X-ray model.

A run's backbone, fine-tuned on chest X-rays, is a better start than ImageNet for a new chest
X-ray task. It is taken from a run directory (its model.keras) or from the backbone alone, as
`python -m training.export_backbone` writes it: FILE.weights.h5 with FILE.json beside it, the
input contract (image size, grey uint8 input, the normalisation inside the model, backbone,
feature size, the run it came from). `python -m training.train --weights RUN_DIR|FILE.weights.h5`
starts from it: the backbone's weights are copied by layer name into a new classifier, whose
head is new, and the usual two stages follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras

from model.normalization import NORMALIZATIONS, normalization_layer
from model.preprocess import INTERPOLATION, RESIZE
from model.run_dir import MODEL_FILE, RunFileError, read_metadata
from training.backbones import BackboneWeightsError, get_backbone
from training.classifier import backbone_layers

WEIGHTS_SUFFIX = ".weights.h5"
CONTRACT_VERSION = 1
FEATURES_INPUT_OF = "head_pool"  # the classifier's layer that pools the backbone's feature maps


@dataclass(frozen=True)
class TrainedBackbone:
    """A backbone model (the (S, S) uint8 grey image -> feature maps) and its input contract."""

    model: keras.Model
    contract: dict
    location: Path  # the run directory or the exported weights file

    @property
    def source(self) -> str:
        """How a run that starts from it names its weights (metadata ``weights_source``)."""
        return f"trained run {self.contract['source_run_version']} ({self.location})"


def contract_path(weights_file: Path) -> Path:
    """FILE.json beside FILE.weights.h5."""
    return weights_file.with_name(weights_file.name.removesuffix(WEIGHTS_SUFFIX) + ".json")


def backbone_of(classifier: keras.Model) -> keras.Model:
    """The classifier up to its head: the grey image -> the feature maps its head pools."""
    features = classifier.get_layer(FEATURES_INPUT_OF).input
    return keras.Model(classifier.input, features, name=f"{classifier.name}_backbone")


def input_contract(backbone: keras.Model, run_dir: Path) -> dict:
    """What a user of the backbone must feed it and gets back, from the run's metadata."""
    metadata = read_metadata(run_dir)
    normalization = metadata.preprocessing.normalization
    formula = NORMALIZATIONS[normalization]
    return {
        "format_version": CONTRACT_VERSION,
        "backbone": metadata.backbone,
        "image_size": metadata.image_size,
        "input": {"shape": [metadata.image_size, metadata.image_size], "dtype": "uint8",
                  "description": "the grey image (0-255), resized by stretching to "
                                 "image_size x image_size (model.preprocess.resize_gray); the "
                                 "backbone's first layer repeats it to 3 channels and normalises"},
        "preprocessing": {"resize": RESIZE, "interpolation": INTERPOLATION,
                          "normalization": normalization,
                          "normalization_formula": "(grey / divisor - mean) / std",
                          "divisor": formula.divisor, "mean": list(formula.mean),
                          "std": list(formula.std)},
        "feature_shape": list(backbone.output.shape[1:]),
        "feature_size": int(backbone.output.shape[-1]),
        "pooling": "global average of the feature maps: the source model's features",
        "source_run_version": metadata.version,
        "source_weights": metadata.weights_source,
        "source_classes": list(metadata.classes),
        "keras": keras.__version__,
    }


def load_run_backbone(run_dir: Path) -> TrainedBackbone:
    """The fine-tuned backbone of a run directory, with its contract."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise BackboneWeightsError(f"{run_dir} is not a run directory: {MODEL_FILE} is missing")
    try:
        classifier = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; all mean the same
        raise BackboneWeightsError(f"{path} cannot be loaded: {error}") from error
    backbone = backbone_of(classifier)
    try:
        return TrainedBackbone(backbone, input_contract(backbone, Path(run_dir)), Path(run_dir))
    except RunFileError as error:
        raise BackboneWeightsError(str(error)) from error


def export_backbone(run_dir: Path, out: Path) -> Path:
    """Write the run's backbone weights to ``out`` (FILE.weights.h5) and its contract beside
    them; returns the contract's path."""
    if not out.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"the backbone file must be named *{WEIGHTS_SUFFIX}, not {out.name}")
    trained = load_run_backbone(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    trained.model.save_weights(out)
    contract = {**trained.contract, "weights_file": out.name}
    contract_path(out).write_text(json.dumps(contract, indent=2) + "\n")
    return contract_path(out)


def load_exported_backbone(weights_file: Path) -> TrainedBackbone:
    """An exported backbone: rebuilt from the backbone registry as its contract says, then
    its weights loaded (by layer name)."""
    weights_file = Path(weights_file)
    contract_file = contract_path(weights_file)
    if not weights_file.is_file() or not contract_file.is_file():
        raise BackboneWeightsError(f"an exported backbone needs {weights_file.name} and "
                                   f"{contract_file.name} side by side in {weights_file.parent}")
    contract = json.loads(contract_file.read_text(encoding="utf-8"))
    if contract.get("format_version") != CONTRACT_VERSION:
        raise BackboneWeightsError(f"{contract_file} has format_version "
                                   f"{contract.get('format_version')!r}; this code reads "
                                   f"{CONTRACT_VERSION}")
    size = contract["image_size"]
    gray = keras.Input((size, size), dtype="uint8", name="image")
    normalized = normalization_layer(contract["preprocessing"]["normalization"])(gray)
    features, _ = get_backbone(contract["backbone"]).build(normalized, "none")
    backbone = keras.Model(gray, features, name=f"{contract['backbone']}_backbone")
    backbone.load_weights(weights_file)
    return TrainedBackbone(backbone, contract, weights_file)


def trained_backbone(weights: str) -> TrainedBackbone | None:
    """The trained backbone ``--weights`` names (a run directory or an exported FILE.weights.h5),
    or None when it names ImageNet, random or a backbone's own pretrained-weights file."""
    if weights in ("imagenet", "none"):
        return None
    path = Path(weights)
    if path.is_dir():
        return load_run_backbone(path)
    if path.name.endswith(WEIGHTS_SUFFIX):
        return load_exported_backbone(path)
    return None


def copy_backbone_weights(trained: TrainedBackbone, classifier: keras.Model) -> int:
    """Every backbone layer's weights from the trained backbone, by name; the head is left as
    built. Returns how many layers were copied; a layer it lacks or a shape that differs is a
    BackboneWeightsError (a different backbone)."""
    source = {layer.name: layer for layer in trained.model.layers}
    copied = 0
    for layer in backbone_layers(classifier):
        if not layer.weights:
            continue
        if layer.name not in source:
            raise BackboneWeightsError(f"the trained backbone has no layer {layer.name!r}: it "
                                       f"is a {trained.contract['backbone']}")
        weights = source[layer.name].get_weights()
        shapes = [tuple(w.shape) for w in weights]
        if shapes != [tuple(w.shape) for w in layer.get_weights()]:
            raise BackboneWeightsError(f"layer {layer.name!r}: the trained backbone's weights "
                                       f"have shapes {shapes}")
        layer.set_weights(weights)
        copied += 1
    return copied
