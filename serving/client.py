"""The model server's client: the ``Classifier`` (model.classifier) answered over HTTP.

With $CXR_MODEL_URL set, the app holds a ``ModelClient`` where it would hold a ``Predictor``
(webapp.resources): both are a ``Classifier``, so the pages, model.batch and the PACS path do
not know which one they have, and the app process never imports TensorFlow. Every request carries
the server's token ($CXR_MODEL_TOKEN). Every result names the model of the answer that produced
it, and when an answer names another model than the metadata held here (the server restarted on
another run directory), the metadata is read again. A server that cannot be reached, answers
too slowly, refuses the token or fails gives ``ModelUnavailable`` with a plain message; the
caller keeps the upload and offers to try again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from model.age_groups import AgeReading, age_group_index, known_age
from model.decode import DecodedImage
from model.errors import ImageError, ModelLoadError
from model.explanation import Explanation
from model.prediction import Prediction
from model.run_dir import METADATA_FILE, RunFileError, parse_metadata
from records.settings import MODEL_TOKEN_ENV
from serving.wire import (
    AGE_GROUP_PARAM,
    DECODED_HEADER,
    ERROR_KEY,
    HEATMAP_CLASS_KEY,
    HEATMAP_KEY,
    age_reading,
    decoded_header,
    heatmap_from_text,
    png,
)

TIMEOUT_SECONDS = 30.0  # one request: a cold replica or a busy cluster, not a dead one
CONCURRENT_REQUESTS = 8  # a batch's images in flight at once, for the server to batch
REFUSED = 422  # the image was refused or unreadable: the message is the app's own
UNAUTHORISED = 401  # no token, or not the server's


class ModelUnavailable(ModelLoadError):
    """The model server cannot answer now; the message says so plainly, and nothing is lost."""


class ModelClient:
    """A model server at ``url`` standing in for a loaded ``Predictor`` (a ``Classifier``)."""

    def __init__(self, url: str, token: str | None = None,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._authorization = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._reading = threading.Lock()
        self._read_metadata()

    def _read_metadata(self) -> None:
        try:
            metadata = parse_metadata(self._request("/metadata"), Path(METADATA_FILE))
        except RunFileError as error:
            raise ModelLoadError(f"the model server at {self.url} describes its model in a "
                                 f"way this app cannot read: {error}") from error
        self.metadata, self.classes, self.version = (metadata, list(metadata.classes),
                                                     metadata.version)

    def _follow(self, answer: dict) -> None:
        """Read the metadata again if ``answer`` came from another model than it describes."""
        with self._reading:
            if answer["model"] != self.version:
                self._read_metadata()

    def admit(self, image: DecodedImage) -> DecodedImage:
        """Nothing to check here: the server runs the whole accept/refuse path on the image."""
        return image

    def known_age(self, image: DecodedImage, given: str | None) -> AgeReading | None:
        """As Predictor.known_age: a person's choice, else the image's DICOM header's."""
        reading = known_age(image.age_group, given, image.age_problem)
        if reading is not None and reading.group is not None and self.metadata.age_heads:
            age_group_index(reading.group, self.metadata.age_heads)
        return reading

    def classify(
        self, admitted: Sequence[DecodedImage | ImageError],
        known_age: Sequence[AgeReading | None] | None = None,
    ) -> list[Prediction]:
        """As Predictor.classify, on the server: each image's Prediction, or the server's
        refusal; refusals given pass through in place. Sent a few at a time, so that the
        server batches them."""
        known = list(known_age) if known_age is not None else [None] * len(admitted)

        def classified(item: DecodedImage | ImageError, age: AgeReading | None) -> Prediction:
            if isinstance(item, ImageError):
                return Prediction.refused(str(item), self.version)
            try:
                return self._prediction(self._predict(item, _given(age)))
            except ImageError as refusal:
                return Prediction.refused(str(refusal), self.version)

        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
            return list(pool.map(classified, admitted, known))

    def explain(self, image: DecodedImage, class_name: str | None = None,
                age_group: str | None = None) -> Explanation:
        """Probabilities and the Grad-CAM of ``class_name`` (default: the predicted class)."""
        if class_name is not None and class_name not in self.classes:
            raise ValueError(f"unknown class {class_name!r}; the model knows {self.classes}")
        answer = self._predict(image, {"heatmap": "1",
                                       **({"class": class_name} if class_name else {}),
                                       **_given(self.known_age(image, age_group))})
        return Explanation(prediction=self._prediction(answer),
                           class_name=answer[HEATMAP_CLASS_KEY],
                           heatmap=heatmap_from_text(answer[HEATMAP_KEY]))

    def _prediction(self, answer: dict) -> Prediction:
        """A JSON answer (a model.predict line's fields) as the value callers pass on, named for
        the model that gave it (the server may have switched since the metadata was read)."""
        return Prediction.of(answer["probabilities"], answer["model"], age_reading(answer),
                             answer.get("familiar"), answer.get("validated_at_site"))

    def _predict(self, image: DecodedImage, query: dict[str, str] | None = None) -> dict:
        """POST the decoded image; ImageError with the server's message if it refuses it."""
        path = "/predict" + (f"?{urlencode(query)}" if query else "")
        answer = self._request(path, png(image.gray), {DECODED_HEADER: decoded_header(image),
                                                       "Content-Type": "image/png"})
        self._follow(answer)
        return answer

    def _request(self, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> dict:
        request = Request(self.url + path, data=body,
                          headers={**self._authorization, **(headers or {})},
                          method="GET" if body is None else "POST")
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except HTTPError as error:
            message = _error_message(error)
            if error.code == REFUSED:
                raise ImageError(message) from error
            if error.code == UNAUTHORISED:
                raise ModelUnavailable(
                    f"The model server ({self.url}) refused this app's token: ${MODEL_TOKEN_ENV} "
                    "must be the server's. The image is kept: ask IT to check it.") from error
            raise ModelUnavailable(f"The model server could not analyse the image "
                                   f"(HTTP {error.code}: {message}). The image is kept: try "
                                   "again, or ask IT to look at the model server.") from error
        except (TimeoutError, URLError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            why = (f"it did not answer within {self.timeout:g} s"
                   if isinstance(reason, TimeoutError) else f"it cannot be reached: {reason}")
            raise ModelUnavailable(self._unavailable(why)) from error

    def _unavailable(self, why: str) -> str:
        return (f"The model server ({self.url}) is not answering: {why}. The image is kept: "
                "try again in a moment, or ask IT to check the model server.")


def _given(age: AgeReading | None) -> dict[str, str]:
    """The query naming a person's choice of age group; the header's travels with the image."""
    return {AGE_GROUP_PARAM: age.group} if age is not None and age.source == "given" else {}


def _error_message(error: HTTPError) -> str:
    """The plain message of a server's JSON error answer, else its status text."""
    try:
        return str(json.loads(error.read())[ERROR_KEY])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason or "no message"
