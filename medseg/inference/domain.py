"""How far an input is from what the model was trained on: ``ok``, ``caution`` or ``out-of-domain``.

Every checkpoint carries its plan, and the plan the training data's fingerprint: modality, dimensionality,
median voxel spacing and image size, and intensity percentiles of the labelled voxels. `check_domain`
compares one input with them, as a second opinion must before anyone reads its mask:

* **modality** (from the DICOM header; unknown for NIfTI and PNG): another family than the model's (CT vs
  MR vs radiograph) is out of domain;
* **dimensionality**: a 2D model on a 3D image (or the reverse) is out of domain;
* **spacing** and **field of view**: more than `SPACING_RATIO` / `FIELD_RATIO` times finer or coarser
  than the training median is a caution (the network sees anatomy at another scale);
* **intensity**: for CT (Hounsfield units mean the same everywhere) an image whose middle half lies
  outside the training intensities is a caution; an image with many voxels below `AIR_HU` given to an MR
  or radiograph model that never saw a negative value looks like CT: out of domain.

Inputs flagged out of domain are skipped with the reason unless the user forces them; every flag and its
reasons go where the user looks (the console line, result.json, summary.json, report.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medseg.data.planner import Plan
from medseg.io.image import ScalarImage

OK, CAUTION, OUT_OF_DOMAIN = "ok", "caution", "out-of-domain"
#: Modality names (upper case) by family; a name in none of them is unknown and never compared.
MODALITY_FAMILIES = {
    "CT": ("CT",),
    "MR": ("MR", "MRI", "T1", "T1W", "T1C", "T2", "T2W", "FLAIR", "PD", "ADC", "DWI"),
    "X-ray": ("XRAY", "X-RAY", "CXR", "DX", "CR", "XR", "RADIOGRAPH", "MG", "RF", "PX", "IO"),
    "ultrasound": ("US",),
    "nuclear medicine": ("PT", "NM", "PET"),
}
#: Per axis, an input spacing this many times the training median (or its inverse) is a caution.
SPACING_RATIO = 3.0
#: The physical extent (mm) of the input against the training median, per axis: beyond this, a caution.
FIELD_RATIO = 4.0
#: Hounsfield units of air; a third of the voxels below it means CT-like data.
AIR_HU, AIR_SHARE = -500.0, 0.3
#: Voxels sampled for the intensity check (a CT has tens of millions).
INTENSITY_SAMPLES = 200_000


@dataclass
class DomainCheck:
    """The flag and why."""

    flag: str = OK
    reasons: list[str] = field(default_factory=list)

    def add(self, flag: str, reason: str) -> None:
        self.reasons.append(reason)
        if flag == OUT_OF_DOMAIN or (flag == CAUTION and self.flag == OK):
            self.flag = flag

    def as_dict(self) -> dict[str, object]:
        return {"flag": self.flag, "reasons": list(self.reasons)}

    def summary(self) -> str:
        return self.flag if not self.reasons else f"{self.flag}: {'; '.join(self.reasons)}"


def modality_family(name: str | None) -> str | None:
    """``CT``, ``MR``, ``X-ray``... for a modality name, or None when it is unknown."""
    upper = (name or "").strip().upper()
    return next((family for family, names in MODALITY_FAMILIES.items() if upper in names), None)


def check_domain(image: ScalarImage, plan: Plan) -> DomainCheck:
    """Compare `image` (its ``meta["modality"]`` when known) with the training data of `plan`."""
    check = DomainCheck()
    trained = plan.normalization[0].get("modality") if plan.normalization else None
    model_family, input_family = modality_family(trained), modality_family(image.meta.get("modality"))
    if model_family and input_family and model_family != input_family:
        check.add(OUT_OF_DOMAIN, f"the model was trained on {model_family}, the input is {input_family}")
    if image.ndim != plan.dim:
        check.add(OUT_OF_DOMAIN, f"the model is {plan.dim}D, the image {image.ndim}D {image.shape}")
        return check
    fingerprint = plan.fingerprint
    _check_grid(check, image, fingerprint.get("median_spacing"), fingerprint.get("median_shape"))
    intensity = (fingerprint.get("intensity") or [{}])[0]
    if intensity:
        _check_intensity(check, image, intensity, model_family)
    return check


def _check_grid(check: DomainCheck, image: ScalarImage, spacing: list | None, shape: list | None) -> None:
    if not spacing or len(spacing) != image.ndim:
        return
    # The fingerprint lists axes in RAS order for 3D, array order for 2D: compare sorted, so that only
    # scale counts, not which array axis holds it.
    mine, theirs = sorted(float(s) for s in image.spacing), sorted(float(s) for s in spacing)
    ratios = [a / b for a, b in zip(mine, theirs, strict=True) if a > 0 and b > 0]
    if ratios and max(max(ratios), 1 / min(ratios)) > SPACING_RATIO:
        shown = ", ".join(f"{s:.3g}" for s in mine)
        check.add(CAUTION, f"voxel spacing {shown} mm is far from the training median {theirs} mm")
    if shape and len(shape) == image.ndim:
        extent = sorted(float(n) * float(s) for n, s in zip(image.shape, image.spacing, strict=True))
        trained = sorted(float(n) * float(s) for n, s in zip(shape, spacing, strict=True))
        ratios = [a / b for a, b in zip(extent, trained, strict=True) if a > 0 and b > 0]
        if ratios and max(max(ratios), 1 / min(ratios)) > FIELD_RATIO:
            shown, usual = (" x ".join(f"{e:.0f}" for e in sizes) for sizes in (extent, trained))
            check.add(CAUTION, f"field of view {shown} mm is far from the training images' ({usual} mm)")


def _check_intensity(check: DomainCheck, image: ScalarImage, intensity: dict, family: str | None) -> None:
    values = image.array.ravel()
    if values.size > INTENSITY_SAMPLES:
        values = values[:: values.size // INTENSITY_SAMPLES]
    values = values.astype(np.float64)
    low, high = float(intensity.get("percentile_00_5", 0.0)), float(intensity.get("percentile_99_5", 0.0))
    if family in ("MR", "X-ray") and intensity.get("min", 0.0) >= 0 and np.mean(values < AIR_HU) > AIR_SHARE:
        check.add(
            OUT_OF_DOMAIN,
            f"{np.mean(values < AIR_HU):.0%} of the voxels are below {AIR_HU:g} (CT air), a value the "
            "model never saw",
        )
    elif family == "CT" and high > low:
        quartiles = np.percentile(values, [25, 75])
        if quartiles[0] > high or quartiles[1] < low:
            check.add(
                CAUTION,
                f"the image's middle half ({quartiles[0]:.0f}..{quartiles[1]:.0f} HU) lies outside the "
                f"training structures' intensities ({low:.0f}..{high:.0f} HU)",
            )
