"""The Ray Serve deployment: one ``Predictor`` per replica, requests batched by ``@serve.batch``.

The replicas take requests already checked by the front (serving.front): a body within the
upload limit, an authorised caller. Every answer is a status and JSON: 200 with the fields of a
``python -m model.predict`` line (less "file"), 422 with the app's own message for an image it
refuses or cannot read (also one over the server's pixel cap), 400 for a request that is not
one; a failure of ours is logged here and answered with a plain 500 message, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ray import serve
from ray.serve.handle import DeploymentHandle

from model.age_groups import AgeReading
from model.decode import DecodedImage, decode_image
from model.errors import ImageError
from model.limits import DEFAULT_LIMITS, DecodeLimits
from model.prediction import Prediction
from serving.wire import (
    AGE_GROUP_PARAM,
    ERROR_KEY,
    HEATMAP_CLASS_KEY,
    HEATMAP_KEY,
    heatmap_text,
    with_header_facts,
)

MAX_BATCH = 16  # images per forward pass; a 2-core replica is past its best beyond this
BATCH_WAIT_SECONDS = 0.01  # how long a request waits for others to share its pass
MAX_ONGOING = 64  # requests a replica queues, so that batches can fill under load
# A heatmap holds several float copies of its image: a 49-megapixel film costs about 0.5 GB per
# request. The largest chest detectors are about 4,300 pixels a side (18 megapixels).
SERVER_LIMITS = DecodeLimits(max_upload_bytes=DEFAULT_LIMITS.max_upload_bytes,
                             max_pixels=25_000_000, min_side=DEFAULT_LIMITS.min_side)
STOP_GRACE_S = 2.0  # the front drains its requests before the replicas are stopped
logger = logging.getLogger("ray.serve")


class BadRequest(ValueError):
    """A request the server cannot take: its message says what to change."""


@serve.deployment(max_ongoing_requests=MAX_ONGOING, ray_actor_options={"num_cpus": 1},
                  graceful_shutdown_timeout_s=STOP_GRACE_S,
                  graceful_shutdown_wait_loop_s=STOP_GRACE_S / 4)
class ModelServer:
    """The metadata, and one prediction (with a heatmap when asked) per ``predict`` call."""

    def __init__(self, run_dir: str) -> None:
        from model.predictor import Predictor  # TensorFlow only in the replica

        self.predictor = Predictor.load(Path(run_dir))
        self.predictor.warm_up()

    def metadata(self) -> dict:
        return self.predictor.metadata.to_dict()

    async def predict(self, body: bytes, params: dict[str, str], decoded: str | None
                      ) -> tuple[int, dict]:
        """``params``: heatmap=1, class=NAME, age_group=adult|child; ``decoded``: the
        serving.wire header of an image the app sent decoded."""
        try:
            return await self._predict(body, params, decoded)
        except BadRequest as error:
            return 400, {ERROR_KEY: str(error)}
        except Exception:  # the request's failure, not the replica's: log it, answer plainly
            logger.exception("prediction failed")
            return 500, {ERROR_KEY: "The model server could not analyse this image "
                                    "(an internal error, logged on the server)."}

    async def _predict(self, body: bytes, params: dict[str, str], decoded: str | None
                       ) -> tuple[int, dict]:
        want_heatmap = params.get("heatmap", "0") in ("1", "true")
        class_name = params.get("class")
        given = params.get(AGE_GROUP_PARAM)
        if class_name is not None and class_name not in self.predictor.classes:
            raise BadRequest(f"unknown class {class_name!r}; the model knows "
                             f"{', '.join(self.predictor.classes)}")
        try:
            image = await asyncio.to_thread(self._decode, body, decoded)
            known = self._known_age(image, given)
            if want_heatmap:
                return 200, await asyncio.to_thread(self._explain, image, class_name, given)
            prediction = await self._classify((image, known))
        except ImageError as refusal:
            return 422, {ERROR_KEY: str(refusal)}
        if prediction.refusal is not None:
            return 422, {ERROR_KEY: prediction.refusal}
        return 200, prediction.json_fields()

    def _known_age(self, image: DecodedImage, given: str | None) -> AgeReading | None:
        try:
            return self.predictor.known_age(image, given)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @staticmethod
    def _decode(data: bytes, header: str | None) -> DecodedImage:
        image = decode_image(data, limits=SERVER_LIMITS)
        if header is None:
            return image
        try:
            return with_header_facts(image, header)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_SECONDS)
    async def _classify(self, requests: list[tuple[DecodedImage, AgeReading | None]]
                        ) -> list[Prediction]:
        """The app's accept/refuse path for the requests that arrived together, one pass."""
        return await asyncio.to_thread(self._classified, requests)

    def _classified(self, requests: list[tuple[DecodedImage, AgeReading | None]]
                    ) -> list[Prediction]:
        admitted: list = []
        for image, _ in requests:
            try:
                admitted.append(self.predictor.admit(image))
            except ImageError as refusal:
                admitted.append(refusal)
        return self.predictor.classify(admitted, [known for _, known in requests])

    def _explain(self, image: DecodedImage, class_name: str | None, given: str | None) -> dict:
        explanation = self.predictor.explain(image, class_name, given)
        return {**explanation.prediction.json_fields(),
                HEATMAP_KEY: heatmap_text(explanation.heatmap),
                HEATMAP_CLASS_KEY: explanation.class_name}


class Replicas:
    """The deployment's replicas as serving.front calls them, through its handle."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def metadata(self) -> dict:
        return await self.handle.metadata.remote()

    async def predict(self, body: bytes, params: dict[str, str], decoded: str | None
                      ) -> tuple[int, dict]:
        return await self.handle.predict.remote(body, params, decoded)


def build(run_dir: Path, replicas: int) -> serve.Application:
    """The application ``serve.run`` starts: ``replicas`` copies of the model."""
    return ModelServer.options(num_replicas=replicas).bind(str(run_dir))
