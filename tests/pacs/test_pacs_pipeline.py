"""`medseg pacs run` against a real Orthanc over DICOMweb and DIMSE: find -> retrieve -> infer -> store.

The stored SEG is fetched with Orthanc's own REST API and checked against the study it must reference
and against the known answer (the threshold model marks voxels brighter than 100 HU), placed with
`read_seg` on the series as retrieved. Reruns, with and without the state file, store nothing twice.
Logs and file names are searched for the password and every patient identifier.
"""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import PIL.Image
import pydicom
import pytest
import yaml
from conftest import PASSWORD, PHANTOM
from infer_models import THRESHOLD_HU

from medseg.bundles import SHIPPED_DIR
from medseg.cli.main import main
from medseg.io.dicom import read_series
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series
from medseg.io.image import ScalarImage
from medseg.io.seg import read_seg
from medseg.pacs.capture import SERIES_DESCRIPTION as OVERLAY_DESCRIPTION
from medseg.pacs.client import PacsError, Series, StudyQuery, connect, study_key
from medseg.pacs.config import PacsConfig
from medseg.pacs.pipeline import is_input_series

PATIENT = {"patient_name": "Doe^Jane", "patient_id": "PAT-31337", "patient_birth_date": "19700101"}
SEEDS = {"dicomweb": 11, "dimse": 12}
#: A storage SOP class no PACS knows (a UID under pydicom's root).
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.8.498.99"
RT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.1"
OPTIONS = ("--precision", "fp32", "--keep-images", "--store-overlays")


def run_pacs(config, checkpoint, out, accession) -> int:
    arguments = ["--model", str(checkpoint), "--out", str(out), "--accession", accession]
    return main(["pacs", "--config", str(config), "run", *arguments, *OPTIONS])


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_run_stores_one_seg_that_lines_up_with_the_study(
    protocol, orthanc, upload_study, checkpoint, tmp_path, monkeypatch, caplog
):
    accession = f"A-{protocol}-4711"
    study = upload_study(SEEDS[protocol], SeriesIdentity(accession_number=accession, **PATIENT))
    config = tmp_path / "pacs.yaml"
    config.write_text(yaml.safe_dump(orthanc.settings(protocol)))
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"

    assert run_pacs(config, checkpoint, out, accession) == 0
    [seg] = orthanc.instances(study.study_instance_uid)
    assert seg.StudyInstanceUID == study.study_instance_uid
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == study.series_instance_uid
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(
        study.sop_instance_uids
    )
    assert seg.PatientID == PATIENT["patient_id"]  # the SEG belongs to the same patient in the PACS

    stored = tmp_path / "stored_seg.dcm"
    seg.save_as(stored)
    retrieved = out / study_key(study.study_instance_uid) / "images" / "series_001"
    reference = read_series(retrieved)
    np.testing.assert_allclose(reference.affine, study.case.image.affine, atol=1e-4)
    labels = read_seg(stored, reference)
    hu = study.case.image.array
    decided = hu != THRESHOLD_HU  # exactly at the threshold either class is right
    expected = hu > THRESHOLD_HU
    assert expected.sum() > 1000
    np.testing.assert_array_equal(labels.array[decided] == 1, expected[decided])

    overlays = sorted((out / study_key(study.study_instance_uid) / "results").glob("*/overlays/*.png"))
    captures = sorted(
        orthanc.instances(study.study_instance_uid, "OT"), key=lambda ds: int(ds.InstanceNumber)
    )
    assert len(captures) == len(overlays) > 0
    for capture, overlay in zip(captures, overlays, strict=True):
        assert capture.StudyInstanceUID == study.study_instance_uid
        np.testing.assert_array_equal(capture.pixel_array, np.asarray(PIL.Image.open(overlay).convert("RGB")))

    # A rerun (state file says done) and a run that lost its state (the PACS has the SEG) store nothing.
    assert run_pacs(config, checkpoint, out, accession) == 0
    (out / "pacs-state.json").unlink()
    assert run_pacs(config, checkpoint, tmp_path / "out2", accession) == 0
    assert len(orthanc.instances(study.study_instance_uid)) == 1
    assert len(orthanc.instances(study.study_instance_uid, "OT")) == len(overlays)
    assert "already on the PACS" in caplog.text

    secrets = [PASSWORD, "Doe", "Jane", PATIENT["patient_id"], accession, study.study_instance_uid]
    names = " ".join(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in names


def test_results_stored_back_are_never_inputs():
    """medseg's overlay captures (modality OT) and SEGs on the PACS are not segmented again."""
    ct, other = Series("1.2.3", "CT", 40, "ABDOMEN"), Series("1.2.4", "OT", 2, "scanned form")
    overlay = Series("1.2.5", "OT", 2, OVERLAY_DESCRIPTION)
    assert is_input_series(ct) and is_input_series(other) and not is_input_series(overlay)
    assert not is_input_series(Series("1.2.6", "SEG", 1, "any")) and not is_input_series(other, ("CT",))


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_find_by_date_modality_and_uid(protocol, orthanc, upload_study, monkeypatch):
    study = upload_study(20 + SEEDS[protocol], SeriesIdentity(accession_number=f"A-{protocol}-0815"))
    client = connect(PacsConfig(**orthanc.settings(protocol), password=PASSWORD))
    [found] = client.find_studies(StudyQuery(study_instance_uid=study.study_instance_uid))
    assert found.modalities == ("CT",) and found.number_of_instances == PHANTOM.shape[2]
    by_date = client.find_studies(
        StudyQuery(study_date=f"{found.study_date}-{found.study_date}", modality="CT")
    )
    assert study.study_instance_uid in {s.study_instance_uid for s in by_date}
    assert client.find_studies(StudyQuery(study_date="19000101-19000102")) == []
    [series] = client.find_series(study.study_instance_uid)
    assert (series.series_instance_uid, series.modality) == (study.series_instance_uid, "CT")


def test_wrong_password_is_a_clear_error_without_the_password(orthanc):
    client = connect(PacsConfig(**orthanc.settings("dicomweb"), password="wrong-secret-123"))
    with pytest.raises(PacsError, match="HTTP 401") as error:
        client.find_studies(StudyQuery())
    assert "wrong-secret-123" not in str(error.value)


def test_unknown_called_ae_title_is_refused(orthanc):
    settings = {**orthanc.settings("dimse"), "called_aet": "NOT-ORTHANC"}
    # Orthanc answers with A-ASSOCIATE-RJ and closes the socket; on a loaded machine pynetdicom
    # sometimes sees the close first and reports a failed association instead of a rejection.
    with pytest.raises(PacsError, match=r"rejected .* AE titles|association with .* failed"):
        connect(PacsConfig(**settings)).find_studies(StudyQuery())


def test_cli_find_prints_json_lines_and_retrieve_downloads_the_series(
    orthanc, upload_study, tmp_path, monkeypatch, capsys
):
    study = upload_study(51, SeriesIdentity(accession_number="A-cli-1"))
    config = tmp_path / "pacs.yaml"
    config.write_text(yaml.safe_dump(orthanc.settings("dicomweb")))
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", PASSWORD)
    capsys.readouterr()
    assert main(["pacs", "--config", str(config), "find", "--accession", "A-cli-1"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["study_instance_uid"] == study.study_instance_uid
    assert record["key"] == study_key(study.study_instance_uid)
    assert (record["modalities"], record["instances"]) == (["CT"], PHANTOM.shape[2])

    out = tmp_path / "retrieved"
    assert (
        main(["pacs", "-c", str(config), "retrieve", "--study-uid", study.study_instance_uid, "-o", str(out)])
        == 0
    )
    files = sorted((out / record["key"]).rglob("*.dcm"))
    uids = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in files}
    assert uids == set(study.sop_instance_uids)


def test_store_of_a_sop_class_the_pacs_refuses_names_it(orthanc, tmp_path):
    image = ScalarImage(np.zeros((4, 4, 2), np.float32), np.eye(4))
    accepted, unknown = write_dicom_series(image, tmp_path / "s", "CT")
    ds = pydicom.dcmread(unknown)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
    ds.save_as(unknown)
    client = connect(PacsConfig(**orthanc.settings("dimse")))
    with pytest.raises(PacsError, match=re.escape(f"does not accept {PRIVATE_SOP_CLASS}")):
        client.store([accepted, unknown])
    with pytest.raises(PacsError, match="no proposed presentation context accepted"):
        client.store([unknown])


def test_c_get_receives_every_sop_class_of_a_series(orthanc, tmp_path):
    """The classes to accept come from the PACS (SOPClassesInStudy), not from a fixed list."""
    image = ScalarImage(np.zeros((4, 4, 3), np.float32), np.eye(4))
    paths = write_dicom_series(image, tmp_path / "mixed", "CT")
    odd = pydicom.dcmread(paths[-1])
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = RT_IMAGE_STORAGE
    odd.save_as(paths[-1])
    orthanc.upload(paths)
    client = connect(PacsConfig(**orthanc.settings("dimse")))
    received = client.retrieve_series(str(odd.StudyInstanceUID), str(odd.SeriesInstanceUID), tmp_path / "got")
    classes = sorted(str(pydicom.dcmread(path).SOPClassUID) for path in received)
    assert classes == sorted(str(pydicom.dcmread(path).SOPClassUID) for path in paths)


def test_pacs_run_and_infer_record_the_same_settings_for_a_bundle(
    orthanc, upload_study, tmp_path, monkeypatch
):
    """Both go through `Segmenter.load`: the same bundle gives the same settings (its inference.json zooms
    included), post-processing, device and model digest in result.json."""
    bundle = tmp_path / "abdomen_zoomed"
    shutil.copytree(SHIPPED_DIR / "abdomen_ct_3d", bundle)
    inference = bundle / "configs" / "inference.json"
    steps = json.loads(inference.read_text())
    steps["run"][0]["tta_zooms"] = [0.9, 1.1]
    inference.write_text(json.dumps(steps))
    accession = "A-settings-1"
    study = upload_study(21, SeriesIdentity(accession_number=accession, **PATIENT))
    config = tmp_path / "pacs.yaml"
    config.write_text(yaml.safe_dump(orthanc.settings("dicomweb")))
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", PASSWORD)
    model = ["--model", str(bundle), "--trust-bundle", "--no-overlays"]
    pacs_out, infer_out = tmp_path / "pacs", tmp_path / "infer"
    run = ["pacs", "--config", str(config), "run", *model, "--out", str(pacs_out), "--accession", accession]
    assert main([*run, "--keep-images"]) == 0
    study_dir = pacs_out / study_key(study.study_instance_uid)
    assert main(["infer", str(study_dir / "images"), *model, "--out", str(infer_out)]) == 0
    [from_pacs] = (study_dir / "results").glob("*/result.json")
    [from_infer] = infer_out.glob("*/result.json")
    pacs_result, infer_result = (json.loads(path.read_text()) for path in (from_pacs, from_infer))
    assert pacs_result["settings"]["zooms"] == [0.9, 1.0, 1.1]
    for key in ("settings", "postprocessing", "options"):
        assert pacs_result[key] == infer_result[key], key
    assert pacs_result["model"]["digest"] == infer_result["model"]["digest"]
