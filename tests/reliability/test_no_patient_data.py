"""No patient identifier leaks: PatientName, PatientID and BirthDate planted in DICOM inputs appear in
no log line, report, output file or file name of ``medseg infer``, ``evaluate`` and ``report``, except
in the DICOM SEG's patient module, which the standard requires (and ``--anonymize`` replaces)."""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import ct_image
from infer_models import THRESHOLD_HU, save_threshold_checkpoint
from pydicom.valuerep import validate_value

from medseg.cli.main import main
from medseg.inference.runner import PSEUDONYM_PREFIX
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series

NAME, PATIENT_ID, BIRTH_DATE = "Leakmann^Petra", "MRN-73519", "19230417"
#: What must not appear anywhere: the name's parts, the ID, the birth date in DICOM and ISO form.
NEEDLES = ("Leakmann", "Petra", PATIENT_ID, BIRTH_DATE, "1923-04-17")
PLANTED = SeriesIdentity(patient_name=NAME, patient_id=PATIENT_ID, patient_birth_date=BIRTH_DATE)


def _leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle.lower() in text.lower()]


def _content(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("latin-1")


def _scan_outputs(folder: Path) -> list[tuple[str, list[str]]]:
    """(path, needles found) for every file or folder name under `folder` and every file's content."""
    found = []
    for path in sorted(folder.rglob("*")):
        name_leaks = _leaks(str(path.relative_to(folder)))
        content_leaks = _leaks(_content(path)) if path.is_file() else []
        if name_leaks or content_leaks:
            found.append((str(path), name_leaks + content_leaks))
    return found


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    """Two planted studies: one good, one with a slice missing (so that an error message is logged)."""
    root = tmp_path_factory.mktemp("phi")
    image = ct_image(shape=(24, 20, 8), seed=3)
    image.array[6:14, 5:12, 2:6] = THRESHOLD_HU + 300  # something to segment
    write_dicom_series(image, root / "in" / "good", identity=PLANTED)
    broken = write_dicom_series(image, root / "in" / "broken", identity=PLANTED)
    broken[4].unlink()
    return root


@pytest.fixture
def logged(capsys, caplog):
    """Everything medseg prints or logs (at debug level) or warns during a test, as one text."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: "\n".join([*capsys.readouterr(), caplog.text, *(str(w.message) for w in caught)])


def _segment(studies: Path, out: Path, *extra: str) -> tuple[int, Path]:
    model = save_threshold_checkpoint(studies / "model.pt", 3, [2.0, 2.0, 2.5], [16, 16, 8])
    status = main(["--debug", "infer", str(studies / "in"), "--model", str(model), "--out", str(out),
                   "--precision", "fp32", *extra])  # fmt: skip
    [result] = [p.parent for p in out.glob("*/result.json")]
    return status, result


def test_infer_evaluate_and_report_leak_nothing(studies: Path, tmp_path: Path, logged):
    status, result = _segment(studies, tmp_path / "infer")
    assert status == 3  # the broken study failed, with its message logged
    seg = result / "seg.dcm"
    main(["--debug", "evaluate", str(seg), str(result / "mask.nii.gz"), "--out", str(tmp_path / "eval"),
          "--bootstrap", "20", "--resample"])  # fmt: skip
    main(["--debug", "report", str(seg), "--image", str(studies / "in" / "good"), "--reference",
          str(result / "mask.nii.gz"), "--out", str(tmp_path / "report"), "--resample"])  # fmt: skip
    text = logged()
    assert "missing slice" in text and "Dice" in text  # the logs were captured
    assert _leaks(text) == []
    assert (tmp_path / "report" / "index.html").is_file() and (tmp_path / "eval" / "metrics.json").is_file()
    # the only file holding them is the SEG (which shows that the scan reads inside files)
    assert _scan_outputs(tmp_path) == [(str(seg), ["Leakmann", "Petra", PATIENT_ID, BIRTH_DATE])]
    source = pydicom.dcmread(seg)  # the SEG keeps the patient module, as DICOM requires
    assert (str(source.PatientName), source.PatientID, source.PatientBirthDate) == (
        NAME,
        PATIENT_ID,
        BIRTH_DATE,
    )


def test_anonymized_seg_carries_a_pseudonym_and_still_references_its_source(studies: Path, tmp_path: Path):
    status, result = _segment(studies, tmp_path, "--anonymize", "--no-overlays")
    assert status == 3
    assert _scan_outputs(tmp_path) == []
    seg = pydicom.dcmread(result / "seg.dcm")
    pseudonym = PSEUDONYM_PREFIX + result.name
    assert (str(seg.PatientName), seg.PatientID, seg.PatientBirthDate) == (pseudonym, pseudonym, "")
    assert seg.PatientIdentityRemoved == "YES"
    for element in seg.iterall():  # every text value fits its VR (DeidentificationMethod is a LO: 64)
        if element.VR in ("AE", "CS", "DA", "LO", "LT", "PN", "SH", "ST", "TM", "UI") and element.value:
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                validate_value(element.VR, value, pydicom.config.RAISE)
    source = pydicom.dcmread(next((studies / "in" / "good").iterdir()))
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert json.loads((result / "result.json").read_text())["anonymized"] is True
    assert np.any(seg.pixel_array)  # a real segmentation, not an empty stand-in
