"""Each backbone's input normalisation as data, without Keras: the run directory's checks
(model.run_dir) read it in processes that never load TensorFlow (the app as a model client);
model.normalization builds the layer from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Normalization:
    """(x / divisor - mean) / std per channel, on RGB values 0..255: each backbone's formula as
    its authors wrote it, so the numbers are the ones it was pretrained on, bit for bit."""

    divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


NORMALIZATIONS: dict[str, Normalization] = {
    # EfficientNet-Lite0 as trained by its authors: (x - 127) / 128.
    "lite0": Normalization(1.0, (127.0,) * 3, (128.0,) * 3),
    # keras.applications ResNet50 ("caffe"): BGR channel means, no scaling. The channels of a
    # grey image are equal, so the RGB-to-BGR flip leaves them as they are.
    "caffe": Normalization(1.0, (103.939, 116.779, 123.68), (1.0,) * 3),
    # keras.applications InceptionV3 ("tf"): [-1, 1].
    "tf": Normalization(127.5, (1.0,) * 3, (1.0,) * 3),
    # keras.applications DenseNet121 ("torch"): ImageNet mean and std on [0, 1].
    "torch": Normalization(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
