"""RTSTRUCT contours onto their CT: the shared LUNG1 case (GTV, spinal cord, both lungs; slices with several
contours of one ROI), checked against the contours' own enclosed volumes (shoelace area x slice step) and
an independent rasterisation (PIL's polygon fill); refusals name the file."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pydicom
import pytest

from medseg.errors import GeometryError, InputError
from medseg.io.dicom import read_series
from medseg.io.image import LPS_TO_RAS
from medseg.io.rtstruct import fill_polygon, read_rtstruct


@pytest.fixture(scope="module")
def lung1(datasets_dir):
    folder = datasets_dir / "nsclc_lung1_ct_rtstruct"
    [rtstruct] = (folder / "RTSTRUCT").glob("*.dcm")
    ct = read_series(folder / "CT")
    return ct, rtstruct, read_rtstruct(rtstruct, ct)


def _contour_volumes_ml(rtstruct) -> dict[str, float]:
    """Each ROI's enclosed volume from its contours alone: shoelace areas (holes subtracted by the
    even-odd rule are rare here) times the 3 mm slice step."""
    ds = pydicom.dcmread(rtstruct)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    volumes = {}
    for roi in ds.ROIContourSequence:
        area = 0.0
        for contour in roi.ContourSequence:
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            x, y = points[:, 0], points[:, 1]
            area += 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        volumes[names[int(roi.ReferencedROINumber)]] = area * 3.0 / 1000
    return volumes


def test_lung1_structures_have_their_contours_volumes(lung1):
    ct, rtstruct, structures = lung1
    assert [(s.number, s.name) for s in structures] == [
        (2, "GTV-1"), (6, "Spinal-Cord"), (7, "Lung-Left"), (8, "Lung-Right"),
    ]  # fmt: skip
    voxel_ml = float(np.prod(ct.spacing)) / 1000
    expected = _contour_volumes_ml(rtstruct)
    for structure in structures:
        volume = structure.mask.sum() * voxel_ml
        assert volume == pytest.approx(expected[structure.name], rel=0.01), structure.name
    assert {s.name: s.contours for s in structures}["Lung-Left"] == 139  # several contours on some slices
    gtv, lung = (next(s for s in structures if s.name == n) for n in ("GTV-1", "Lung-Right"))
    assert np.median(ct.array[lung.mask]) < -600  # air in the lung
    assert np.median(ct.array[gtv.mask]) > -300  # the tumour is soft tissue


def test_an_independent_rasterisation_agrees(lung1):
    """PIL fills the polygons of each slice (it also fills the pixels its outline touches): the large
    structures agree with the voxel-centre fill to Dice >= 0.95."""
    ct, rtstruct, structures = lung1
    ds = pydicom.dcmread(rtstruct)
    to_voxel = np.linalg.inv(ct.affine) @ LPS_TO_RAS
    for roi, structure in zip(ds.ROIContourSequence, structures, strict=True):
        theirs = np.zeros(ct.shape, bool)
        for contour in roi.ContourSequence:
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            voxels = (np.c_[points, np.ones(len(points))] @ to_voxel.T)[:, :3]
            picture = PIL.Image.new("1", ct.shape[:2][::-1])  # (width = i, height = j)
            PIL.ImageDraw.Draw(picture).polygon([tuple(p) for p in voxels[:, :2]], fill=1)
            theirs[:, :, round(voxels[0, 2])] ^= np.asarray(picture).T
        dice = 2 * (theirs & structure.mask).sum() / (theirs.sum() + structure.mask.sum())
        assert dice >= (0.95 if structure.name != "Spinal-Cord" else 0.85), (structure.name, dice)


def test_fill_polygon_keeps_holes_and_islands_by_the_even_odd_rule():
    outer = fill_polygon(np.array([0, 10, 10, 0]), np.array([0, 0, 10, 10]), (12, 12))
    hole = fill_polygon(np.array([3, 7, 7, 3]), np.array([3, 3, 7, 7]), (12, 12))
    assert outer.sum() == 100 and hole.sum() == 16
    assert (outer ^ hole).sum() == 84 and not (outer ^ hole)[5, 5]


def test_contours_off_the_slices_and_other_series_are_refused(lung1, tmp_path):
    ct, rtstruct, _ = lung1
    ds = pydicom.dcmread(rtstruct)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    data = np.asarray(contour.ContourData, float).reshape(-1, 3)
    data[:, 2] += 1.5  # half a slice step
    contour.ContourData = [f"{v:.4f}" for v in data.ravel()]
    ds.save_as(tmp_path / "shifted.dcm")
    with pytest.raises(
        GeometryError, match=r"shifted\.dcm: a contour of GTV-1 lies between the reference's slices"
    ):
        read_rtstruct(tmp_path / "shifted.dcm", ct)
    other = ct.with_array(ct.array)
    other.meta["series_instance_uid"] = "1.2.3"
    with pytest.raises(InputError, match="drawn on another series"):
        read_rtstruct(rtstruct, other)


def test_evaluate_scores_a_mask_against_the_clinicians_rtstruct(lung1, tmp_path):
    """``medseg evaluate MASK RTSTRUCT --map``: the contours are rasterised onto the mask's grid and the
    ROI names mapped onto the model's classes (both lungs -> 1, the GTV inside them -> 2)."""
    import json

    from medseg.cli.main import main
    from medseg.io.image import LabelMap
    from medseg.io.volume import write_volume

    ct, rtstruct, structures = lung1
    by_name = {s.name: s.mask for s in structures}
    labels = np.zeros(ct.shape, np.uint8)
    labels[by_name["Lung-Left"] | by_name["Lung-Right"]] = 1
    labels[by_name["GTV-1"]] = 2
    write_volume(LabelMap(labels, ct.affine.copy()), tmp_path / "LUNG1-001.nii.gz")
    argv = ["evaluate", str(tmp_path / "LUNG1-001.nii.gz"), str(rtstruct), "--out", str(tmp_path / "eval")]
    mapping = '{"Lung-Left": 1, "lung-right": 1, "GTV-1": 2}'
    assert main([*argv, "--map", mapping, "--bootstrap", "5"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    [scores] = metrics["cases"].values()
    assert {name: s["dice"] for name, s in scores.items()} == {"label_1": 1.0, "label_2": 1.0}
    [notes] = metrics["notes"].values()
    assert any("values [6] not in the map became background" in note for note in notes)  # the spinal cord


#: The ROI volumes PROVENANCE.md records for LUNG1 (mL), made by a boundary-inclusive rasteriser.
PROVENANCE_ML = {"GTV-1": 160.7, "Spinal-Cord": 51.1, "Lung-Left": 2343.0, "Lung-Right": 3035.0}


def test_the_outline_fill_gives_the_volumes_recorded_with_the_data(lung1):
    """fill="outline" (voxels the drawn outline passes through count too) reproduces the volumes of the
    dataset's PROVENANCE.md within 2%; the default centre rule gives the contours' own volumes (above),
    2-3% less for the lungs and 12% for the thin cord."""
    ct, rtstruct, _ = lung1
    voxel_ml = float(np.prod(ct.spacing)) / 1000
    for structure in read_rtstruct(rtstruct, ct, fill="outline"):
        volume = structure.mask.sum() * voxel_ml
        assert volume == pytest.approx(PROVENANCE_ML[structure.name], rel=0.02), structure.name
    with pytest.raises(ValueError, match="fill 'touch'"):
        read_rtstruct(rtstruct, ct, fill="touch")
