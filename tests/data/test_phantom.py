"""The synthetic CT phantom: realistic values, anatomy on the right side, exact DICOM round trip."""

from __future__ import annotations

import numpy as np
import pydicom
import SimpleITK as sitk

from medseg.data.phantom import HU, PHANTOM_LABELS, PhantomConfig, generate_case, write_cohort
from medseg.io.sitk_bridge import from_sitk
from medseg.io.volume import read_volume

SMALL = PhantomConfig(shape=(48, 48, 16), spacing=(7.0, 7.0, 12.5))


def test_cases_are_reproducible_and_varied():
    first, again, other = generate_case("a", 1), generate_case("a", 1), generate_case("b", 2)
    np.testing.assert_array_equal(first.image.array, again.image.array)
    assert not np.array_equal(first.label.array, other.label.array)


def test_structures_have_realistic_hounsfield_units_and_sides():
    case = generate_case("a", 3)
    hu, label = case.image.array, case.label.array
    for value, name in PHANTOM_LABELS.items():
        if value:
            assert (label == value).sum() > 0, name
            assert abs(np.median(hu[label == value]) - HU[name]) < 25, name
    # The liver sits on the patient's right (+x in RAS), the spleen on the left.
    liver_x = case.label.index_to_world(np.argwhere(label == 1))[:, 0].mean()
    spleen_x = case.label.index_to_world(np.argwhere(label == 2))[:, 0].mean()
    assert liver_x > 0 > spleen_x
    # Tumours lie inside the liver's outline.
    assert (label == 4).sum() > 0


def test_cohort_dicom_series_match_simpleitk(tmp_path):
    records = write_cohort(tmp_path, 1, seed=5, config=SMALL)
    case = generate_case("phantom_000", 5000, SMALL)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(records[0]["dicom"]))
    itk = from_sitk(reader.Execute())
    np.testing.assert_array_equal(itk.array, case.image.array)
    np.testing.assert_allclose(itk.affine, case.image.affine, atol=1e-4)
    label = read_volume(records[0]["label"])
    np.testing.assert_allclose(label.affine, case.image.affine, atol=1e-4)
    first = pydicom.dcmread(sorted((tmp_path / "phantom_000" / "dicom").iterdir())[0])
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.RescaleIntercept == -1024 and first.Modality == "CT"
