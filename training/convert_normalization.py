"""Convert a format-1 run directory, whose model took normalised RGB, to format 2, whose model
normalises the stretched grey image itself: no retraining, the same weights.

    python -m training.convert_normalization --run RUN_DIR

The old graph is rebuilt onto the grey image with the normalisation layer (model.normalization)
in front, every layer's weights are copied by name from the old model.keras, and model.keras
and metadata.json are rewritten in place. The pooled features do not change, so the
calibration and the out-of-distribution gate stay valid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

from model.normalization import normalization_layer
from model.run_dir import (
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    MODEL_FILE,
    Metadata,
    RunFileError,
    parse_metadata,
    read_json,
    write_metadata,
)

TOLERANCE = 1e-5  # the largest change in any output the conversion may make


class ConversionError(RuntimeError):
    """A run directory this script cannot convert; the message says why."""


def upgraded_metadata(content: dict, path: Path) -> Metadata:
    """Format-1 metadata content -> format 2: the same facts, the colour and normalisation now
    the model's own."""
    if content.get("format_version") != 1:
        raise ConversionError(f"{path} has format_version {content.get('format_version')!r}; "
                              "only format 1 runs need converting")
    preprocessing = dict(content.get("preprocessing") or {})
    if preprocessing.pop("color", None) != "gray_to_rgb":
        raise ConversionError(f"{path}: only a grey image repeated to RGB can move inside the "
                              f"model, not preprocessing {content.get('preprocessing')!r}")
    return parse_metadata({**content, "format_version": METADATA_FORMAT_VERSION,
                           "preprocessing": preprocessing}, path)


def with_normalization(old: keras.Model, normalization: str) -> keras.Model:
    """The old graph rebuilt onto an (S, S) uint8 grey input through the named normalisation,
    with the old weights copied by layer name."""
    (old_input,) = old.inputs
    height, width, channels = old_input.shape[1:]
    if channels != 3:
        raise ConversionError(f"{old.name} takes {tuple(old_input.shape)}, not RGB images")
    gray = keras.Input((height, width), dtype="uint8", name=old_input.name)
    normalized = normalization_layer(normalization)(gray)

    def call_on_normalized(layer, *args, **kwargs):
        # The layers that read the old RGB input read the normalised grey image instead.
        if args and args[0] is gray:
            args = (normalized, *args[1:])
        return layer(*args, **kwargs)

    new = keras.models.clone_model(old, call_function=call_on_normalized,
                                   input_tensors=keras.tree.map_structure(lambda _: gray,
                                                                          old.input))
    copy_weights_by_name(old, new)
    return new


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> None:
    """Each target layer's weights from the source layer of the same name; both models must
    have the same layers with weights, so no weight is left behind or left random."""
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    target_layers = {layer.name: layer for layer in target.layers if layer.weights}
    if source_layers.keys() != target_layers.keys():
        differing = sorted(source_layers.keys() ^ target_layers.keys())
        raise ConversionError(f"the layers with weights differ by name: {differing}")
    for name, layer in target_layers.items():
        layer.set_weights(source_layers[name].get_weights())


def largest_difference(old: keras.Model, new: keras.Model, normalization: str,
                       seed: int = 0) -> float:
    """Largest output difference between the new model on random grey images and the old one
    on the same images normalised outside it, as format 1 did."""
    _, height, width = new.inputs[0].shape
    gray = np.random.default_rng(seed).integers(0, 256, (4, height, width), dtype=np.uint8)
    normalized = normalization_layer(normalization)(gray)
    return float(np.max(np.abs(_outputs(new, gray) - _outputs(old, normalized))))


def _outputs(model: keras.Model, images) -> np.ndarray:
    """The model called on one batch, passed in the structure of its inputs."""
    return np.asarray(model(keras.tree.map_structure(lambda _: images, model.input)))


def convert_run(run_dir: Path) -> float:
    """Convert a format-1 run directory in place; returns the check's largest difference."""
    metadata_path = run_dir / METADATA_FILE
    metadata = upgraded_metadata(read_json(metadata_path), metadata_path)
    old = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    normalization = metadata.preprocessing.normalization
    new = with_normalization(old, normalization)
    difference = largest_difference(old, new, normalization)
    if difference > TOLERANCE:
        raise ConversionError(f"the converted model's outputs differ by {difference:.2e} "
                              f"(more than {TOLERANCE:g}); nothing was written")
    new.save(run_dir / MODEL_FILE)
    write_metadata(run_dir, metadata)
    return difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the run directory to convert")
    args = parser.parse_args(argv)
    try:
        difference = convert_run(args.run)
    except (ConversionError, RunFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"converted {args.run} to format {METADATA_FORMAT_VERSION}: normalisation inside "
          f"the model; outputs on random images within {difference:.1e} of the old model's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
