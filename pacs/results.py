"""Results back into the archive: a Structured Report and a Secondary Capture of the heatmap.

The SR follows the IHE AI Results profile where practical: a TID 1500 Measurement Report
whose measurement group names the algorithm and its version, references the analysed image
by its SOP Instance UID, holds the predicted finding as a coded qualitative evaluation and
every class probability as a measurement. Both objects join the source study (same
StudyInstanceUID, new series), with the patient and study modules copied from the source by
highdicom, so the archive files them with the study and the radiologist's viewer shows them.
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from model.decode import DecodedImage
from model.labels import BACTERIAL, COVID, NORMAL, VIRAL, display_name
from model.overlay import overlay
from model.prediction import Prediction
from pacs.errors import PacsError
from pacs.studies import ImageRef

if TYPE_CHECKING:
    from model.classifier import Classifier
    from model.lungs import LungSegmenter
    from pacs.client import PacsClient

ALGORITHM_NAME = "CXR assistant chest X-ray classifier"
MANUFACTURER = "CXR assistant"
HEATMAP_NOTICE = "AI heatmap: decision support, not for diagnosis"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
HEATMAP_SIDE = 512  # the Secondary Capture's longest side: readable, quick to make and store
HEATMAP_OPACITY = 0.4
LONG_STRING_CHARS = 64  # DICOM's LO
DEVICE_UID = generate_uid(entropy_srcs=[ALGORITHM_NAME])  # the same for every report
PRIVATE_SCHEME = "99CXRAI"  # our own coding scheme, for what SNOMED CT has no code for
FINDING_CODES = {
    NORMAL: hd.sr.CodedConcept("17621005", "SCT", display_name(NORMAL)),
    BACTERIAL: hd.sr.CodedConcept("53084003", "SCT", display_name(BACTERIAL)),
    VIRAL: hd.sr.CodedConcept("75570004", "SCT", display_name(VIRAL)),
    COVID: hd.sr.CodedConcept("840539006", "SCT", display_name(COVID)),
}
CHEST_RADIOGRAPH = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
PROBABILITY_UNIT = codes.UCUM.NoUnits
# The share (0..1) of the predicted class's Grad-CAM heat inside the segmented lung fields.
HEAT_IN_LUNGS_CODE = hd.sr.CodedConcept("HEAT-IN-LUNGS", PRIVATE_SCHEME,
                                        "Share of heatmap inside the lungs")
# Whether the model was validated at this site (model.site_validation), as a coded evaluation.
SITE_VALIDATION_CODE = hd.sr.CodedConcept("SITE-VALIDATION", PRIVATE_SCHEME,
                                          "Validated at this site")
NOT_VALIDATED = hd.sr.CodedConcept("NOT-VALIDATED", PRIVATE_SCHEME,
                                   "Not validated at this site")
# General Study attributes highdicom does not copy; an archive may show the study's
# description from any of its instances, so ours must repeat it.
STUDY_COPIED = ("StudyDescription",)
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                "StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber")
# Person names highdicom checks: one without a caret makes it print the whole name in a warning.
PERSON_NAMES = ("PatientName", "ReferringPhysicianName")


def long_string(text: str) -> str:
    """``text`` within a DICOM Long String's 64 characters, where the SR repeats an LO attribute
    (Algorithm Version, Manufacturer's Model Name): a longer one (a chained site version) keeps
    its start and a hash of the whole, so two versions never read alike."""
    if len(text) <= LONG_STRING_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{text[:LONG_STRING_CHARS - 9]}~{digest}"


def finding_code(class_name: str) -> hd.sr.CodedConcept:
    """SNOMED CT for the classes it names; our private scheme for any other class."""
    return FINDING_CODES.get(class_name) or hd.sr.CodedConcept(
        class_name[:16], PRIVATE_SCHEME, display_name(class_name))


def probability_code(class_name: str) -> hd.sr.CodedConcept:
    """The measurement 'probability of <class>' (private scheme: no standard code exists)."""
    return hd.sr.CodedConcept(f"P-{finding_code(class_name).value}"[:16], PRIVATE_SCHEME,
                              f"Probability of {display_name(class_name)}")


def site_validation_code(site: str | None) -> hd.sr.CodedConcept:
    """The site the model was validated at, or that it was validated at none."""
    if site is None:
        return NOT_VALIDATED
    return hd.sr.CodedConcept("VALIDATED", PRIVATE_SCHEME, f"Validated at {site}"[:64])


def structured_report(source: Dataset, prediction: Prediction,
                      heat_in_lungs: float | None = None) -> hd.sr.ComprehensiveSR:
    """The SR of one analysed image, in the source's study; with ``heat_in_lungs``, that share
    is one more measurement (its own code in the private scheme)."""
    # named once, for the whole group: it made the finding and every probability
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME,
                                              version=long_string(prediction.model_version))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(),
                                                     identifier="Chest X-ray classification"),
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.DCM.Finding,
                                        value=finding_code(prediction.label)),
            hd.sr.QualitativeEvaluation(
                name=SITE_VALIDATION_CODE,
                value=site_validation_code(prediction.validated_at_site))],
        measurements=[
            hd.sr.Measurement(name=probability_code(name), value=float(probability),
                              unit=PROBABILITY_UNIT)
            for name, probability in prediction.probabilities.items()
        ] + ([] if heat_in_lungs is None else [
            hd.sr.Measurement(name=HEAT_IN_LUNGS_CODE, value=float(heat_in_lungs),
                              unit=PROBABILITY_UNIT)]),
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name=ALGORITHM_NAME, manufacturer_name=MANUFACTURER,
            model_name=long_string(prediction.model_version)),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_RADIOGRAPH,
        imaging_measurements=[group],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, series_description="AI chest X-ray result",
    )
    _copy_study_attributes(source, sr)
    return sr


def _copy_study_attributes(source: Dataset, result: Dataset) -> None:
    for keyword in STUDY_COPIED:
        if keyword in source:
            setattr(result, keyword, source[keyword].value)


def burn_notice(rgb: np.ndarray) -> np.ndarray:
    """The heatmap with the decision-support notice burned into a black band at the top."""
    height, width = rgb.shape[:2]
    font = ImageFont.load_default(size=max(12, width // 40))
    band = max(20, int(font.size * 1.6))
    canvas = Image.new("RGB", (width, height + band))
    canvas.paste(Image.fromarray(rgb), (0, band))
    ImageDraw.Draw(canvas).text((band // 4, band // 5), HEATMAP_NOTICE, fill=(255, 255, 0),
                                font=font)
    return np.asarray(canvas)


def heatmap_capture(source: Dataset, overlay_rgb: np.ndarray) -> hd.sc.SCImage:
    """A Secondary Capture of the Grad-CAM overlay, notice burned in, in the source's study."""
    pixels = burn_notice(overlay_rgb)
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=("L", "F"),
        series_instance_uid=hd.UID(), series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="AI heatmap (decision support)",
    )
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = HEATMAP_NOTICE
    _copy_study_attributes(source, capture)
    return capture


def heatmap_overlay(image: DecodedImage, heatmap: np.ndarray) -> np.ndarray:
    """A Grad-CAM overlay at most HEATMAP_SIDE pixels on its longest side."""
    scale = min(1.0, HEATMAP_SIDE / max(image.gray.shape))
    size = (max(1, round(image.gray.shape[1] * scale)), max(1, round(image.gray.shape[0] * scale)))
    gray = np.asarray(Image.fromarray(image.gray).resize(size, Image.Resampling.BILINEAR))
    small = np.asarray(Image.fromarray(heatmap).resize(size, Image.Resampling.BILINEAR))
    return overlay(gray, small, HEATMAP_OPACITY)


def with_empty_type2(source: Dataset) -> Dataset:
    """A copy of the source header with the patient and study attributes that DICOM requires
    to be present (type 2) added empty where the source omits them, as highdicom needs, and
    each person name written with an explicit component separator: "Jane Doe" and "Jane Doe^"
    are the same family name (PS3.5 6.2.1.2), but highdicom echoes the first, name and all, in
    a warning on stderr."""
    completed = copy.copy(source)
    for keyword in TYPE2_COPIED:
        if keyword not in completed:
            setattr(completed, keyword, None)
    for keyword in PERSON_NAMES:
        name = str(completed.get(keyword) or "")
        if name and "^" not in name:
            setattr(completed, keyword, f"{name}^")
    return completed


def send_results(client: PacsClient, image: ImageRef, decoded: DecodedImage,
                 prediction: Prediction, predictor: Classifier,
                 segmenter: LungSegmenter | None = None) -> None:
    """Build the SR and the heatmap capture of one analysed image and STOW them to its study;
    with a lung ``segmenter``, the SR also carries the share of the map inside the lungs.

    Raises PacsError with the archive's answer when they could not be stored.
    """
    source = with_empty_type2(client.metadata(image))
    explanation = predictor.explain(decoded, prediction.label, prediction.chosen_age_group)
    heat_share = None
    if segmenter is not None:
        from model.lung_fields import share

        heat_share = share(segmenter.segment(decoded.gray), explanation.heatmap,
                           prediction.label).heat_in_lungs
    try:
        objects = [structured_report(source, prediction, heat_share),
                   heatmap_capture(source, heatmap_overlay(decoded, explanation.heatmap))]
    except (AttributeError, TypeError, ValueError) as error:  # a header highdicom rejects
        raise PacsError(f"The results for image {image.key} could not be built: its header "
                        f"is incomplete or malformed ({type(error).__name__}).") from None
    client.store(objects, image.study)
