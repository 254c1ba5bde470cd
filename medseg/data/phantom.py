"""A synthetic abdominal CT phantom: body, organs and liver tumours with realistic Hounsfield units.

Each case is drawn at random from `PhantomConfig`: an elliptical body (fat rim around muscle), a spine,
liver, spleen and two kidneys placed with jitter, and 1–4 hypodense tumours of varied size inside the
liver; then Gaussian noise and a slight blur like a reconstruction kernel. Cases come out in DICOM's
usual axial orientation (rows running anterior to posterior, slices inferior to superior), so they can
be written as DICOM series with `medseg.io.dicom.writer.write_dicom_series` and read back unchanged.

Used by `medseg demo` and by tests that need CT data with known truth.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.io.dicom.writer import SeriesIdentity, write_dicom_series
from medseg.io.image import LabelMap, ScalarImage
from medseg.io.volume import write_volume
from medseg.utils.atomic import write_text_atomic

#: Label values of the phantom's structures.
PHANTOM_LABELS = {0: "background", 1: "liver", 2: "spleen", 3: "kidney", 4: "tumour"}

#: Mean Hounsfield units (portal venous phase) and the noise added on top.
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 45.0,
    "bone": 450.0,
    "liver": 105.0,
    "spleen": 125.0,
    "kidney": 185.0,
    "tumour": 40.0,
}
NOISE_HU = 18.0
BLUR_SIGMA_VOXELS = 0.6


@dataclass(frozen=True)
class PhantomConfig:
    """Grid of every case: voxel counts (i, j, k) and spacing in mm (i and j in-plane, k between slices)."""

    shape: tuple[int, int, int] = (96, 96, 40)
    spacing: tuple[float, float, float] = (3.5, 3.5, 5.0)
    max_tumours: int = 4
    tumour_radius_mm: tuple[float, float] = (7.0, 24.0)


@dataclass
class PhantomCase:
    """One generated case: the CT in HU and its label map on the same grid."""

    case_id: str
    image: ScalarImage
    label: LabelMap


def _affine(config: PhantomConfig) -> np.ndarray:
    """RAS+ affine of DICOM's standard axial grid (i towards patient left, j posterior, k superior)."""
    spacing = np.array(config.spacing)
    extent = (np.array(config.shape) - 1) * spacing
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [extent[0] / 2, extent[1] / 2, -extent[2] / 2]
    return affine


def _ellipsoid(grid: np.ndarray, centre_mm, radii_mm, angle_rad: float = 0.0) -> np.ndarray:
    """Boolean mask of an ellipsoid rotated by `angle_rad` in the axial plane; `grid` is (3, ...) in mm."""
    x, y, z = (grid[d] - centre_mm[d] for d in range(3))
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    u, v = cos * x + sin * y, -sin * x + cos * y
    return (u / radii_mm[0]) ** 2 + (v / radii_mm[1]) ** 2 + (z / radii_mm[2]) ** 2 <= 1.0


def generate_case(case_id: str, seed: int, config: PhantomConfig = PhantomConfig()) -> PhantomCase:
    """Generate one case. The same `seed` always gives the same case."""
    rng = np.random.default_rng(seed)
    affine = _affine(config)
    index = np.indices(config.shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *config.shape)
    # Centres below are RAS+ mm: +x is the patient's right (liver), -y is posterior (spine).

    def jitter(scale: float) -> float:
        return rng.uniform(-scale, scale)

    def organ(centre, radii, spread=0.12):
        radii = np.array(radii) * (1 + rng.uniform(-spread, spread, 3))
        centre = np.array(centre) + np.array([jitter(8), jitter(8), jitter(10)])
        return _ellipsoid(world, centre, radii, angle_rad=jitter(0.3))

    body = organ((0, 0, 0), (150, 105, 400), spread=0.08)
    muscle = organ((0, 0, 0), (132, 90, 400), spread=0.08) & body
    spine = organ((0, -55, 0), (16, 16, 400), spread=0.1) & body
    liver = organ((55, 10, 10), (68, 58, 70)) & muscle
    spleen = organ((-75, -15, 15), (28, 38, 45)) & muscle & ~liver
    kidneys = (organ((-48, -40, -45), (22, 28, 42)) | organ((48, -40, -45), (22, 28, 42))) & muscle
    kidneys &= ~liver & ~spleen & ~spine

    label = np.zeros(config.shape, dtype=np.uint8)
    label[liver], label[spleen], label[kidneys] = 1, 2, 3
    # Tumour centres lie at least two voxels inside the liver, so no lesion is only a rim.
    liver_points = np.argwhere(ndimage.binary_erosion(liver, iterations=2))
    for _ in range(rng.integers(1, config.max_tumours + 1)):
        centre = world[(slice(None), *liver_points[rng.integers(len(liver_points))])]
        radius = rng.uniform(*config.tumour_radius_mm)
        label[_ellipsoid(world, centre, radius * rng.uniform(0.8, 1.2, 3), jitter(np.pi)) & liver] = 4

    hu = np.full(config.shape, HU["air"], dtype=np.float32)
    hu[body], hu[muscle], hu[spine] = HU["fat"], HU["muscle"], HU["bone"]
    for value, name in PHANTOM_LABELS.items():
        if value:
            hu[label == value] = HU[name] + rng.normal(0, 6)
    hu = ndimage.gaussian_filter(hu, BLUR_SIGMA_VOXELS) + rng.normal(0, NOISE_HU, config.shape)
    image = ScalarImage(np.rint(hu).astype(np.int16), affine, {"modality": "CT"})
    return PhantomCase(case_id, image, LabelMap(label, affine.copy()))


def write_cohort(
    folder: str | os.PathLike, n_cases: int, seed: int = 0, config: PhantomConfig = PhantomConfig()
) -> list[dict[str, str]]:
    """Write `n_cases` as DICOM CT series plus NIfTI label maps; return one record per case.

    Layout: ``<folder>/<case>/dicom/*.dcm`` and ``<folder>/<case>/label.nii.gz``. Records hold
    ``id``, ``dicom`` and ``label`` paths.
    """
    folder = Path(folder)
    records = []
    for number in range(n_cases):
        case = generate_case(f"phantom_{number:03d}", seed=seed * 1000 + number, config=config)
        case_dir = folder / case.case_id
        identity = SeriesIdentity(
            patient_id=f"PHANTOM-{number:04d}",
            series_description="Synthetic abdomen CT",
            study_description="medseg phantom",
        )
        write_dicom_series(case.image, case_dir / "dicom", "CT", identity)
        write_volume(case.label, case_dir / "label.nii.gz")
        records.append(
            {"id": case.case_id, "dicom": str(case_dir / "dicom"), "label": str(case_dir / "label.nii.gz")}
        )
    return records


def _relative(path: str, folder: Path) -> str:
    return Path(path).relative_to(folder).as_posix()


def write_phantom_dataset(
    folder: str | os.PathLike, n_cases: int, seed: int = 0, config: PhantomConfig | None = None
) -> Path:
    """Write `n_cases` synthetic abdomen CTs (DICOM + NIfTI labels) and a JSON manifest; return its path.

    The manifest names the phantom's classes and the CT modality, so it is a ``dataset_dir`` for the
    abdomen bundle as it is.
    """
    folder = Path(folder)
    records = write_cohort(folder, n_cases, seed=seed, config=config or PhantomConfig())
    manifest = {
        "name": "abdomen_phantom",
        "labels": {str(value): name for value, name in PHANTOM_LABELS.items()},
        "modalities": ["CT"],
        "cases": [  # relative to the manifest, so the folder can move
            {"id": r["id"], "image": _relative(r["dicom"], folder), "label": _relative(r["label"], folder)}
            for r in records
        ],
    }
    return write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")
