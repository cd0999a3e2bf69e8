"""The Ray Serve deployment: one ``Predictor`` per replica, requests batched by ``@serve.batch``.

Every answer is JSON: 200 with the fields of a ``python -m model.predict`` line (less "file"),
422 with the app's own message for an image it refuses or cannot read, 413 over the upload
limit, 400 for a request that is not one; a failure of ours is logged here and answered with a
plain 500 message, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from model.age_groups import AgeReading
from model.decode import DecodedImage, decode_image
from model.errors import ImageError
from model.limits import DEFAULT_LIMITS, check_upload_size
from model.prediction import Prediction
from serving.wire import (
    AGE_GROUP_PARAM,
    DECODED_HEADER,
    ERROR_KEY,
    HEATMAP_CLASS_KEY,
    HEATMAP_KEY,
    heatmap_text,
    with_header_facts,
)

MAX_BATCH = 16  # images per forward pass; a 2-core replica is past its best beyond this
BATCH_WAIT_SECONDS = 0.01  # how long a request waits for others to share its pass
MAX_ONGOING = 64  # requests a replica queues, so that batches can fill under load
logger = logging.getLogger("ray.serve")


class BadRequest(ValueError):
    """A request the server cannot take: its message says what to change."""


def _answer(status: int, content: dict) -> JSONResponse:
    return JSONResponse(content, status_code=status)


@serve.deployment(max_ongoing_requests=MAX_ONGOING, ray_actor_options={"num_cpus": 1})
class ModelServer:
    """``GET /healthz``, ``GET /metadata`` and ``POST /predict[?heatmap=1[&class=NAME]]``."""

    def __init__(self, run_dir: str, replicas: int) -> None:
        from model.predictor import Predictor  # TensorFlow only in the replica

        self.predictor = Predictor.load(Path(run_dir))
        self.predictor.warm_up()
        self.replicas = replicas

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            return await self._route(request)
        except BadRequest as error:
            return _answer(400, {ERROR_KEY: str(error)})
        except Exception:  # the request's failure, not the replica's: log it, answer plainly
            logger.exception("prediction failed")
            return _answer(500, {ERROR_KEY: "The model server could not analyse this image "
                                            "(an internal error, logged on the server)."})

    async def _route(self, request: Request) -> JSONResponse:
        path, method = request.url.path.rstrip("/"), request.method
        if path == "/healthz" and method == "GET":
            return _answer(200, {"model": self.predictor.version, "replicas": self.replicas})
        if path == "/metadata" and method == "GET":
            return _answer(200, self.predictor.metadata.to_dict())
        if path == "/predict" and method == "POST":
            return await self._predict(request)
        return _answer(404, {ERROR_KEY: f"no {method} {path or '/'} here: GET /healthz, "
                                        "GET /metadata or POST /predict"})

    async def _predict(self, request: Request) -> JSONResponse:
        size, data = await _body_within_limit(request)
        if data is None:
            return _answer(413, {ERROR_KEY: _too_large(size)})
        want_heatmap = request.query_params.get("heatmap", "0") in ("1", "true")
        class_name = request.query_params.get("class")
        given = request.query_params.get(AGE_GROUP_PARAM)
        if class_name is not None and class_name not in self.predictor.classes:
            raise BadRequest(f"unknown class {class_name!r}; the model knows "
                             f"{', '.join(self.predictor.classes)}")
        try:
            image = await asyncio.to_thread(self._decode, data,
                                            request.headers.get(DECODED_HEADER))
            known = self._known_age(image, given)
            if want_heatmap:
                return _answer(200, await asyncio.to_thread(self._explain, image, class_name,
                                                            given))
            outcome = await self._classify((image, known))
        except ImageError as refusal:
            return _answer(422, {ERROR_KEY: str(refusal)})
        if isinstance(outcome, ImageError):
            return _answer(422, {ERROR_KEY: str(outcome)})
        return _answer(200, outcome.json_fields())

    def _known_age(self, image: DecodedImage, given: str | None) -> AgeReading | None:
        try:
            return self.predictor.known_age(image, given)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @staticmethod
    def _decode(data: bytes, header: str | None) -> DecodedImage:
        image = decode_image(data)
        if header is None:
            return image
        try:
            return with_header_facts(image, header)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_SECONDS)
    async def _classify(self, requests: list[tuple[DecodedImage, AgeReading | None]]
                        ) -> list[Prediction | ImageError]:
        """The app's accept/refuse path for the requests that arrived together, one pass."""
        outcomes = await asyncio.to_thread(self._gated, requests)
        return [(outcome if isinstance(outcome, ImageError)
                 else self.predictor.prediction(outcome, age, familiar))
                for outcome, age, familiar in outcomes]

    def _gated(self, requests: list[tuple[DecodedImage, AgeReading | None]]) -> list:
        admitted: list = []
        for image, _ in requests:
            try:
                admitted.append(self.predictor.admit(image))
            except ImageError as refusal:
                admitted.append(refusal)
        return self.predictor.gated_familiar(admitted, [known for _, known in requests])

    def _explain(self, image: DecodedImage, class_name: str | None, given: str | None) -> dict:
        explanation = self.predictor.explain(image, class_name, given)
        return {**explanation.prediction.json_fields(),
                HEATMAP_KEY: heatmap_text(explanation.heatmap),
                HEATMAP_CLASS_KEY: explanation.class_name}


async def _body_within_limit(request: Request) -> tuple[int, bytes | None]:
    """(the body's size, the body), or None for a body over the upload limit: read to its end
    but not kept, so that the client, still sending, gets the 413 instead of a reset."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= DEFAULT_LIMITS.max_upload_bytes:
            chunks.append(chunk)
    return size, b"".join(chunks) if size <= DEFAULT_LIMITS.max_upload_bytes else None


def _too_large(size: int) -> str:
    """The app's own message for a file over the upload limit."""
    try:
        check_upload_size(size, "the file", DEFAULT_LIMITS)
    except ImageError as refusal:
        return str(refusal)
    raise ValueError(f"{size} bytes is within the upload limit")


def build(run_dir: Path, replicas: int) -> serve.Application:
    """The application ``serve.run`` starts: ``replicas`` copies of the model."""
    return ModelServer.options(num_replicas=replicas).bind(str(run_dir), replicas)

