"""The bad-file corpus: what reaches an upload box in a hospital, generated, never stored.

Decoder, CLI and app tests import ``bad_input_corpus()``; each file must give an ImageError
whose message contains ``EXPECTED_WORDS[name]``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEGBaseline8Bit

from testkit.dicom_factory import make_dataset, make_dicom, to_bytes

# Words each file's message must contain: the part of the message that says what is wrong.
EXPECTED_WORDS: dict[str, str] = {
    "empty.png": "empty",
    "truncated.jpg": "damaged",
    "truncated.png": "damaged",
    "random_bytes.png": "not an image",
    "web_page.jpg": "web page",
    "notes.png": "text file",
    "one_pixel.png": "too small",
    "claims_30000x30000.png": "megapixel",
    "claims_10000x6000.png": "10000 × 6000",
    "no_pixel_data.dcm": "no pixel data",
    "broken_transfer_syntax.dcm": "could not be decoded",
    "video_transfer_syntax.dcm": "not a still-image encoding",
    "process_aborting_j2k.dcm": "could not be decoded",
    "multi_frame.dcm": "frames",
}


def noisy_gray(height: int = 96, width: int = 80, seed: int = 0) -> np.ndarray:
    """A gradient with noise, so encoders produce enough bytes to cut in the middle."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 200, width)[None, :] + np.zeros((height, 1))
    return np.clip(gradient + rng.normal(0, 20, (height, width)), 0, 255).astype(np.uint8)


def encode(gray: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, image_format)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG whose header claims width x height but holds almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def dicom_without_pixels(patient: dict[str, str] | None = None) -> bytes:
    ds = make_dataset(noisy_gray(), patient=patient)
    del ds.PixelData
    return to_bytes(ds)


def dicom_with_transfer_syntax(
    syntax: str,
    payload: bytes,
    patient: dict[str, str] | None = None,
    *,
    gray: np.ndarray | None = None,
    bits: int = 8,
) -> bytes:
    """A DICOM that claims ``syntax`` but encapsulates ``payload`` as its only frame."""
    gray = noisy_gray() if gray is None else gray
    ds = make_dataset(gray, bits=bits, patient=patient)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([payload])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


# The first 60 bytes of a fuzzed JPEG 2000 codestream (bench/fuzz_decode.py) whose corrupt
# SIZ segment makes GDCM abort the whole process with an uncaught C++ exception.
GDCM_ABORTING_J2K = bytes.fromhex(
    "ff4fff510029000000000030000000400000000000000000000000300000"
    "008af8848696df317d2a4af9e4d6fca9d30124221579a10b0946d52dca0e"
)
GARBAGE_JPEG = b"\xff\xd8" + b"these bytes are not a JPEG codestream " * 8


def bad_input_corpus() -> list[tuple[str, bytes, str]]:
    """(file name, bytes, what it is) for every kind of bad upload we refuse."""
    jpeg = encode(noisy_gray(), "JPEG")
    png = encode(noisy_gray(), "PNG")
    corpus = [
        ("empty.png", b"", "zero bytes"),
        ("truncated.jpg", jpeg[: len(jpeg) * 6 // 10], "a JPEG cut at 60% of its length"),
        ("truncated.png", png[: len(png) * 6 // 10], "a PNG cut at 60% of its length"),
        (
            "random_bytes.png",
            np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "random bytes named .png",
        ),
        (
            "web_page.jpg",
            b"<!DOCTYPE html>\n<html><head><title>X-ray</title></head>"
            b"<body><img src='cxr.jpg'></body></html>\n",
            "an HTML page named .jpg",
        ),
        ("notes.png", b"Patient positioned PA, full inspiration.\n" * 4, "plain text named .png"),
        ("one_pixel.png", encode(np.zeros((1, 1), np.uint8), "PNG"), "a 1x1 image"),
        ("claims_30000x30000.png", png_header_only(30000, 30000), "a decompression-bomb header"),
        ("claims_10000x6000.png", png_header_only(10000, 6000), "60 megapixels, over our limit"),
        ("no_pixel_data.dcm", dicom_without_pixels(), "a DICOM without pixel data"),
        (
            "broken_transfer_syntax.dcm",
            dicom_with_transfer_syntax(JPEGBaseline8Bit, GARBAGE_JPEG),
            "a DICOM claiming JPEG baseline that holds garbage fragments",
        ),
        (
            "video_transfer_syntax.dcm",
            dicom_with_transfer_syntax(MPEG2MPML, GARBAGE_JPEG),
            "a DICOM whose transfer syntax is MPEG-2 video",
        ),
        (
            "process_aborting_j2k.dcm",
            dicom_with_transfer_syntax(
                JPEG2000Lossless, GDCM_ABORTING_J2K, gray=noisy_gray(64, 48), bits=16
            ),
            "a DICOM whose corrupt JPEG 2000 header made GDCM abort the process",
        ),
        (
            "multi_frame.dcm",
            make_dicom(np.stack([noisy_gray(seed=seed) for seed in range(3)])),
            "a three-frame DICOM",
        ),
    ]
    assert [name for name, _, _ in corpus] == list(EXPECTED_WORDS)
    return corpus
