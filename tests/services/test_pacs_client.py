"""The PACS connection against a real Orthanc: search, the frontal image, retrieval, failures."""

from __future__ import annotations

import numpy as np
import pytest

from model.decode import decode_image
from pacs.client import PacsClient
from pacs.errors import NoFrontalImage, PacsError
from pacs.keys import opaque_key
from pacs.settings import settings_for
from pacs.studies import StudyQuery, StudyRef, frontal_images
from testkit.servers import free_port


@pytest.fixture(scope="module")
def client(pacs_archive) -> PacsClient:
    return PacsClient(settings_for(pacs_archive.orthanc.dicomweb_url, pacs_archive.environment()))


def _by_description(client: PacsClient, query: StudyQuery) -> dict[str, StudyRef]:
    return {study.description: study for study in client.search_studies(query)}


def test_search_lists_the_radiograph_studies_only(client, pacs_archive):
    found = _by_description(client, StudyQuery())
    radiographs = [study for study in pacs_archive.studies if study.frontal_sop_uids
                   or study.name == "lateral-only"]
    assert sorted(found) == sorted(study.description for study in radiographs)
    for study in radiographs:
        assert found[study.description].date == study.study_date
        assert found[study.description].key == opaque_key("study", study.study_uid,
                                                          client.settings.key_secret)


def test_search_honours_the_date_range(client, pacs_archive):
    found = client.search_studies(StudyQuery(since="20240303", until="20240404"))
    assert sorted(study.date for study in found) == ["20240303", "20240404"]


@pytest.mark.parametrize("name", ["dx-16bit-pa", "cr-monochrome1-ap", "dx-jpeg-no-view",
                                  "lateral-and-pa"])
def test_the_frontal_image_is_retrieved_and_decoded_like_an_upload(client, pacs_archive, name):
    study = pacs_archive.study(name)
    ref = _by_description(client, StudyQuery())[study.description]
    images = client.frontal_images(ref)
    assert [image.sop_uid for image in images] == study.frontal_sop_uids
    source = next(dicom for dicom in study.files
                  if study.frontal_sop_uids[0].encode() in dicom)
    retrieved = client.retrieve(images[0])
    np.testing.assert_array_equal(retrieved.gray, decode_image(source, "upload.dcm").gray)
    assert retrieved.facts == decode_image(source, "upload.dcm").facts


def test_a_lateral_only_study_is_named_as_such(client, pacs_archive):
    ref = _by_description(client, StudyQuery())[pacs_archive.study("lateral-only").description]
    with pytest.raises(NoFrontalImage, match="lateral only") as refusal:
        client.frontal_images(ref)
    assert ref.key in str(refusal.value)


def test_a_body_part_filter_leaves_no_image_to_analyse(client, pacs_archive):
    ref = _by_description(client, StudyQuery())[pacs_archive.study("dx-16bit-pa").description]
    with pytest.raises(NoFrontalImage, match="no radiograph .* of the knee"):
        client.frontal_images(ref, body_part="KNEE")


@pytest.mark.parametrize("login", [{"CXR_PACS_PASSWORD": "wrong"},
                                   {"CXR_PACS_TOKEN": "not-a-token-this-archive-knows"}])
def test_a_wrong_login_is_a_refused_login(pacs_archive, login):
    environment = pacs_archive.environment(**login)
    client = PacsClient(settings_for(pacs_archive.orthanc.dicomweb_url, environment))
    with pytest.raises(PacsError, match=r"refused the login \(HTTP 401\)"):
        client.search_studies(StudyQuery())


def test_an_unreachable_server_is_named_after_the_retries():
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    client = PacsClient(settings_for(url, {"CXR_PACS_BACKOFF_S": "0.01",
                                           "CXR_PACS_RETRIES": "2"}))
    with pytest.raises(PacsError, match="could not be reached .* after 2 retries") as failure:
        client.search_studies(StudyQuery())
    assert url in str(failure.value)


def _instance(sop: str, view: str = "", modality: str = "DX", number: int = 1) -> dict:
    attributes = {"00080018": {"Value": [sop]}, "0020000E": {"Value": [f"series-{sop}"]},
                  "00080060": {"Value": [modality]}, "00200013": {"Value": [number]}}
    if view:
        attributes["00185101"] = {"Value": [view]}
    return attributes


@pytest.mark.parametrize(("instances", "chosen"), [
    ([_instance("1", "LL"), _instance("2", "PA", number=2)], ["2"]),
    ([_instance("1", "AP"), _instance("2", "PA")], ["1", "2"]),
    ([_instance("2", number=2), _instance("1", number=1)], ["1"]),  # no view: the first image
    ([_instance("1", "PA", modality="OT"), _instance("2", "AP")], ["2"]),
])
def test_frontal_images_are_chosen_by_view_position(instances, chosen):
    study = StudyRef(uid="1.2.3", key="st-x", date="", description="")
    assert [image.sop_uid for image in frontal_images(study, instances, b"k")] == chosen


def test_keys_are_stable_for_a_secret_and_never_hold_the_uid():
    uid = "1.2.840.113619.2.55.3.604688119"
    assert opaque_key("study", uid, b"a") == opaque_key("study", uid, b"a")
    assert opaque_key("study", uid, b"a") != opaque_key("study", uid, b"b")
    assert opaque_key("study", uid, b"a") != opaque_key("image", uid, b"a")
    assert uid not in opaque_key("study", uid, b"a") and "604688119" not in repr(
        StudyRef(uid=uid, key="st-1", date="", description=""))
