"""The network edge: one small DICOMweb client with timeouts, retries and plain messages.

QIDO-RS to list chest radiograph studies and their images, WADO-RS to fetch an image (then
the same decode path as an upload), STOW-RS to store results. Every network failure becomes
a PacsError written for a person: no URL path, UID or patient identifier in it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from model.decode import DecodedImage, decode_image
from pacs.bounded import limit_answers
from pacs.errors import PacsError
from pacs.settings import PacsSettings
from pacs.studies import (
    RADIOGRAPH_MODALITIES,
    ImageRef,
    StudyQuery,
    StudyRef,
    frontal_images,
    study_ref,
)

# dicomweb-client logs every request's study UID at INFO; our logs carry keys, never UIDs.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
RETRIED_STATUSES = (429, 502, 503, 504)
STUDY_FIELDS = ("StudyDate", "StudyDescription")
INSTANCE_FIELDS = ("Modality", "ViewPosition", "BodyPartExamined", "SeriesNumber",
                   "InstanceNumber")
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # as stored: no transcoding by the archive


class PacsClient:
    """A DICOMweb archive: its base URL, login, timeout and retries from ``PacsSettings``.

    Raises PacsError for an address that is not a DICOMweb URL.
    """

    def __init__(self, settings: PacsSettings) -> None:
        self.settings = settings
        session = requests.Session()
        if settings.token:
            session.headers["Authorization"] = f"Bearer {settings.token}"
        elif settings.user:
            session.auth = (settings.user, settings.password or "")
        retry = Retry(total=settings.retries, connect=settings.retries, read=settings.retries,
                      status=settings.retries, backoff_factor=settings.backoff_s,
                      status_forcelist=RETRIED_STATUSES, raise_on_status=False,
                      allowed_methods=frozenset({"GET", "POST"}))
        limit_answers(session, settings.max_answer_bytes)
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=8)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            self._client = DICOMwebClient(settings.url, session=session,
                                          timeout=settings.timeout_s)
        except ValueError:
            raise PacsError(f"The PACS address {settings.url!r} is not a DICOMweb URL; it "
                            "should look like http://host:port/dicom-web.") from None
        self._client.set_http_retry_params(retry=False)  # one retry policy: the adapter's

    def search_studies(self, query: StudyQuery) -> list[StudyRef]:
        """Chest radiograph studies (any CR or DX image) in the date range, oldest first."""
        found: dict[str, StudyRef] = {}
        for modality in RADIOGRAPH_MODALITIES:  # one query per modality: archives differ on lists
            filters = {"ModalitiesInStudy": modality}
            if query.date_range():
                filters["StudyDate"] = query.date_range()
            with self._plain_errors("listing studies"):
                answers = self._client.search_for_studies(
                    search_filters=filters, fields=STUDY_FIELDS, limit=query.limit)
            for attributes in answers:
                study = study_ref(attributes, self.settings.key_secret)
                found.setdefault(study.key, study)
        return sorted(found.values(), key=lambda study: (study.date, study.key))

    def frontal_images(self, study: StudyRef, body_part: str | None = None) -> list[ImageRef]:
        """The study's frontal images (see pacs.studies.frontal_images); NoFrontalImage if none."""
        with self._plain_errors(f"listing the images of study {study.key}"):
            instances = self._client.search_for_instances(
                study_instance_uid=study.uid, fields=INSTANCE_FIELDS)
        return frontal_images(study, instances, self.settings.key_secret, body_part)

    def retrieve(self, image: ImageRef) -> DecodedImage:
        """WADO-RS, then the same decode path as an upload (ImageError for a bad image)."""
        return decode_image(self.retrieve_bytes(image), image.key)

    def retrieve_bytes(self, image: ImageRef) -> bytes:
        """The image as a DICOM Part 10 file, in the transfer syntax the archive stored."""
        with self._plain_errors(f"fetching image {image.key}"):
            dataset = self._client.retrieve_instance(
                image.study.uid, image.series_uid, image.sop_uid, media_types=ANY_TRANSFER_SYNTAX)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        return buffer.getvalue()

    def metadata(self, image: ImageRef) -> Dataset:
        """The image's header without pixels: the patient and study modules results copy."""
        with self._plain_errors(f"reading the header of image {image.key}"):
            attributes = self._client.retrieve_instance_metadata(
                image.study.uid, image.series_uid, image.sop_uid)
        return Dataset.from_json(attributes, bulk_data_uri_handler=lambda *_: b"")

    def store(self, datasets: Sequence[Dataset], study: StudyRef) -> None:
        """STOW-RS into the study; PacsError with the archive's answer if any object is refused."""
        with self._plain_errors(f"storing results in study {study.key}"):
            answer = self._client.store_instances(list(datasets), study.uid)
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            reasons = sorted({f"0x{int(item.get('FailureReason', 0)):04X}" for item in failed})
            raise PacsError(f"The PACS refused {len(failed)} of {len(datasets)} result objects "
                            f"for study {study.key} (failure reason {', '.join(reasons)}).")

    @contextmanager
    def _plain_errors(self, action: str) -> Iterator[None]:
        """Turn requests' and dicomweb-client's exceptions into one message for a person."""
        try:
            yield
        except requests.HTTPError as error:
            raise PacsError(self._http_message(error.response, action)) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            cause = "it did not answer in time" if isinstance(error, requests.Timeout) else (
                "the connection failed")
            raise PacsError(f"The PACS at {self.settings.url} could not be reached while "
                            f"{action}: {cause} after {self.settings.retries} retries. Check the "
                            "address and that the server is running.") from None
        except (requests.RequestException, ValueError, KeyError) as error:
            raise PacsError(f"The PACS gave an answer that could not be read while {action} "
                            f"({type(error).__name__}).") from None

    def _http_message(self, response: requests.Response | None, action: str) -> str:
        status = 0 if response is None else response.status_code
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            return (f"The PACS refused the login (HTTP {status}) while {action}: check the user "
                    "name and password, or the token, in the PACS settings.")
        reason = "" if response is None else f" {response.reason}"
        return f"The PACS answered HTTP {status}{reason} while {action}."
