"""The Keras EfficientNet-Lite0 port reproduces the PyTorch ImageNet model; its reader is safe."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from skimage import data, transform

from training import lite0
from training.torch_checkpoint import UnsafeCheckpointError

IMAGENET_SIZE = 224
# skimage image, ImageNet classes accepted as top-1, reference class, its probability (NOTES.md).
REFERENCE_IMAGES = {
    "chelsea": (data.chelsea, range(281, 286), 285, 0.77),
    "coffee": (data.coffee, (967,), 967, 0.90),
}


def imagenet_input(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> one (1, 224, 224, 3) Lite0 input: bilinear resize, (x - 127) / 128."""
    resized = transform.resize(image, (IMAGENET_SIZE, IMAGENET_SIZE), order=1, preserve_range=True)
    return ((resized - 127.0) / 128.0).astype(np.float32)[None]


def build_imagenet_model() -> keras.Model:
    inputs = keras.Input((IMAGENET_SIZE, IMAGENET_SIZE, 3))
    return keras.Model(inputs, lite0.efficientnet_lite0(inputs, include_top=True))


def top_prediction(model: keras.Model, image_name: str) -> tuple[int, float]:
    probabilities = model.predict(imagenet_input(REFERENCE_IMAGES[image_name][0]()), verbose=0)[0]
    return int(probabilities.argmax()), float(probabilities.max())


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return lite0.read_lite0_state_dict()


@pytest.fixture(scope="module")
def imagenet_model() -> keras.Model:
    model = build_imagenet_model()
    lite0.load_lite0_imagenet_weights(model)
    return model


@pytest.fixture(scope="module")
def classifier_model() -> keras.Model:
    """Lite0 backbone with a new 4-class head, as training builds it (small input: fast)."""
    inputs = keras.Input((64, 64, 3))
    features = lite0.efficientnet_lite0(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(pooled))


@pytest.mark.parametrize("image_name", sorted(REFERENCE_IMAGES))
def test_imagenet_predictions_match_the_pytorch_reference(imagenet_model, image_name):
    _, accepted, reference_class, reference_probability = REFERENCE_IMAGES[image_name]
    top_class, probability = top_prediction(imagenet_model, image_name)
    assert top_class in accepted
    assert (top_class, probability) == (
        reference_class,
        pytest.approx(reference_probability, abs=0.05),
    )


def _trainable_tensors(state, classifier: bool) -> int:
    """What a complete load assigns: every tensor but BatchNorm's batch counters (and _fc)."""
    return sum(1 for key in state if "num_batches_tracked" not in key
               and (classifier or not key.startswith("_fc.")))


def test_state_dict_holds_every_lite0_tensor_as_float32(state):
    assert len(state) == 296  # the package's file, as ../shared/NOTES.md records it
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    floating = [value for key, value in state.items() if "num_batches_tracked" not in key]
    assert all(value.dtype == np.float32 for value in floating)


def test_float16_npz_gives_the_same_predictions(state, imagenet_model, tmp_path):
    npz = lite0.save_lite0_npz(state, tmp_path / "lite0.npz", include_classifier=True)
    assert npz.stat().st_size < lite0.default_weights_path().stat().st_size / 2
    assert all(value.dtype == np.float32 for value in lite0.read_lite0_state_dict(npz).values())
    model = build_imagenet_model()
    assert lite0.load_lite0_imagenet_weights(model, npz) == _trainable_tensors(state, True)
    assert _trainable_tensors(state, True) == sum(len(layer.weights) for layer in model.layers)
    for image_name in REFERENCE_IMAGES:
        top_class, probability = top_prediction(model, image_name)
        reference_class, reference_probability = top_prediction(imagenet_model, image_name)
        assert top_class == reference_class
        assert probability == pytest.approx(reference_probability, abs=0.01)


def test_new_head_is_left_alone_and_classifier_not_needed(state, classifier_model, tmp_path):
    npz = lite0.save_lite0_npz(state, tmp_path / "backbone.npz")
    head_before = classifier_model.get_layer("logits").get_weights()
    backbone = [layer for layer in classifier_model.layers if layer.name != "logits"]
    assert lite0.load_lite0_imagenet_weights(classifier_model, npz) == sum(
        len(layer.weights) for layer in backbone) == _trainable_tensors(state, False)
    np.testing.assert_allclose(
        classifier_model.get_layer("stem_conv").get_weights()[0],
        state["_conv_stem.weight"].transpose(2, 3, 1, 0),
        atol=1e-3,
    )
    for before, after in zip(
        head_before, classifier_model.get_layer("logits").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_gradcam_layer_and_block_names(classifier_model):
    names = [layer.name for layer in classifier_model.layers]
    assert lite0.GRADCAM_LAYER in names
    assert classifier_model.get_layer(lite0.GRADCAM_LAYER).output.shape[-1] == 1280
    blocks = {name.split("_")[0] for name in names if name.startswith("block")}
    assert blocks == set(lite0.BLOCK_NAMES) and len(blocks) == 16
    assert not any(isinstance(layer, keras.Model) for layer in classifier_model.layers)


def _without(state, key):
    return {name: value for name, value in state.items() if name != key}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: _without(s, "_blocks.7._bn1.running_var"),
            "no weights for layer block7_dwconv_bn",
        ),
        (lambda s: {**s, "_conv_head.weight": s["_conv_head.weight"][:640]}, "shape mismatch"),
    ],
)
def test_bad_weights_fail_before_any_weight_changes(
    state, classifier_model, tmp_path, edit, message
):
    # A shifted stem would show if any layer were assigned before the failure.
    bad = {**edit(state), "_conv_stem.weight": state["_conv_stem.weight"] + 1.0}
    npz = lite0.save_lite0_npz(bad, tmp_path / "bad.npz", dtype=np.float32)
    stem_before = classifier_model.get_layer("stem_conv").get_weights()[0]
    with pytest.raises(ValueError, match=message):
        lite0.load_lite0_imagenet_weights(classifier_model, npz)
    np.testing.assert_array_equal(
        stem_before, classifier_model.get_layer("stem_conv").get_weights()[0]
    )


def test_model_with_predictions_needs_the_classifier(state, imagenet_model, tmp_path):
    npz = lite0.save_lite0_npz(state, tmp_path / "backbone.npz")
    with pytest.raises(ValueError, match=r"no weights for layer predictions.*_fc\.weight"):
        lite0.load_lite0_imagenet_weights(imagenet_model, npz)


def test_incomplete_backbone_is_refused(classifier_model):
    truncated = keras.Model(classifier_model.input, classifier_model.get_layer("block4_add").output)
    with pytest.raises(ValueError, match="no layer for .* backbone tensors"):
        lite0.load_lite0_imagenet_weights(truncated)


# ---- the torch zip format, written by hand with the opcodes torch.save emits ------------------


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor(storage_type: str, key: str, numel: int, offset: int, shape, stride) -> bytes:
    storage = b"(" + _text("storage") + f"ctorch\n{storage_type}\n".encode()
    storage += _text(key) + _text("cpu") + _int(numel) + b"tQ"
    hooks = b"ccollections\nOrderedDict\n)R"
    arguments = storage + _int(offset) + _ints(shape) + _ints(stride) + b"\x89" + hooks
    return b"ctorch._utils\n_rebuild_tensor_v2\n(" + arguments + b"tR"


def _state_pickle(entries: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(_text(name) + tensor for name, tensor in entries)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def _write_torch_zip(path: Path, data_pickle: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pickle)
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


def test_zip_checkpoint_offsets_strides_and_dtypes(tmp_path):
    shared = np.arange(12, dtype=np.float32)
    steps = np.array([7], dtype=np.int64)
    entries = [
        ("matrix", _tensor("FloatStorage", "0", 12, 0, (2, 3), (3, 1))),
        ("transposed", _tensor("FloatStorage", "0", 12, 6, (3, 2), (1, 3))),
        ("num_batches_tracked", _tensor("LongStorage", "1", 1, 0, (), ())),
    ]
    storages = {"0": shared.tobytes(), "1": steps.tobytes()}
    path = _write_torch_zip(tmp_path / "tiny.pth", _state_pickle(entries), storages)
    state = lite0.read_lite0_state_dict(path)
    np.testing.assert_array_equal(state["matrix"], shared[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["transposed"], shared[6:].reshape(2, 3).T)
    assert state["num_batches_tracked"].dtype == np.int64 and state["num_batches_tracked"] == 7


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    entries = [("weight", _tensor("FloatStorage", "0", 4, 2, (2, 2), (2, 1)))]
    storages = {"0": np.zeros(4, np.float32).tobytes()}
    path = _write_torch_zip(tmp_path / "overrun.pth", _state_pickle(entries), storages)
    with pytest.raises(ValueError, match="outside its storage"):
        lite0.read_lite0_state_dict(path)


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_checkpoint_with_a_foreign_global_is_refused(tmp_path, container):
    marker = tmp_path / "payload-ran"
    payload = b"\x80\x02cos\nsystem\n(" + _text(f"touch {marker}") + b"tR."
    path = tmp_path / "evil.pth"
    if container == "zip":
        _write_torch_zip(path, payload, {})
    else:
        path.write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError, match=r"os\.system"):
        lite0.read_lite0_state_dict(path)
    assert not marker.exists()
