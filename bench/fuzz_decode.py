"""Fuzz the one decode path with mutated PNG, JPEG, TIFF and DICOM files for a set time.

    python -m bench.fuzz_decode [--seconds 60] [--seed 0]

Every input must either decode to an (H, W) uint8 image or raise ImageError with a message;
anything else (another exception, a wrong output) is a bug. Mutations of valid seeds: byte
flips, "interesting" values (0, 0xFF, 0x7F, 0x80, huge lengths), truncations, inserted and
duplicated chunks, and splices of two seeds. Prints the first tracebacks, then one summary
line; exits 1 if any input escaped as something other than ImageError.
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from model.decode import decode_image
from model.errors import ImageError
from testkit.bad_inputs import encode, noisy_gray
from testkit.dicom_factory import make_dicom

TRACEBACKS_SHOWN = 5
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff", b"\x00\x00", b"\xff\xff\xff\x7f"]


def save(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """Small valid files of every kind the decoder reads, named with their usual extension."""
    gray = noisy_gray(64, 48)
    return {
        "gray.png": encode(gray, "PNG"),
        "wide.png": save(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "rgba.png": save(Image.fromarray(gray).convert("RGBA"), "PNG"),
        "photo.jpg": encode(gray, "JPEG"),
        "print.jpg": save(Image.fromarray(gray).convert("CMYK"), "JPEG"),
        "scan.tif": save(Image.fromarray(gray.astype(np.uint16) * 16), "TIFF"),
        "plain.dcm": make_dicom(gray, bits=12, monochrome1=True, window=(2048, 4096)),
        "rle.dcm": make_dicom(gray, transfer_syntax=RLELossless),
        "j2k.dcm": make_dicom(gray, monochrome1=True, transfer_syntax=JPEG2000Lossless),
        "jpeg.dcm": Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")).read_bytes(),
        "jpegls.dcm": Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")).read_bytes(),
    }


def flip(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    value = rng.choice(INTERESTING)
    position = rng.randrange(len(data))
    return data[:position] + value + data[position + len(value) :]


def truncate(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def insert(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    chunk = rng.randbytes(rng.randint(1, 64))
    position = rng.randrange(len(data))
    return data[:position] + chunk + data[position:]


def duplicate(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 256)]
    position = rng.randrange(len(data))
    return data[:position] + chunk + data[position:]


def splice(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    other = rng.choice(seeds)
    return data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]


MUTATIONS: list[Callable[[bytes, random.Random, list[bytes]], bytes]] = [
    flip, overwrite, truncate, insert, duplicate, splice,
]  # fmt: skip


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    for _ in range(rng.randint(1, 3)):
        if data:
            data = rng.choice(MUTATIONS)(data, rng, seeds)
    return data


def fuzz(seconds: float, seed: int) -> int:
    """Run until ``seconds`` have passed; return the number of uncaught failures."""
    rng = random.Random(seed)
    seeds = seed_files()
    names, contents = list(seeds), list(seeds.values())
    outcomes: Counter[str] = Counter()
    slowest = (0.0, "")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = rng.choice(names)
        data = mutate(seeds[name], rng, contents)
        start = time.perf_counter()
        try:
            decoded = decode_image(data, name)
        except ImageError:
            outcomes["refused"] += 1
        except Exception:
            outcomes["uncaught"] += 1
            if outcomes["uncaught"] <= TRACEBACKS_SHOWN:
                print(f"--- uncaught on a mutated {name} ({len(data)} bytes):")
                traceback.print_exc()
        else:
            gray = decoded.gray
            ok = gray.ndim == 2 and gray.dtype == np.uint8
            outcomes["decoded" if ok else "uncaught"] += 1
            if not ok:
                print(f"--- wrong output on a mutated {name}: {gray.shape} {gray.dtype}")
        elapsed = time.perf_counter() - start
        slowest = max(slowest, (elapsed, name))
    tried = sum(outcomes.values())
    print(
        f"fuzz_decode: {tried} inputs in {seconds:.0f} s ({tried / seconds:.0f}/s), "
        f"{len(seeds)} seeds: {outcomes['decoded']} decoded, "
        f"{outcomes['refused']} refused with ImageError, {outcomes['uncaught']} uncaught; "
        f"slowest input {slowest[0] * 1000:.0f} ms (a mutated {slowest[1]})"
    )
    return outcomes["uncaught"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # pydicom logs each failed decode attempt with a traceback, and both libraries warn on
    # malformed headers: expected here, and not what this benchmark measures.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    sys.exit(1 if fuzz(args.seconds, args.seed) else 0)


if __name__ == "__main__":
    main()
