"""DICOM decoding: LUTs and windowing, bit depths, compression, refusals, and no identifiers out."""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import apply_voi_lut
from pydicom.uid import (
    MPEG2MPML,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from model.decode import decode_file, decode_image
from model.dicom import codestream_size, looks_like_dicom
from model.errors import ImageError
from model.limits import DecodeLimits
from model.predictor import Predictor
from testkit import REPO_ROOT
from testkit.bad_inputs import (
    GARBAGE_JPEG,
    dicom_with_transfer_syntax,
    dicom_without_pixels,
    noisy_gray,
)
from testkit.dicom_factory import FAKE_PATIENT, make_dataset, make_dicom, to_bytes
from testkit.model_factory import shipped_run_dir

SYNTAXES = [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]


def gradient(height: int = 64, width: int = 96) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda uid: uid.name)
@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("monochrome1", [False, True])
def test_synthetic_image_round_trips_through_dicom(syntax, bits, monochrome1):
    gray = gradient()
    data = make_dicom(gray, bits=bits, monochrome1=monochrome1, transfer_syntax=syntax)
    decoded = decode_image(data, "gradient.dcm")
    assert decoded.source_format == "DICOM"
    assert decoded.gray.dtype == np.uint8 and decoded.gray.shape == gray.shape
    assert np.abs(decoded.gray.astype(int) - gray).max() <= 1


def test_facts_are_the_acquisition_facts_only():
    decoded = decode_image(make_dicom(gradient(), bits=12, monochrome1=True), "cxr.dcm")
    assert decoded.facts == {
        "Size": "96 × 64 pixels",
        "Modality": "DX",
        "View position": "PA",
        "Body part examined": "CHEST",
        "Photometric interpretation": "MONOCHROME1",
        "Bits stored": "12",
    }


def test_window_maps_its_range_to_full_contrast():
    gray = gradient()
    # Window over stored values 16384..49152 (grey levels 64..191 at 16 bits).
    decoded = decode_image(make_dicom(gray, window=(32768, 32768)), "windowed.dcm").gray
    assert np.all(decoded[:, gray[0] <= 62] == 0)
    assert np.all(decoded[:, gray[0] >= 193] == 255)
    middle = (gray[0] > 70) & (gray[0] < 185)
    expected = (gray[0, middle].astype(float) * 257 - 16384) / 32768 * 255
    assert np.abs(decoded[0, middle] - expected).max() <= 1.5


def test_monochrome1_is_inverted_after_the_window():
    gray = gradient()
    plain = decode_image(make_dicom(gray, window=(32768, 32768)), "a.dcm").gray
    # Stored inverted (MONOCHROME1) under a window symmetric about mid-range: windowing then
    # inverting must give the same picture; skipping the inversion would give its negative.
    inverted_storage = make_dicom(gray, monochrome1=True, window=(32768, 32768))
    np.testing.assert_allclose(decode_image(inverted_storage, "b.dcm").gray, plain, atol=1)


def test_modality_lut_rescales_to_hounsfield_units_before_the_window():
    hounsfield = np.tile(np.linspace(-1000, 1000, 96), (64, 1)).round()
    ds = make_dataset(gradient())
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400  # soft-tissue window, in HU
    ds.PixelData = (hounsfield + 1024).astype(np.int16).tobytes()
    decoded = decode_image(to_bytes(ds), "ct.dcm").gray
    assert np.all(decoded[hounsfield <= -161] == 0)
    assert np.all(decoded[hounsfield >= 241] == 255)
    inside = np.abs(hounsfield[0] - 40) < 190
    expected = ((hounsfield[0, inside] - 39.5) / 399 + 0.5) * 255  # PS3.3 C.11.2.1.2.1
    assert np.abs(decoded[0, inside] - expected).max() <= 1


def test_voi_lut_sequence_is_applied():
    ds = make_dataset(gradient(), bits=8)
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new("LUTData", "US", list(range(255, -1, -1)))  # an inverting lookup table
    ds.VOILUTSequence = [lut]
    decoded = decode_image(to_bytes(ds), "lut.dcm").gray
    np.testing.assert_array_equal(decoded, 255 - gradient())


def test_12_bit_values_in_a_16_bit_container_without_window_get_full_contrast():
    ds = make_dataset(gradient(), bits=16)
    ds.PixelData = (gradient().astype(np.uint16) * 16).tobytes()  # 0..4080 of 65535
    decoded = decode_image(to_bytes(ds), "detector.dcm").gray
    assert (decoded.min(), decoded.max()) == (0, 255)
    assert np.abs(decoded.astype(int) - gradient()).max() <= 1


def test_dicom_is_recognised_by_preamble_or_by_name():
    data = make_dicom(gradient())
    assert looks_like_dicom(data) and looks_like_dicom(b"", "SCAN.DCM")
    assert not looks_like_dicom(b"\x89PNG" + b"\0" * 200, "scan.png")
    assert decode_image(data, "no_extension").source_format == "DICOM"
    # A bare dataset (no preamble, no file meta) is read when its name says DICOM.
    bare = data[128 + 4 :]
    assert decode_image(bare, "bare.dcm").gray.shape == gradient().shape


def test_compressed_frame_larger_than_the_header_is_refused_before_decoding():
    ds = make_dataset(noisy_gray(96, 96))
    ds.compress(JPEG2000Lossless)
    ds.Rows = ds.Columns = 48  # the header lies about the size of the codestream
    with pytest.raises(ImageError, match="claims 96 × 96 pixels but the header says 48 × 48"):
        decode_image(to_bytes(ds), "hostile.dcm")


def test_codestream_size_reads_jpeg_and_jpeg_2000_headers():
    ds = make_dataset(noisy_gray(40, 72), bits=8)
    ds.compress(JPEG2000Lossless)
    assert codestream_size(get_frame(ds.PixelData, 0, number_of_frames=1)) == (72, 40)
    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert codestream_size(get_frame(jpeg.PixelData, 0, number_of_frames=1)) == (100, 100)
    assert codestream_size(b"not a codestream") is None


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",
        "examples_palette.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
    ],
)
def test_pydicom_sample_files_decode(name):
    decoded = decode_file(get_testdata_file(name))
    assert decoded.gray.ndim == 2 and decoded.gray.dtype == np.uint8
    assert decoded.gray.std() > 10  # an image, not a blank
    assert decoded.facts["Size"] == f"{decoded.gray.shape[1]} × {decoded.gray.shape[0]} pixels"


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_every_encoding_of_the_same_mr_gives_the_same_pixels(name):
    reference = decode_file(get_testdata_file("MR_small.dcm")).gray
    np.testing.assert_array_equal(decode_file(get_testdata_file(name)).gray, reference)


def test_real_monochrome1_cr_is_windowed_then_inverted():
    # pydicom's CR samples are 16 x 16 thumbnails: too small for the default limits.
    path = get_testdata_file("6154")
    with pytest.raises(ImageError, match="too small"):
        decode_file(path)
    decoded = decode_file(path, DecodeLimits(min_side=8))
    assert decoded.facts["Modality"] == "CR"
    assert decoded.facts["Photometric interpretation"] == "MONOCHROME1"
    ds = pydicom.dcmread(path)
    windowed = apply_voi_lut(ds.pixel_array, ds)
    low, high = 0, 2**ds.BitsStored - 1
    expected = 255 - np.round((windowed - low) / (high - low) * 255)
    np.testing.assert_allclose(decoded.gray, expected, atol=1)


def test_jpeg_xray_and_its_compressed_16_bit_monochrome1_dicom_decode_alike(cxr4_dir):
    paths = [
        sorted((cxr4_dir / "val" / label).glob("*.jpg"))[0]
        for label in ("NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA", "COVID19")
    ]
    for path, syntax in zip(paths, [JPEG2000Lossless, RLELossless] * 2, strict=True):
        from_jpeg = decode_file(path).gray
        dicom = make_dicom(from_jpeg, bits=16, monochrome1=True, transfer_syntax=syntax)
        from_dicom = decode_image(dicom, path.stem + ".dcm").gray
        assert from_dicom.shape == from_jpeg.shape
        assert np.abs(from_dicom.astype(int) - from_jpeg).mean() <= 1, path.name


def test_shipped_model_gives_a_dicom_the_jpegs_class_and_probabilities(cxr4_dir):
    predictor = Predictor.load(shipped_run_dir())
    for label in predictor.classes:
        path, gray, from_jpeg = first_accepted(predictor, sorted((cxr4_dir / "val" / label
                                                                  ).glob("*.jpg"))[1:])
        # Without a birth date: the pixels are compared here, not the age group the header gives.
        dicom = make_dicom(gray, bits=16, monochrome1=True, transfer_syntax=JPEG2000Lossless,
                           patient=NO_AGE_PATIENT)
        from_dicom = predictor.predict(decode_image(dicom, path.stem + ".dcm"))
        assert max(from_dicom, key=from_dicom.get) == max(from_jpeg, key=from_jpeg.get), path.name
        for name, probability in from_jpeg.items():
            assert from_dicom[name] == pytest.approx(probability, abs=0.02), (path.name, name)


def first_accepted(predictor: Predictor, paths: list[Path]
                   ) -> tuple[Path, np.ndarray, dict[str, float]]:
    """The first of ``paths`` the gate accepts (a few val figures from papers it refuses)."""
    for path in paths:
        gray = decode_file(path).gray
        try:
            return path, gray, predictor.predict(gray)
        except ImageError:
            continue
    raise AssertionError("the gate refused every candidate")


NO_AGE_PATIENT = {key: value for key, value in FAKE_PATIENT.items() if key != "PatientBirthDate"}


def identifier_leaks(text: str) -> list[str]:
    return [value for value in FAKE_PATIENT.values() if value in text]


def dicom_cases(patient: dict[str, str]) -> list[bytes]:
    """A good DICOM and each kind of refused one, all carrying ``patient``'s identifiers."""
    damaged = make_dataset(gradient(), patient=patient)
    del damaged.Rows
    return [
        make_dicom(gradient(), patient=patient),
        make_dicom(np.stack([gradient()] * 2), patient=patient),
        dicom_without_pixels(patient),
        dicom_with_transfer_syntax(JPEGBaseline8Bit, GARBAGE_JPEG, patient),
        dicom_with_transfer_syntax(MPEG2MPML, GARBAGE_JPEG, patient),
        to_bytes(damaged),
    ]


def test_no_patient_identifier_leaves_the_decoder(caplog):
    # Invalid-format copies too: pydicom's validation warnings would echo them if touched.
    bait = {keyword: f"not valid {value}" for keyword, value in FAKE_PATIENT.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the factory warns about the invalid values it writes
        cases = dicom_cases(FAKE_PATIENT) + dicom_cases(bait)
    caplog.clear()  # capture only what decoding emits
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    outcomes = {"decoded": 0, "refused": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for data in cases:
            try:
                decoded = decode_image(data, "cxr.dcm")
            except ImageError as error:
                outcomes["refused"] += 1
                seen += traceback.format_exception(error)
            else:
                outcomes["decoded"] += 1
                seen += [repr(decoded), str(decoded.facts)]
    seen += [str(warning.message) for warning in caught]
    seen.append(caplog.text)
    assert outcomes == {"decoded": 2, "refused": 10}
    everything = "\n".join(seen)
    assert [value for value in FAKE_PATIENT.values() if value in everything] == []
    assert "not valid" not in everything


def test_codestream_that_aborts_gdcm_is_refused_without_killing_the_process():
    # Run apart: if GDCM were used, the uncaught C++ exception would abort the interpreter.
    script = (
        "from model.decode import decode_image\n"
        "from model.errors import ImageError\n"
        "from testkit.bad_inputs import bad_input_corpus\n"
        "data = {n: d for n, d, _ in bad_input_corpus()}['process_aborting_j2k.dcm']\n"
        "try:\n"
        "    decode_image(data, 'scan.dcm')\n"
        "except ImageError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scan.dcm: the pixel data could not be decoded" in result.stdout


def test_multi_valued_transfer_syntax_is_refused_with_a_message():
    # Found by bench/fuzz_decode.py: a trailing backslash makes the UID a list of two values.
    data = make_dicom(gradient())
    corrupt = data.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.1\\", 1)
    assert corrupt != data
    with pytest.raises(ImageError, match="not a still-image encoding"):
        decode_image(corrupt, "scan.dcm")
