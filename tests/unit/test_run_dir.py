"""The run directory's contract: each typed file round-trips, a missing or damaged file is named,
an unknown format is refused, and the shipped model's files read back byte for byte."""

from __future__ import annotations

from dataclasses import replace

import pytest

from model.calibration import calibration_report
from model.predictor import DEFAULT_RUN_DIR
from model.run_dir import (
    CALIBRATION_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    OOD_FILE,
    GateSettings,
    MissingRunFileError,
    OodLimits,
    RunFileError,
    if_present,
    read_calibration,
    read_gate_settings,
    read_history,
    read_json,
    read_metadata,
    read_model_card,
    write_calibration,
    write_gate_settings,
    write_json,
    write_metadata,
)
from model.run_metrics import read_metrics
from testkit.model_factory import metadata
from testkit.report_factory import synthetic_scores

READERS = [(read_metadata, METADATA_FILE), (read_calibration, CALIBRATION_FILE),
           (read_gate_settings, OOD_FILE), (read_metrics, METRICS_FILE),
           (read_history, HISTORY_FILE), (read_model_card, MODEL_CARD_FILE)]


def full_metadata():
    """The factory metadata with every optional field a new run records."""
    return replace(
        metadata(), label_sets={"PNEUMONIA": ["BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA"]},
        data_roots=["../data/cxr4"],
        populations={"val": {"kermany": {"age_group": "pediatric", "counts": {"NORMAL": 3}}}})


def gate_settings() -> GateSettings:
    return GateSettings(OodLimits(70.5, 32.5, 0.46),
                        {"method": "test", "fitted_on": {"train": 10, "val": 5}})


def test_metadata_round_trips(tmp_path):
    for written in (metadata(), full_metadata()):
        write_metadata(tmp_path, written)
        assert read_metadata(tmp_path) == written


def test_a_format_1_file_without_the_optional_fields_keeps_them_absent(tmp_path):
    write_metadata(tmp_path, metadata())
    assert not {"label_sets", "populations", "data_roots"} & set(
        read_json(tmp_path / METADATA_FILE))


def test_calibration_round_trips(tmp_path):
    written = calibration_report(*synthetic_scores(n_per_class=10))
    write_calibration(tmp_path, written)
    assert read_calibration(tmp_path) == written


def test_gate_settings_round_trip(tmp_path):
    write_gate_settings(tmp_path, gate_settings())
    assert read_gate_settings(tmp_path) == gate_settings()


@pytest.mark.parametrize(("read", "name"), READERS)
def test_a_missing_file_is_named(tmp_path, read, name):
    with pytest.raises(MissingRunFileError, match=f"{name} is missing from {tmp_path}"):
        read(tmp_path)
    assert if_present(read, tmp_path) is None


@pytest.mark.parametrize(("read", "name"), [(read, name) for read, name in READERS
                                            if name.endswith(".json")])
def test_a_file_that_is_not_json_is_named(tmp_path, read, name):
    (tmp_path / name).write_text("{not json")
    with pytest.raises(RunFileError, match=f"{name} cannot be read"):
        if_present(read, tmp_path)


def test_a_missing_or_mistyped_field_is_named(tmp_path):
    content = metadata().to_dict()
    del content["gradcam_layer"], content["logits_layer"]
    write_json(tmp_path / METADATA_FILE, content)
    with pytest.raises(RunFileError, match=f"{METADATA_FILE} lacks gradcam_layer, logits_layer"):
        read_metadata(tmp_path)
    write_json(tmp_path / METADATA_FILE, {**metadata().to_dict(), "image_size": "64"})
    with pytest.raises(RunFileError, match="image_size should be an integer, not '64'"):
        read_metadata(tmp_path)
    write_json(tmp_path / OOD_FILE, {**gate_settings().to_dict(), "limits": {"max_distance": 1}})
    with pytest.raises(RunFileError, match=f"{OOD_FILE} lacks limits.min_contrast"):
        read_gate_settings(tmp_path)


def test_a_preprocessing_this_code_does_not_do_is_refused(tmp_path):
    write_json(tmp_path / METADATA_FILE, {**metadata().to_dict(), "preprocessing": {
        **metadata().to_dict()["preprocessing"], "resize": "pad"}})
    with pytest.raises(RunFileError, match="preprocessing resize 'pad' is not what"):
        read_metadata(tmp_path)


@pytest.mark.parametrize(("write", "read", "name", "written"), [
    (write_metadata, read_metadata, METADATA_FILE, metadata()),
    (write_gate_settings, read_gate_settings, OOD_FILE, gate_settings()),
])
def test_an_unknown_format_version_is_refused(tmp_path, write, read, name, written):
    newer = written.format_version + 1
    write(tmp_path, replace(written, format_version=newer))
    with pytest.raises(RunFileError, match=f"{name} has format_version {newer}; this code reads "
                                           f"version {written.format_version} only"):
        read(tmp_path)
    content = written.to_dict()
    del content["format_version"]
    write_json(tmp_path / name, content)
    with pytest.raises(RunFileError, match=f"{name} lacks format_version"):
        read(tmp_path)


def test_the_shipped_run_directory_reads_and_writes_back_byte_for_byte(tmp_path):
    if not (DEFAULT_RUN_DIR / MODEL_FILE).is_file():
        pytest.skip(f"the shipped model is not there yet ({DEFAULT_RUN_DIR / MODEL_FILE})")
    shipped = read_metadata(DEFAULT_RUN_DIR)
    assert shipped.format_version == METADATA_FORMAT_VERSION and shipped.classes
    copies = {METADATA_FILE: lambda: write_metadata(tmp_path, shipped),
              CALIBRATION_FILE: lambda: write_calibration(tmp_path, read_calibration(
                  DEFAULT_RUN_DIR)),
              OOD_FILE: lambda: write_gate_settings(tmp_path, read_gate_settings(DEFAULT_RUN_DIR))}
    for name, copy in copies.items():
        if (DEFAULT_RUN_DIR / name).is_file():
            copy()
            assert (tmp_path / name).read_bytes() == (DEFAULT_RUN_DIR / name).read_bytes(), name
    read_metrics(DEFAULT_RUN_DIR)
    read_history(DEFAULT_RUN_DIR)
