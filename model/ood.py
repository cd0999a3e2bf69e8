"""The out-of-distribution gate: refuse, with a reason, images that are not chest radiographs.

A classifier trained only on chest X-rays gives a confident answer for a cat too, so every
image is screened before its probabilities are shown, in three steps that cost almost nothing:

1. the DICOM header: a CT, MR, ultrasound... object is named as such (``check_acquisition``);
2. the pixels as the model sees them: blank or nearly uniform images and pixel noise are
   refused with a specific message (``OodGate.check_pixels``);
3. the classifier's own pooled features from the same forward pass: the Mahalanobis distance
   to the nearest class mean of the training X-rays, with one covariance shared by the classes
   (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples"),
   against a limit set on the validation X-rays (``OodGate.check``).

The predictor runs them, and nothing else decides: steps 1 and 2 in ``Predictor.admit``, step 3
in ``Predictor.classify``.

Every limit comes from data and lives with the model in the run directory's gate files
(model.run_dir's OOD_FILE and OOD_ARRAYS_FILE, written by ``python -m training.fit_ood``);
without them the gate is off and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.errors import ImageError
from model.image_looks import contrast, describe
from model.run_dir import (
    OOD_ARRAYS_FILE,
    OOD_FILE,
    GateSettings,
    MissingRunFileError,
    RunFileError,
    read_gate_settings,
    write_gate_settings,
)

if TYPE_CHECKING:
    from model.decode import DecodedImage

# DICOM modalities that are projection radiographs; unspecific ones (OT, SC, absent) go on to
# the pixel and feature checks, every other modality is refused by name.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG"})
UNSPECIFIC_MODALITIES = frozenset({"", "OT", "SC"})
MODALITY_NAMES = {"CT": "CT (computed tomography)", "MR": "MR (magnetic resonance)",
                  "US": "ultrasound", "NM": "nuclear medicine", "PT": "PET",
                  "MG": "mammography", "XA": "angiography", "RF": "fluoroscopy",
                  "SEG": "segmentation", "RTDOSE": "radiotherapy dose"}
ONLY_RADIOGRAPHS = "The model only analyses frontal chest radiographs."


class Refusal(ImageError):
    """The gate's refusal of one image: the message says why, ``step`` which check refused it
    ('header', 'pixels' or 'features'), for the benchmarks' counts."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def check_acquisition(image: DecodedImage) -> None:
    """Refuse a DICOM whose header says it is not a radiograph (CT, MR, US, NM, ...)."""
    modality = image.facts.get("Modality", "").strip().upper()
    if image.source_format != "DICOM" or modality in RADIOGRAPH_MODALITIES | UNSPECIFIC_MODALITIES:
        return
    kind = MODALITY_NAMES.get(modality, f"modality {modality}")
    raise Refusal("header",
                  f"This DICOM holds a {kind} image, not a radiograph. {ONLY_RADIOGRAPHS}")


def neighbour_correlation(resized: np.ndarray) -> float:
    """The smaller of the horizontal and vertical correlations of adjacent pixels.

    Radiographs are smooth at the model's input size (above 0.85); pixel noise is not (near 0).
    A constant image counts as perfectly correlated: ``contrast`` refuses it instead.
    """
    values = resized.astype(np.float32)
    pairs = ((values[:, :-1], values[:, 1:]), (values[:-1], values[1:]))
    correlations = []
    for first, second in pairs:
        first, second = first - first.mean(), second - second.mean()
        scale = float(np.sqrt((first * first).sum() * (second * second).sum()))
        correlations.append(float((first * second).sum()) / scale if scale > 0 else 1.0)
    return min(correlations)


class FeatureGaussians:
    """Class means and one shared covariance in feature space, stored as a whitening matrix.

    ``whitening`` W satisfies W Wᵀ = Σ⁻¹, so the Mahalanobis distance to mean m is ‖xW − mW‖:
    one (D × D) product per image, whatever the number of classes.
    """

    def __init__(self, class_means: np.ndarray, whitening: np.ndarray) -> None:
        self.class_means = np.asarray(class_means, np.float32)  # (C, D)
        self.whitening = np.asarray(whitening, np.float32)  # (D, D)
        if self.class_means.ndim != 2 or self.whitening.shape != (self.class_means.shape[1],) * 2:
            raise ValueError(f"whitening {self.whitening.shape} does not match class means "
                             f"{self.class_means.shape}")
        self._projected_means = self.class_means @ self.whitening

    @classmethod
    def from_covariance(cls, class_means: np.ndarray, covariance: np.ndarray) -> FeatureGaussians:
        """Whitening from the eigendecomposition of a (shrunk, so positive definite) covariance."""
        eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(covariance, np.float64))
        if eigenvalues.min() <= 0:
            raise ValueError("the covariance must be positive definite (shrink it)")
        return cls(class_means, eigenvectors / np.sqrt(eigenvalues))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) Mahalanobis distance to the nearest class mean.

        einsum, not ``@``: it stays off the multithreaded BLAS, which on a busy 2-core machine
        spends 8 ms per image waiting for its threads instead of 0.2 ms computing.
        """
        features = np.atleast_2d(np.asarray(features, np.float32))
        projected = np.einsum("nd,de->ne", features, self.whitening)
        squared = ((projected[:, None, :] - self._projected_means[None]) ** 2).sum(axis=-1)
        return np.sqrt(squared.min(axis=1))


def distance_threshold(distances: np.ndarray, refused_fraction: float) -> float:
    """The observed distance above which exactly floor(fraction × n) of ``distances`` lie.

    Ties aside, the limit refuses at most ``refused_fraction`` of the images it was set on, and
    no smaller observed distance would.
    """
    if not 0.0 <= refused_fraction < 1.0:
        raise ValueError(f"refused_fraction must be in [0, 1), got {refused_fraction}")
    ordered = np.sort(np.asarray(distances, np.float64))
    refused = int(np.floor(refused_fraction * len(ordered) + 1e-9))
    return float(ordered[len(ordered) - 1 - refused])


class OodGate:
    """Screens one image before its probabilities are shown; off when the run has no gate."""

    def __init__(self, gaussians: FeatureGaussians | None, settings: GateSettings | None,
                 reason: str = "") -> None:
        self._gaussians = gaussians
        self.settings = settings  # limits and the figures of the fitting; None when off
        self._limits = None if settings is None else settings.limits
        self._reason = reason

    @property
    def enabled(self) -> bool:
        return self._gaussians is not None

    @property
    def info(self) -> dict:
        """What the gate files say (figures for the model card), or why the gate is off."""
        if self.settings is None:
            return {"enabled": False, "reason": self._reason}
        return {**self.settings.to_dict(), "enabled": True}

    @classmethod
    def off(cls, reason: str) -> OodGate:
        """A gate that lets everything through, saying why (shown with the model's metadata)."""
        return cls(None, None, reason)

    @classmethod
    def load(cls, run_dir: str | Path) -> OodGate:
        """The run's fitted gate, or an 'off' gate when the run has none; RunFileError when its
        files cannot be used."""
        run_dir = Path(run_dir)
        try:
            settings = read_gate_settings(run_dir)
        except MissingRunFileError:
            return cls.off(f"{run_dir} has no {OOD_FILE}: images are not screened "
                           "(run python -m training.fit_ood to fit the gate)")
        arrays_path = run_dir / OOD_ARRAYS_FILE
        try:
            with np.load(arrays_path) as arrays:
                gaussians = FeatureGaussians(arrays["class_means"], arrays["whitening"])
        except (OSError, ValueError, KeyError) as error:
            raise RunFileError(f"{arrays_path} cannot be loaded: {error}") from error
        return cls(gaussians, settings)

    def save(self, run_dir: str | Path) -> None:
        """Write the gate's settings (limits and figures) and arrays (means, whitening)."""
        if not self.enabled:
            raise ValueError("an 'off' gate has nothing to save")
        run_dir = Path(run_dir)
        np.savez(run_dir / OOD_ARRAYS_FILE, class_means=self._gaussians.class_means,
                 whitening=self._gaussians.whitening)
        write_gate_settings(run_dir, self.settings)

    @property
    def feature_size(self) -> int | None:
        return None if self._gaussians is None else self._gaussians.class_means.shape[1]

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N, D) pooled features -> (N,) distances to the training X-rays."""
        if self._gaussians is None:
            raise ValueError("the gate is off: it has no fitted distribution")
        return self._gaussians.distances(features)

    def check_pixels(self, resized: np.ndarray) -> None:
        """Refuse blank and noise images; ``resized`` is the grayscale model-size image."""
        if self._limits is None:
            return
        spread = contrast(resized)
        if spread < self._limits.min_contrast:
            raise Refusal(
                "pixels",
                f"This image is blank or almost uniform (its grey levels span {spread:.0f} of "
                f"255; the limit is {self._limits.min_contrast:.0f}). {ONLY_RADIOGRAPHS}"
            )
        correlation = neighbour_correlation(resized)
        if correlation < self._limits.min_neighbour_correlation:
            raise Refusal(
                "pixels",
                "This image looks like noise or a fine pattern, not a radiograph (neighbouring "
                f"pixels correlate at {correlation:.2f}; the limit is "
                f"{self._limits.min_neighbour_correlation:.2f}). {ONLY_RADIOGRAPHS}"
            )

    def check(self, features: np.ndarray, resized: np.ndarray | None = None) -> None:
        """Refuse one image whose (D,) pooled features lie too far from the training X-rays;
        given the model-size image, the refusal names what looked wrong (model.image_looks)."""
        if self._gaussians is None:
            return
        distance = float(self._gaussians.distances(features)[0])
        if not distance <= self._limits.max_distance:  # also refuses a NaN distance
            looks = (f" {describe(resized, self.settings.look_ranges)}"
                     if resized is not None and self.settings.look_ranges else "")
            raise Refusal(
                "features",
                "This image does not look like a frontal chest X-ray (distance "
                f"{distance:.1f} from the training X-rays, limit "
                f"{self._limits.max_distance:.1f}).{looks} {ONLY_RADIOGRAPHS}"
            )
