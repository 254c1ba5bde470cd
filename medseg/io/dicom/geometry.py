"""Order the frames of a series into a volume and check that they form one regular grid.

Frames are sorted by ImagePositionPatient projected on the slice normal, never by file name or
InstanceNumber. A series is refused with `GeometryError` (saying what and where) when the frames
disagree on orientation, size or pixel spacing, when a position repeats, when slice spacing is not
uniform (missing slices included) or when the slices are sheared (gantry tilt), unless a repair in
`REPAIRS` was asked for. Several time points at the same positions are refused unless one is chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medseg.errors import GeometryError
from medseg.io.dicom.frames import STACK_KEYS, Frame

#: Repairs that can be asked for, each documented in docs/io.md.
REPAIRS = {
    "resample_tilt": "resample a gantry-tilted (sheared) stack onto an orthogonal grid",
    "resample_spacing": "resample non-uniform slice spacing (or missing slices) onto a uniform grid",
}
#: Largest difference between the orientation cosines of two frames of one series.
ORIENTATION_TOLERANCE = 1e-3
#: Largest relative difference between pixel spacings of two frames of one series.
PIXEL_SPACING_TOLERANCE = 1e-3
#: Positions closer than this along the normal are the same slice position (mm).
SAME_POSITION_MM = 1e-3
#: Largest deviation of one slice step from the median step, as a fraction of the median step...
SPACING_TOLERANCE = 0.01
#: ...or in mm, whichever is larger (positions are decimal strings, often rounded to 0.01 mm).
SPACING_TOLERANCE_MM = 0.02
#: Largest in-plane offset of a slice origin from the line through the first one, in pixels, that is
#: still rounding rather than a tilt or a misplaced slice.
IN_PLANE_TOLERANCE_PIXELS = 0.05
#: Shear angles above this are not a gantry tilt (scanners tilt up to about 30 degrees) but a broken stack.
MAX_TILT_DEGREES = 45.0
#: Slice spacing used for a single-slice series without SliceThickness (mm); flagged in meta.
DEFAULT_SLICE_SPACING_MM = 1.0


@dataclass
class Stack:
    """Frames in slice order and the grid they form (LPS+ affine before any repair)."""

    frames: list[Frame]
    affine_lps: np.ndarray
    positions: np.ndarray  # position of each slice along the normal (mm), ascending
    in_plane_shift: np.ndarray  # in-plane offset (mm, LPS) of each slice origin from the untilted line
    repairs: list[str] = field(default_factory=list)  # e.g. "resample_tilt (12.00 degrees)"
    notes: list[str] = field(default_factory=list)

    def needs(self, repair: str) -> bool:
        """True when `repair` (a key of REPAIRS) must be applied to the pixels."""
        return any(done.split(" ", 1)[0] == repair for done in self.repairs)


def check_repairs(repair: Collection[str]) -> None:
    unknown = set(repair) - set(REPAIRS)
    if unknown:
        raise ValueError(f"unknown repair {sorted(unknown)}; choose from {sorted(REPAIRS)}")


def assemble(
    frames: Sequence[Frame],
    repair: Collection[str] = (),
    time_point: int | None = None,
    select: Mapping[str, str] | None = None,
) -> Stack:
    """Sort `frames` into slice order and validate the grid; see the module docstring. `select` keeps the
    frames whose header values match (``{"EchoNumbers": "1"}``) when a series stacks several volumes."""
    check_repairs(repair)
    if not frames:
        raise GeometryError(None, "no image frames to assemble")
    _check_consistent(frames)
    frames = _select_volume(frames, select or {})
    frames = _select_time_point(frames, time_point)
    _check_stacked(frames)
    reference = frames[0]
    normal = reference.normal
    frames = sorted(frames, key=lambda f: float(f.position @ normal))
    positions = np.array([f.position @ normal for f in frames])
    _check_duplicates(frames, positions)

    row_dir, col_dir = reference.orientation[:3], reference.orientation[3:]
    row_spacing, col_spacing = reference.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 3] = frames[0].position
    stack = Stack(list(frames), affine, positions, np.zeros((len(frames), 3)))

    if len(frames) == 1:
        thickness = reference.slice_thickness
        if not thickness:
            stack.notes.append("slice_spacing_unknown")
        affine[:3, 2] = normal * (thickness or DEFAULT_SLICE_SPACING_MM)
        return stack

    offsets = np.array([f.position - frames[0].position for f in frames])
    stack.in_plane_shift = offsets - np.outer(positions - positions[0], normal)
    _check_tilt(stack, "resample_tilt" in repair)
    steps = np.diff(positions)
    _check_spacing(stack, steps, "resample_spacing" in repair)
    affine[:3, 2] = normal * float(np.median(steps))
    return stack


def _check_consistent(frames: Sequence[Frame]) -> None:
    for frame in frames:
        if not np.all(np.isfinite(frame.position)):
            raise GeometryError(frame.where, f"ImagePositionPatient {frame.position.tolist()} is not finite")
    reference = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (reference.rows, reference.columns):
            raise GeometryError(
                frame.where,
                f"image size {frame.rows}x{frame.columns} differs from {reference.rows}x{reference.columns} "
                f"in {reference.where}",
            )
        if np.max(np.abs(frame.orientation - reference.orientation)) > ORIENTATION_TOLERANCE:
            raise GeometryError(
                frame.where,
                f"ImageOrientationPatient {np.round(frame.orientation, 4).tolist()} differs from "
                f"{np.round(reference.orientation, 4).tolist()} in {reference.where}",
            )
        if not np.allclose(frame.pixel_spacing, reference.pixel_spacing, rtol=PIXEL_SPACING_TOLERANCE):
            raise GeometryError(
                frame.where,
                f"PixelSpacing {list(frame.pixel_spacing)} differs from {list(reference.pixel_spacing)} "
                f"in {reference.where}",
            )


def _matches(frame: Frame, key: str, wanted: str) -> bool:
    value = frame.stack_values.get(key)
    if value is None:
        return False
    try:
        return float(value) == float(wanted)
    except ValueError:
        return value.replace("\\", "/").upper() == wanted.replace("\\", "/").upper()


def _select_volume(frames: Sequence[Frame], select: Mapping[str, str]) -> list[Frame]:
    """The frames whose header values match every `select` entry; say what the stack is when positions
    repeat and a header keyword tells the volumes apart."""
    for key, wanted in select.items():
        if key not in STACK_KEYS:
            raise GeometryError(None, f"cannot select by {key!r}; choose one of {', '.join(STACK_KEYS)}")
        chosen = [frame for frame in frames if _matches(frame, key, wanted)]
        if not chosen:
            found = sorted({f.stack_values.get(key, "(none)") for f in frames})
            raise GeometryError(
                frames[0].path.parent, f"no frames with {key} {wanted}; the series has {found}"
            )
        frames = chosen
    return list(frames)


def _check_stacked(frames: Sequence[Frame]) -> None:
    """When positions still repeat and one header keyword splits the frames into volumes of one size each,
    say what the stack is and how to choose (instead of a bare "duplicate slice")."""
    normal = frames[0].normal
    rounded = Counter(round(float(f.position @ normal) / SAME_POSITION_MM) for f in frames)
    repeats = max(rounded.values())
    if repeats == 1:
        return
    for key in STACK_KEYS:
        groups = Counter(f.stack_values.get(key) for f in frames)
        if None in groups or len(groups) != repeats or len(set(groups.values())) != 1:
            continue
        values = ", ".join(sorted(groups, key=_number_first))
        raise GeometryError(
            frames[0].path.parent,
            f"the series stacks {repeats} volumes at the same slice positions, told apart by {key} "
            f"({values}); choose one with --select {key}=VALUE",
        )


def _number_first(value: str) -> tuple[float, str]:
    try:
        return float(value), value
    except ValueError:
        return float("inf"), value


def _time_key(frame: Frame) -> int | None:
    return frame.temporal_position if frame.temporal_position is not None else frame.acquisition_number


def _select_time_point(frames: Sequence[Frame], time_point: int | None) -> list[Frame]:
    """Keep the frames of one time point when the series repeats positions over time or acquisitions."""
    normal = frames[0].normal
    rounded = Counter(round(float(f.position @ normal) / SAME_POSITION_MM) for f in frames)
    repeated = max(rounded.values()) > 1
    keys = sorted({k for k in map(_time_key, frames) if k is not None})
    if time_point is not None:
        chosen = [f for f in frames if _time_key(f) == time_point]
        if not chosen:
            raise GeometryError(None, f"no frames with time point {time_point}; the series has {keys}")
        return chosen
    if repeated and len(keys) > 1:
        groups = Counter(_time_key(f) for f in frames)
        if len(set(groups.values())) == 1 and len(groups) == max(rounded.values()):
            source = (
                "TemporalPositionIdentifier"
                if frames[0].temporal_position is not None
                else "AcquisitionNumber"
            )
            raise GeometryError(
                frames[0].path.parent,
                f"the series holds {len(keys)} time points or acquisitions ({source} {keys}) at the same "
                "slice positions; read one with time_point=N",
            )
    return list(frames)


def _check_duplicates(frames: Sequence[Frame], positions: np.ndarray) -> None:
    same = np.flatnonzero(np.diff(positions) < SAME_POSITION_MM)
    if same.size:
        a, b = frames[same[0]], frames[same[0] + 1]
        raise GeometryError(
            b.where,
            f"duplicate slice: same position ({positions[same[0]]:.3f} mm along the normal) as {a.where}",
        )


def _check_tilt(stack: Stack, allowed: bool) -> None:
    shift = stack.in_plane_shift
    tolerance = IN_PLANE_TOLERANCE_PIXELS * min(stack.frames[0].pixel_spacing)
    if np.max(np.linalg.norm(shift, axis=1)) <= tolerance:
        return
    distance = stack.positions - stack.positions[0]
    per_mm = shift[-1] / distance[-1]
    off_line = np.linalg.norm(shift - np.outer(distance, per_mm), axis=1)
    worst = int(np.argmax(off_line))
    if off_line[worst] > tolerance:
        raise GeometryError(
            stack.frames[worst].where,
            f"slice origin is {off_line[worst]:.2f} mm off the line through the other slices; "
            "the positions do not form one stack",
        )
    angle = float(np.degrees(np.arctan(np.linalg.norm(per_mm))))
    if angle > MAX_TILT_DEGREES:
        raise GeometryError(
            stack.frames[-1].where,
            f"slice origins move {np.linalg.norm(shift[-1]):.2f} mm in-plane over {distance[-1]:.2f} mm "
            f"({angle:.1f} degrees, more than any gantry tilt): the positions do not form one stack",
        )
    if not allowed:
        raise GeometryError(
            stack.frames[0].path.parent,
            f"gantry tilt of {angle:.2f} degrees (slices are sheared, first slice {stack.frames[0].where}); "
            "read with repair=['resample_tilt'] to resample onto an orthogonal grid",
        )
    stack.repairs.append(f"resample_tilt ({angle:.2f} degrees)")


def _check_spacing(stack: Stack, steps: np.ndarray, allowed: bool) -> None:
    median = float(np.median(steps))
    deviation = np.abs(steps - median)
    if np.max(deviation) <= max(SPACING_TOLERANCE * median, SPACING_TOLERANCE_MM):
        return
    worst = int(np.argmax(deviation))
    before, after = stack.frames[worst], stack.frames[worst + 1]
    ratio = steps[worst] / median
    if abs(ratio - round(ratio)) <= SPACING_TOLERANCE and round(ratio) >= 2:
        what = f"{round(ratio) - 1} missing slice(s)"
    else:
        what = "non-uniform slice spacing"
    problem = (
        f"{what}: step of {steps[worst]:.3f} mm between {before.where} ({stack.positions[worst]:.3f} mm) "
        f"and {after.where} ({stack.positions[worst + 1]:.3f} mm), usual step {median:.3f} mm"
    )
    if not allowed:
        raise GeometryError(
            before.path.parent,
            f"{problem}; read with repair=['resample_spacing'] to resample onto a uniform grid",
        )
    stack.repairs.append(f"resample_spacing ({what})")
