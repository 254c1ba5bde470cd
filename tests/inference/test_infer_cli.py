"""`medseg infer` end to end: real and synthetic DICOM, 2D X-rays, a messy batch, reruns and sharding.

The model is `infer_models.threshold_network` (class 1 = brighter than 100 HU, or than the middle of a
radiograph's intensity range), so the right answer is known in physical space. Geometry is checked with
nibabel, SimpleITK and pydicom, never with medseg's own readers.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import write_non_image, write_radiograph
from infer_models import THRESHOLD_HU, WINDOW_HU, save_threshold_checkpoint

from medseg.cli.main import main
from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series
from medseg.io.image import LPS_TO_RAS, ScalarImage

PATIENT = SeriesIdentity(patient_name="Doe^Jane", patient_id="PAT-31337")
#: Radius (mm) and intensity (HU) of the planted sphere.
SPHERE_MM, SPHERE_HU = 9.0, 400.0


@pytest.fixture(scope="module")
def checkpoint_3d(tmp_path_factory) -> Path:
    return save_threshold_checkpoint(
        tmp_path_factory.mktemp("models") / "ct.pt", 3, [3.0, 3.0, 3.0], [32, 32, 16]
    )


@pytest.fixture(scope="module")
def checkpoint_2d(tmp_path_factory) -> Path:
    scheme = {"modality": "XRAY", "scheme": "percentile", "lower": 0.5, "upper": 99.5}
    path = tmp_path_factory.mktemp("models") / "xray.pt"
    return save_threshold_checkpoint(path, 2, [1.5, 1.5], [128, 128], scheme, threshold=0.5)


def infer(source: Path, model: Path, out: Path, *extra: str) -> tuple[int, dict]:
    status = main(
        ["infer", str(source), "--model", str(model), "--out", str(out), "--precision", "fp32", *extra]
    )
    return status, json.loads((out / "summary.json").read_text())


def only_result(out: Path) -> Path:
    [result] = [p.parent for p in out.glob("*/result.json")]
    return result


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    z, x = np.radians(degrees_z), np.radians(degrees_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


def sphere_series(folder: Path, direction: np.ndarray, centre_mm: np.ndarray, identity=PATIENT) -> list[Path]:
    """A 0 HU volume with a bright sphere at `centre_mm` (RAS), on a grid with `direction` columns."""
    shape, spacing = np.array([40, 36, 20]), np.array([1.1, 1.3, 2.0])
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = centre_mm - affine[:3, :3] @ ((shape - 1) / 2 + [3, -2, 1])
    index = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:]
    inside = np.linalg.norm(world - centre_mm[:, None], axis=0) <= SPHERE_MM
    array = np.where(inside, SPHERE_HU, 0.0).reshape(tuple(shape)).astype(np.float32)
    return write_dicom_series(ScalarImage(array, affine), folder, "CT", identity)


def mask_world_points(path: Path) -> np.ndarray:
    """RAS mm positions of the labelled voxels of a NIfTI mask, read with nibabel."""
    mask = nib.load(path)
    index = np.argwhere(np.asarray(mask.dataobj) > 0)
    return nib.affines.apply_affine(mask.affine, index)


def test_real_ct_series_mask_and_seg_line_up_with_the_source(datasets_dir, tmp_path, checkpoint_3d):
    folder = datasets_dir / "totalseg_ct_mr_examples" / "example_ct_dicom"
    status, summary = infer(folder, checkpoint_3d, tmp_path)
    assert status == 0 and summary["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    result = only_result(tmp_path)

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    ct = reader.Execute()
    hu = sitk.GetArrayFromImage(ct).T  # (i, j, k) in SimpleITK's slice order
    ct_affine = np.eye(4)
    ct_affine[:3, :3] = np.asarray(ct.GetDirection()).reshape(3, 3) * ct.GetSpacing()
    ct_affine[:3, 3] = ct.GetOrigin()
    mask_image = nib.load(result / "mask.nii.gz")
    mask = np.asarray(mask_image.dataobj)
    np.testing.assert_allclose(mask_image.affine, LPS_TO_RAS @ ct_affine, atol=1e-3)
    assert mask.shape == hu.shape
    # Round trip through 3 mm: the boundary moves by at most a voxel, the inside stays put.
    assert ((mask == 1) == (hu > THRESHOLD_HU)).mean() > 0.9

    seg = pydicom.dcmread(result / "seg.dcm")
    assert "not for clinical use" in seg.SeriesDescription.lower()
    [segment] = seg.SegmentSequence
    assert segment.SegmentLabel == "bright lesion"
    assert (
        segment.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
    )
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue  # a coded type (SNOMED CT Lesion)
    assert segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentAlgorithmName
    uid_to_slice = {
        (pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID): k
        for k, f in enumerate(files)
    }
    frames = seg.pixel_array
    assert len(frames) == len(files)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uid_to_slice[source]
        np.testing.assert_array_equal(frame, mask[:, :, k].T)
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(position, ct.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-3)
    stats = json.loads((result / "result.json").read_text())
    voxel_ml = np.prod(ct.GetSpacing()) / 1000
    assert stats["structures"]["bright lesion"]["volume_ml"] == pytest.approx((mask == 1).sum() * voxel_ml)
    assert stats["grid"]["spacing_mm"] == pytest.approx(ct.GetSpacing(), abs=1e-5)
    assert list((result / "overlays").glob("*.png"))


@pytest.mark.parametrize(
    "direction",
    [rotation(25.0, 20.0), np.diag([1.0, 1.0, -1.0]) @ rotation(0.0, 0.0)],
    ids=["oblique", "flipped"],
)
def test_sphere_is_found_where_it_was_planted(tmp_path, checkpoint_3d, direction):
    centre = np.array([12.0, -30.0, 55.0])
    sphere_series(tmp_path / "in" / "series", direction, centre)
    status, _ = infer(tmp_path / "in", checkpoint_3d, tmp_path / "out")
    assert status == 0
    result = only_result(tmp_path / "out")
    points = mask_world_points(result / "mask.nii.gz")
    np.testing.assert_allclose(points.mean(axis=0), centre, atol=1.0)
    distance = np.linalg.norm(points - centre, axis=1)
    assert distance.max() < SPHERE_MM + 2.5  # nothing outside the sphere (3 mm model grid)
    expected_ml = 4 / 3 * np.pi * SPHERE_MM**3 / 1000
    volume = json.loads((result / "result.json").read_text())["structures"]["bright lesion"]["volume_ml"]
    assert volume == pytest.approx(expected_ml, rel=0.25)
    assert json.loads((result / "result.json").read_text())["structures"]["bright lesion"]["lesions"] == 1


def test_ensemble_writes_an_uncertainty_map_where_its_members_disagree(tmp_path, checkpoint_3d):
    """Members thresholding at 100 and 350 HU disagree inside the 400 HU sphere and nowhere else."""
    window = WINDOW_HU[1] - WINDOW_HU[0]
    strict = save_threshold_checkpoint(
        tmp_path / "strict.pt", 3, [3.0, 3.0, 3.0], [32, 32, 16], threshold=(350 - WINDOW_HU[0]) / window
    )
    centre = np.array([0.0, 0.0, 0.0])
    sphere_series(tmp_path / "in" / "series", np.eye(3), centre)
    models = ["--model", str(checkpoint_3d), str(strict)]
    status = main(
        ["infer", str(tmp_path / "in"), *models, "--out", str(tmp_path / "out"), "--precision", "fp32"]
    )
    assert status == 0
    result = only_result(tmp_path / "out")
    mask, uncertainty = nib.load(result / "mask.nii.gz"), nib.load(result / "uncertainty.nii.gz")
    np.testing.assert_allclose(uncertainty.affine, mask.affine, atol=1e-6)
    assert uncertainty.shape == mask.shape
    values = np.asarray(uncertainty.dataobj)
    index = np.indices(mask.shape).reshape(3, -1).T
    distance = np.linalg.norm(nib.affines.apply_affine(mask.affine, index) - centre, axis=1).reshape(
        mask.shape
    )
    assert values[distance < SPHERE_MM - 4].min() > 0.95  # the members' mean softmax is near 0.5
    assert values[distance > SPHERE_MM + 6].max() < 0.05  # both are sure it is background
    stats = json.loads((result / "result.json").read_text())["uncertainty"]
    assert stats["file"] == "uncertainty.nii.gz" and stats["mean_in_structure"]["bright lesion"] > 0.6
    assert "Uncertainty" in (result / "report.html").read_text()

    status, _ = infer(tmp_path / "in", checkpoint_3d, tmp_path / "single", "--no-seg", "--no-overlays")
    single = only_result(tmp_path / "single")
    assert status == 0 and not (single / "uncertainty.nii.gz").exists()
    assert json.loads((single / "result.json").read_text())["uncertainty"] is None


def test_chest_xray_png_and_dicom_radiograph(datasets_dir, tmp_path, checkpoint_2d):
    png = sorted((datasets_dir / "cxr_lung_mc_shenzhen" / "images").glob("*.png"))[0]
    status, _ = infer(png, checkpoint_2d, tmp_path / "png")
    assert status == 0
    mask = nib.load(only_result(tmp_path / "png") / "mask.nii.gz")
    pixels = np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(png)))).T
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    assert mask.shape[:2] == pixels.shape
    labels = np.asarray(mask.dataobj).reshape(pixels.shape)
    low, high = np.percentile(pixels, [0.5, 99.5])
    bright = pixels > (low + high) / 2
    assert (labels.astype(bool) == bright).mean() > 0.95

    stored = np.full((90, 120), 800)
    rows, columns = np.indices(stored.shape)
    stored[(rows - 40) ** 2 + (columns - 70) ** 2 <= 15**2] = 3000
    (tmp_path / "dx").mkdir()
    write_radiograph(tmp_path / "dx" / "cxr.dcm", stored, pixel_spacing=[1.2, 1.4])
    status, summary = infer(tmp_path / "dx", checkpoint_2d, tmp_path / "dx_out")
    assert status == 0, summary
    result = only_result(tmp_path / "dx_out")
    labels = np.asarray(nib.load(result / "mask.nii.gz").dataobj).reshape(columns.shape[::-1])
    assert (labels.T.astype(bool) == (stored > 1000)).mean() > 0.98
    np.testing.assert_allclose(np.argwhere(labels.T).mean(axis=0), [40, 70], atol=0.5)
    seg = pydicom.dcmread(result / "seg.dcm")
    np.testing.assert_array_equal(seg.pixel_array.reshape(stored.shape).astype(bool), labels.T.astype(bool))

    status, summary = infer(tmp_path / "dx", checkpoint_2d, tmp_path / "zoomed", "--tta-zooms", "0.9", "1.1")
    assert status == 0, summary
    result = only_result(tmp_path / "zoomed")
    zoomed = np.asarray(nib.load(result / "mask.nii.gz").dataobj).reshape(columns.shape[::-1])
    assert (zoomed.T.astype(bool) == (stored > 1000)).mean() > 0.98
    assert json.loads((result / "result.json").read_text())["settings"]["zooms"] == [0.9, 1.0, 1.1]
    assert (result / "uncertainty.nii.gz").exists()  # the zoomed copies' disagreement, as for mirroring


def test_messy_batch_survives_records_failures_and_reruns(tmp_path, checkpoint_3d):
    studies = tmp_path / "in"
    for name, centre in (("a", [0.0, 0.0, 0.0]), ("b", [5.0, 5.0, 5.0])):
        sphere_series(studies / name / "ct", np.eye(3), np.array(centre))
    broken = sphere_series(studies / "c" / "ct", np.eye(3), np.zeros(3))
    broken[len(broken) // 2].unlink()  # a missing slice: the geometry is refused, not guessed
    write_non_image(studies / "c" / "report.dcm", "1.2.840.10008.5.1.4.1.1.88.22", "SR", "1.2.3.4")

    status, summary = infer(studies, checkpoint_3d, tmp_path / "out", "--no-overlays")
    assert status == 3  # some inputs failed
    assert summary["counts"] == {"done": 2, "skipped": 1, "failed": 1}
    [failed] = [item for item in summary["items"] if item["status"] == "failed"]
    assert failed["input"] == "c/ct" and failed["reason"]
    [skipped] = [item for item in summary["items"] if item["status"] == "skipped"]
    assert "structured report" in skipped["reason"]
    names = [p.name for p in (tmp_path / "out").rglob("*")]
    assert not [n for n in names if "Doe" in n or "PAT-31337" in n or n.startswith(".")]
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*/mask.nii.gz")}
    assert len(finished) == 2

    status, summary = infer(studies, checkpoint_3d, tmp_path / "out", "--no-overlays")
    assert status == 3 and summary["counts"] == {"done": 0, "skipped": 3, "failed": 1}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*/mask.nii.gz")} == finished


def test_two_ranks_share_the_studies(tmp_path, checkpoint_3d, monkeypatch):
    """Two DICOM series and a NIfTI file (RANK/WORLD_SIZE as torchrun sets them)."""
    studies = tmp_path / "in"
    for name in "ab":
        sphere_series(studies / name, np.eye(3), np.zeros(3))
    nifti_affine = np.diag([1.5, -1.5, 2.0, 1.0])
    volume = np.zeros((20, 24, 16), np.int16)
    volume[5:12, 6:14, 4:9] = 300
    nib.save(nib.Nifti1Image(volume, nifti_affine), studies / "c.nii.gz")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        status = main(
            [
                "infer",
                str(studies),
                "-m",
                str(checkpoint_3d),
                "-o",
                str(tmp_path / "out"),
                "--no-seg",
                "--no-overlays",
            ]
        )
        assert status == 0
        part = json.loads((tmp_path / "out" / f"summary.rank-{rank}-of-2.json").read_text())
        assert part["counts"]["done"] == (2 if rank == "0" else 1)
    merged = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert merged["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert len({item["key"] for item in merged["items"]}) == 3
    [nifti] = [item for item in merged["items"] if item["input"] == "c.nii.gz"]
    mask = nib.load(tmp_path / "out" / nifti["output"] / "mask.nii.gz")
    np.testing.assert_allclose(mask.affine, nifti_affine, atol=1e-5)
    found, truth = np.asarray(mask.dataobj) == 1, volume > THRESHOLD_HU
    assert (found == truth).mean() > 0.97  # the model works on a 3 mm grid: edges may move a voxel
    centre = nib.affines.apply_affine(nifti_affine, np.argwhere(truth).mean(axis=0))
    np.testing.assert_allclose(mask_world_points(mask.get_filename()).mean(axis=0), centre, atol=1.0)
