"""Images that are not chest X-rays, generated without network, for the out-of-distribution gate.

Natural photos and textures (scikit-image's sample images, with crops, flips and rescales),
CT, MR, ultrasound and nuclear-medicine images (pydicom's bundled test files, as DICOM and
as windowed PNG slices), rendered documents and screenshots, noise, blank images and
gradients. Every sample is an encoded file (bytes and a name), so it goes through the same
decoder as an upload. Deterministic for a given seed.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.decode import decode_image
from model.errors import ImageError

# scikit-image samples bundled with the wheel (others need a download).
SKIMAGE_SOURCES = {
    "photo": ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
              "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "microaneurysms",
              "moon", "retina", "rocket", "stereo_motorcycle"),
    "pattern": ("binary_blobs", "checkerboard", "colorwheel", "horse", "logo"),
    "document": ("page", "text"),
}
SLICE_DICOMS = ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
                "examples_overlay.dcm", "liver_1frame.dcm")
# (centre, width) as a fraction of each slice's value range: soft tissue, lung-like, bone-like.
WINDOWS = ((0.5, 1.0), (0.3, 0.4), (0.7, 0.3))
WORDS = ("patient", "report", "invoice", "total", "the", "of", "and", "results", "date",
         "account", "summary", "section", "table", "value", "name", "address", "note", "page",
         "clinic", "review", "order", "status", "amount", "service", "reference", "signed")


@dataclass(frozen=True)
class OodSample:
    category: str  # photo, pattern, medical, document, screenshot, noise, blank, gradient
    name: str  # a file name whose suffix says the format
    data: bytes


def encode(pixels: np.ndarray, name: str) -> bytes:
    """uint8 gray, RGB or RGBA pixels -> PNG or JPEG bytes, by the name's suffix."""
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if name.endswith(".jpg"):
        image.convert("RGB" if image.mode in ("RGBA", "RGB") else "L").save(
            buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def as_uint8(image: np.ndarray) -> np.ndarray:
    """Any scikit-image sample (bool, float in [0, 1], uint8) -> uint8."""
    if image.dtype == np.uint8:
        return image
    scaled = image.astype(np.float64)
    scaled = (scaled - scaled.min()) / max(np.ptp(scaled), 1e-9)
    return np.round(255 * scaled).astype(np.uint8)


def variants(image: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """The image, mirrored, three random crops and a downscaled copy."""
    height, width = image.shape[:2]
    yield "full", image
    yield "mirror", image[:, ::-1].copy()
    for index in range(3):
        fraction = rng.uniform(0.45, 0.8)
        crop_h, crop_w = max(32, int(height * fraction)), max(32, int(width * fraction))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        yield f"crop{index}", image[top:top + crop_h, left:left + crop_w].copy()
    small = Image.fromarray(image).resize((max(32, width // 3), max(32, height // 3)))
    yield "small", np.asarray(small)


def photos(rng: np.random.Generator) -> Iterator[OodSample]:
    from skimage import data

    for category, sources in SKIMAGE_SOURCES.items():
        for source in sources:
            image = getattr(data, source)()
            image = as_uint8(np.asarray(image[0] if isinstance(image, tuple) else image))
            for variant, pixels in variants(image, rng):
                suffix = ".png" if pixels.ndim == 3 and pixels.shape[2] == 4 else ".jpg"
                name = f"{source}_{variant}{suffix}"
                yield OodSample(category, name, encode(pixels, name))
    faces = data.lfw_subset()
    for index in range(0, 40, 2):
        face = Image.fromarray(as_uint8(faces[index])).resize((100, 100), Image.BICUBIC)
        yield OodSample("photo", f"face{index}.png", encode(np.asarray(face), "face.png"))


def medical(rng: np.random.Generator) -> Iterator[OodSample]:
    """Every bundled single-frame DICOM image, plus CT/MR slices windowed three ways as PNG."""
    import pydicom
    from pydicom.data import get_testdata_file

    # The files in the wheel; get_testdata_files would also try to download others.
    bundled = Path(get_testdata_file("CT_small.dcm")).parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about its deliberately odd test files
        for path in sorted(bundled.glob("*.dcm")):
            data = path.read_bytes()
            try:
                decode_image(data, path.name)
            except ImageError:  # reports, multi-frame, tiny and broken files: not images here
                continue
            yield OodSample("medical", path.name, data)
        for file_name in SLICE_DICOMS:
            values = pydicom.dcmread(get_testdata_file(file_name)).pixel_array.astype(float)
            low, span = values.min(), max(np.ptp(values), 1.0)
            for index, (centre, width) in enumerate(WINDOWS):
                scaled = ((values - low) / span - centre + width / 2) / width
                pixels = np.round(255 * np.clip(scaled, 0, 1)).astype(np.uint8)
                name = f"{Path(file_name).stem}_window{index}.png"
                yield OodSample("medical", name, encode(pixels, name))
    from skimage.data import shepp_logan_phantom

    phantom = as_uint8(shepp_logan_phantom())
    for variant, pixels in variants(phantom, rng):
        yield OodSample("medical", f"phantom_{variant}.png", encode(pixels, "phantom.png"))


@functools.cache
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words))


def document(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A page of text: a heading, paragraphs, sometimes a ruled table."""
    width, height = int(rng.integers(400, 900)), int(rng.integers(500, 1100))
    paper, ink = (30, 230) if dark else (int(rng.integers(235, 256)), int(rng.integers(0, 60)))
    page = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(11, 22))
    y = int(rng.integers(20, 60))
    draw.text((30, y), _sentence(rng, 3).title(), fill=ink, font=_font(size + 8))
    y += size + 30
    table_at = rng.integers(3, 12) if rng.random() < 0.5 else -1
    for line in range(200):
        if y > height - 40:
            break
        if line == table_at:
            rows, columns = int(rng.integers(3, 7)), int(rng.integers(2, 5))
            cell_w, cell_h = (width - 60) // columns, size + 12
            for row in range(rows):
                for column in range(columns):
                    box = (30 + column * cell_w, y + row * cell_h,
                           30 + (column + 1) * cell_w, y + (row + 1) * cell_h)
                    draw.rectangle(box, outline=ink)
                    draw.text((box[0] + 4, box[1] + 4), _sentence(rng, 1), fill=ink,
                              font=_font(size))
            y += rows * cell_h + 20
            continue
        text = _sentence(rng, max(2, (width - 60) // (size * 4)))
        draw.text((30, y), text, fill=ink, font=_font(size))
        y += int(size * rng.uniform(1.3, 2.0))
    return np.asarray(page)


def screenshot(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A desktop-like window: title bar, sidebar, buttons, text fields and a bar chart."""
    width, height = int(rng.integers(640, 1280)), int(rng.integers(400, 800))
    background = (40, 42, 48) if dark else (245, 246, 248)
    text = (220, 220, 220) if dark else (30, 30, 30)
    accent = tuple(int(c) for c in rng.integers(40, 220, 3))
    shot = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, width, 32), fill=accent)
    draw.text((12, 8), _sentence(rng, 3).title(), fill=(255, 255, 255), font=_font(14))
    sidebar = int(rng.integers(120, 220))
    draw.rectangle((0, 32, sidebar, height), fill=tuple(max(0, c - 20) for c in background))
    for item in range(int(rng.integers(4, 10))):
        draw.text((14, 50 + item * 30), _sentence(rng, 1).title(), fill=text, font=_font(13))
    for button in range(int(rng.integers(2, 5))):
        left = sidebar + 20 + button * 120
        draw.rounded_rectangle((left, 50, left + 100, 80), radius=6, fill=accent)
        draw.text((left + 12, 57), _sentence(rng, 1), fill=(255, 255, 255), font=_font(13))
    draw.rectangle((sidebar + 20, 100, width - 20, 130), outline=text)
    draw.text((sidebar + 28, 107), _sentence(rng, 4), fill=text, font=_font(13))
    chart_top, chart_bottom = 160, height - 30
    bars = int(rng.integers(4, 12))
    bar_w = max(4, (width - sidebar - 60) // (2 * bars))
    for bar in range(bars):
        left = sidebar + 30 + bar * 2 * bar_w
        top = int(rng.integers(chart_top, chart_bottom - 10))
        draw.rectangle((left, top, left + bar_w, chart_bottom), fill=accent)
    draw.line((sidebar + 25, chart_bottom, width - 25, chart_bottom), fill=text, width=2)
    return np.asarray(shot)


def rendered(rng: np.random.Generator) -> Iterator[OodSample]:
    for index in range(40):
        name = f"document{index}.{'png' if index % 2 else 'jpg'}"
        yield OodSample("document", name, encode(document(rng, dark=index % 8 == 7), name))
    for index in range(30):
        name = f"screenshot{index}.png"
        yield OodSample("screenshot", name, encode(screenshot(rng, dark=index % 3 == 2), name))


def _smooth(noise: np.ndarray, scale: int) -> np.ndarray:
    """Noise blurred to blobs about ``scale`` pixels across (upsampled from a coarse grid)."""
    height, width = noise.shape
    coarse = noise[: max(2, height // scale), : max(2, width // scale)]
    return np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((width, height),
                                                                         Image.BICUBIC))


def noise_images(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    size = (256, 256)
    for sigma in (10, 30, 60, 90):
        yield f"gaussian_sigma{sigma}", rng.normal(128, sigma, size)
        yield f"gaussian_sigma{sigma}_dark", rng.normal(60, sigma / 2, size)
    yield "uniform", rng.uniform(0, 255, size)
    yield "uniform_large", rng.uniform(0, 255, (700, 900))
    yield "uniform_colour", rng.uniform(0, 255, (*size, 3))
    for density in (0.05, 0.2, 0.5):
        yield f"salt_pepper{density}", np.where(rng.random(size) < density,
                                                 255.0 * (rng.random(size) < 0.5), 128.0)
    for scale in (2, 4, 8, 16, 32, 64):
        yield f"smooth_noise{scale}", 128 + 60 * _smooth(rng.normal(0, 1, size), scale)
        yield f"smooth_noise{scale}_textured", (128 + 50 * _smooth(rng.normal(0, 1, size), scale)
                                                + rng.normal(0, 15, size))
    yield "speckle", 128 * rng.exponential(1.0, size)
    yield "binary_noise", 255.0 * (rng.random(size) < 0.5)


def blank_images(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    for level in (0, 1, 64, 128, 200, 255):
        yield f"constant{level}", np.full((300, 240), level, float)
    for level in (20, 128, 240):
        yield f"near_constant{level}", level + rng.normal(0, 1.0, (300, 240))
    yield "constant_colour", np.broadcast_to(np.array([30.0, 120.0, 200.0]), (200, 200, 3))
    yield "black_with_speck", np.pad(np.full((4, 4), 255.0), 98)


def gradient_images(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    rows, cols = np.mgrid[0:1:256j, 0:1:256j]
    radius = np.hypot(rows - 0.5, cols - 0.5) / np.sqrt(0.5)
    yield "horizontal", 255 * cols
    yield "vertical", 255 * rows
    yield "vertical_inverted", 255 * (1 - rows)
    yield "diagonal", 127.5 * (rows + cols)
    yield "radial_bright_centre", 255 * (1 - radius)
    yield "radial_dark_centre", 255 * radius
    yield "vignette", 255 * np.clip(1.4 - 1.5 * radius ** 2, 0, 1)
    for period in (4, 16, 64):
        yield f"stripes{period}", 127.5 + 127.5 * np.sin(2 * np.pi * cols * 256 / period)
        yield f"rings{period}", 127.5 + 127.5 * np.sin(2 * np.pi * radius * 256 / period)
    yield "two_tone", np.where(cols < 0.5, 40.0, 210.0)
    yield "colour_ramp", np.stack([255 * cols, 255 * rows, 255 * (1 - cols)], axis=-1)
    yield "noisy_ramp", 255 * cols + rng.normal(0, 8, cols.shape)
    yield "low_contrast_ramp", 120 + 12 * rows


def synthetic(rng: np.random.Generator) -> Iterator[OodSample]:
    generators: dict[str, Callable[[np.random.Generator], Iterator[tuple[str, np.ndarray]]]] = {
        "noise": noise_images, "blank": blank_images, "gradient": gradient_images,
    }
    for category, generate in generators.items():
        for name, values in generate(rng):
            pixels = np.clip(np.round(values), 0, 255).astype(np.uint8)
            yield OodSample(category, f"{name}.png", encode(pixels, ".png"))


def ood_corpus(seed: int = 0) -> list[OodSample]:
    """The whole non-chest-X-ray set, in a fixed order."""
    rng = np.random.default_rng(seed)
    return [*photos(rng), *medical(rng), *rendered(rng), *synthetic(rng)]
