"""What travels between the model server and its clients, in one place (no Ray, no TensorFlow).

``POST /predict`` takes a file's bytes, as an upload would give them. The app has already
decoded its image (to show it), so it sends the decoded grey image as a lossless 8-bit PNG
with the header facts in ``DECODED_HEADER``: the server rebuilds the same ``DecodedImage`` and
runs the same ``Predictor.admit`` on it, without decoding the original file twice. A heatmap
comes back as an 8-bit PNG, base64; the overlay quantises it to the same 256 levels.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

from model.age_groups import AGE_GROUPS, AgeReading
from model.decode import DecodedImage

# {"source_format", "facts", "age_group", "age_problem"} of an image sent decoded
DECODED_HEADER = "X-CXR-Decoded"
AGE_GROUP_PARAM = "age_group"  # ?age_group=adult|child: a person's choice for the image
HEATMAP_KEY = "heatmap"  # the base64 PNG, with ?heatmap=1
HEATMAP_CLASS_KEY = "heatmap_class"  # the class it explains
ERROR_KEY = "error"  # the plain message of a 4xx answer


def png(gray: np.ndarray) -> bytes:
    """A 2-D uint8 image as a lossless PNG."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decoded_header(image: DecodedImage) -> str:
    """The facts of a decoded image that the accept/refuse path reads (format, DICOM header)."""
    return json.dumps({"source_format": image.source_format, "facts": dict(image.facts),
                       "age_group": image.age_group, "age_problem": image.age_problem})


def with_header_facts(image: DecodedImage, header: str) -> DecodedImage:
    """A decoded PNG given back the source format and facts its sender decoded it with.

    Raises ValueError for a header that is not the JSON ``decoded_header`` writes.
    """
    content = json.loads(header)
    if not (isinstance(content, dict) and isinstance(content.get("source_format"), str)
            and isinstance(content.get("facts"), dict)
            and all(isinstance(value, str) for value in content["facts"].values())
            and content.get("age_group") in (None, *AGE_GROUPS)
            and isinstance(content.get("age_problem"), str | None)):
        raise ValueError(f"{DECODED_HEADER} must hold a source_format, facts and an age group "
                         f"({', '.join(AGE_GROUPS)} or null) and an age problem (text or null)")
    return DecodedImage(gray=image.gray, source_format=content["source_format"],
                        facts=content["facts"], age_group=content.get("age_group"),
                        age_problem=content.get("age_problem"))


def age_reading(answer: dict) -> AgeReading | None:
    """The age group a JSON answer (a model.predict line's fields) was read for."""
    if "age_group" not in answer:
        return None
    return AgeReading(answer["age_group"], answer["age_group_source"],
                      answer.get("age_group_probability"),
                      tuple(answer.get("age_group_notes", ())),
                      tuple(answer.get("age_group_not_assessed", ())))


def heatmap_text(heatmap: np.ndarray) -> str:
    """A [0, 1] heatmap as a base64 8-bit PNG (the overlay's own quantisation)."""
    levels = np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    return base64.b64encode(png(levels)).decode("ascii")


def heatmap_from_text(text: str) -> np.ndarray:
    """The heatmap ``heatmap_text`` wrote, float32 in [0, 1]."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image, dtype=np.float32) / 255.0
