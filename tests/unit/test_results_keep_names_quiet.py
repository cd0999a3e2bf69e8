"""Building the results for the archive says nothing identifying: highdicom warns with the whole
patient name when a name has no component separator, so no name reaches stderr, the logs or the
warnings, while the archive still gets the same name."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from pydicom.valuerep import PersonName

from model.prediction import Prediction
from pacs.results import heatmap_capture, structured_report, with_empty_type2
from testkit.dicom_factory import FAKE_PATIENT, make_dataset

NAMES = {"PatientName": "Jane Doe", "ReferringPhysicianName": "Mirelle Drovanska"}


def test_building_the_sr_and_heatmap_capture_leaks_no_name(capfd, caplog):
    source = make_dataset(np.full((64, 64), 100, np.uint8), patient={**FAKE_PATIENT, **NAMES})
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        completed = with_empty_type2(source)
        report = structured_report(completed, Prediction.of({"NORMAL": 0.9, "COVID19": 0.1},
                                                            "v1"))
        capture = heatmap_capture(completed, np.zeros((32, 32, 3), np.uint8))
    said = " ".join([str(warning.message) for warning in warned] + [caplog.text,
                                                                     *capfd.readouterr()])
    for name in NAMES.values():
        assert name not in said
        assert name.split()[0] not in said
    for built in (report, capture):
        assert PersonName(built.PatientName).family_name == "Jane Doe"
