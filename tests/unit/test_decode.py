"""The one decode path: image formats, bit depths, orientation, limits and the bad-file corpus."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.decode import DecodedImage, decode_file, decode_image
from model.errors import ImageError
from model.limits import DecodeLimits
from testkit.bad_inputs import EXPECTED_WORDS, bad_input_corpus, encode, noisy_gray, png_header_only


def save(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def gradient(height: int = 48, width: int = 64) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


@pytest.mark.parametrize("image_format", ["PNG", "TIFF", "BMP"])
def test_lossless_8_bit_gray_round_trips_exactly(image_format):
    gray = noisy_gray()
    decoded = decode_image(encode(gray, image_format), f"x.{image_format.lower()}")
    assert decoded.gray.dtype == np.uint8 and decoded.gray.shape == gray.shape
    np.testing.assert_array_equal(decoded.gray, gray)
    assert decoded.source_format == image_format
    assert decoded.facts == {"Size": "80 × 96 pixels"}


@pytest.mark.parametrize("image_format", ["PNG", "TIFF"])
def test_16_bit_full_range_is_scaled_by_its_bit_depth(image_format):
    gray = noisy_gray()
    wide = Image.fromarray(gray.astype(np.uint16) * 257)
    decoded = decode_image(save(wide, image_format), "x")
    np.testing.assert_array_equal(decoded.gray, gray)


def test_16_bit_dark_image_stays_dark_instead_of_being_stretched():
    # Values up to 20000 of 65535 (30% of the range): the exposure is kept, not min/max stretched.
    values = np.tile(np.linspace(0, 20000, 64), (48, 1)).astype(np.uint16)
    decoded = decode_image(save(Image.fromarray(values), "PNG"), "dark.png")
    assert decoded.gray.min() == 0
    assert decoded.gray.max() == round(20000 * 255 / 65535)


def test_12_bit_data_in_a_16_bit_png_is_stretched_to_full_contrast():
    values = np.tile(np.linspace(100, 4000, 64), (48, 1)).astype(np.uint16)
    decoded = decode_image(save(Image.fromarray(values), "PNG"), "detector.png")
    assert (decoded.gray.min(), decoded.gray.max()) == (0, 255)
    assert np.all(np.diff(decoded.gray[0].astype(int)) >= 0)


def test_rgb_becomes_luminance():
    gray = gradient()
    rgb = np.stack([gray, 255 - gray, np.full_like(gray, 60)], axis=-1)
    decoded = decode_image(encode(rgb, "PNG"), "colour.png")
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(decoded.gray, expected)


def test_transparency_is_composited_on_black():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, 20:, 3] = 255  # left half fully transparent
    decoded = decode_image(encode(rgba, "PNG"), "overlay.png")
    assert np.all(decoded.gray[:, :20] == 0)
    assert np.all(decoded.gray[:, 20:] == 200)


def test_palette_image_decodes_to_its_colours_grey_level():
    image = Image.fromarray(noisy_gray()).convert("P")
    decoded = decode_image(save(image, "PNG"), "palette.png")
    np.testing.assert_array_equal(decoded.gray, np.asarray(image.convert("L")))


def test_cmyk_jpeg_decodes_to_grey():
    gray = gradient()
    cmyk = Image.fromarray(gray).convert("CMYK")
    decoded = decode_image(save(cmyk, "JPEG", quality=95), "print.jpg")
    assert decoded.gray.shape == gray.shape and decoded.gray.dtype == np.uint8
    assert np.abs(decoded.gray.astype(int) - gray).mean() < 3


def test_exif_orientation_is_applied():
    gray = np.zeros((40, 60), np.uint8)
    gray[:10, :10] = 255  # bright corner at the top left as stored
    image = Image.fromarray(gray)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    decoded = decode_image(save(image, "JPEG", exif=exif, quality=95), "phone.jpg")
    assert decoded.gray.shape == (60, 40)
    assert decoded.gray[:10, -10:].mean() > 200  # the corner moved to the top right
    assert decoded.gray[:10, :10].mean() < 50


@pytest.mark.parametrize("mode", ["1", "L", "LA", "I", "F", "RGB", "RGBA", "P", "CMYK"])
def test_every_mode_gives_a_2d_uint8_array(mode):
    image = Image.fromarray(noisy_gray()).convert(mode)
    image_format = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    decoded = decode_image(save(image, image_format), f"x.{image_format.lower()}")
    assert isinstance(decoded, DecodedImage)
    assert decoded.gray.shape == (96, 80) and decoded.gray.dtype == np.uint8


@pytest.mark.parametrize(("name", "data", "what"), bad_input_corpus(), ids=list(EXPECTED_WORDS))
def test_every_bad_input_gives_a_specific_readable_message(name, data, what):
    with pytest.raises(ImageError) as caught:
        decode_image(data, name)
    message = str(caught.value)
    assert EXPECTED_WORDS[name] in message, (what, message)
    assert name in message
    assert "Traceback" not in message and "Error" not in message


def test_next_good_input_still_decodes_after_the_bad_corpus():
    for name, data, _ in bad_input_corpus():
        with pytest.raises(ImageError):
            decode_image(data, name)
    assert decode_image(encode(noisy_gray(), "PNG"), "good.png").gray.shape == (96, 80)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    # Truncated pixel data would fail to decode; the size refusal proves decoding never began.
    png = encode(noisy_gray(), "PNG")
    limits = DecodeLimits(max_pixels=1000)
    with pytest.raises(ImageError, match="megapixel limit"):
        decode_image(png[: len(png) // 2], "big.png", limits)


def test_bomb_header_is_refused_from_the_header_alone():
    # The file holds no pixel data: had decoding begun, it would fail as truncated instead.
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(png_header_only(30000, 30000), "bomb.png")


def test_upload_over_the_byte_limit_is_refused_before_parsing():
    data = encode(noisy_gray(), "PNG")
    with pytest.raises(ImageError, match="upload limit"):
        decode_image(data, "scan.png", DecodeLimits(max_upload_bytes=len(data) - 1))


def test_minimum_side_comes_from_the_limits():
    data = encode(noisy_gray(20, 200), "PNG")
    with pytest.raises(ImageError, match="too small"):
        decode_image(data, "strip.png")
    assert decode_image(data, "strip.png", DecodeLimits(min_side=16)).gray.shape == (20, 200)


def test_decode_file_reads_from_disk_and_names_the_file(tmp_path):
    path = tmp_path / "cxr.png"
    path.write_bytes(encode(noisy_gray(), "PNG"))
    assert decode_file(path).gray.shape == (96, 80)
    with pytest.raises(ImageError, match="missing.png could not be read"):
        decode_file(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="cxr.png is .* upload limit"):
        decode_file(path, DecodeLimits(max_upload_bytes=10))


def test_unnamed_input_is_called_the_file():
    with pytest.raises(ImageError, match="^the file is empty"):
        decode_image(b"")
