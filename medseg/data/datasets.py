"""Find the cases of a dataset on disk: which image file(s) go with which label file.

A dataset is a list of **case records**, plain JSON-friendly dicts::

    {"id": "hippocampus_001", "image": "/abs/imagesTr/hippocampus_001.nii.gz",
     "label": "/abs/labelsTr/hippocampus_001.nii.gz", "split": "train"}

``image`` is a path or a list of paths (one per channel); ``split`` and ``mask_threshold`` (binarise a
mask at ``value > threshold``) are optional. Without a threshold, label values are read as they are,
except 8-bit pictures of masks (0/255, anti-aliased), which loading recognises and binarises
(`medseg.io.masks`). Class names come from the dataset (``dataset.json``, a manifest's ``labels``, a
``labels`` mapping given by the user); without them the planner names the values found (``label_1``...).
Supported layouts (see docs/datasets.md):

* MSD / nnU-Net: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``; channels as ``<case>_0000.nii.gz``.
* Image/mask folders, 2D or 3D, paired by file stem (``images/`` + ``masks/``, ``image/`` + ``label/``...);
  masks may carry a suffix (``X_mask.png``, ``X_seg.nii.gz``: `MASK_SUFFIXES`, found by themselves).
* A manifest, CSV or JSON, listing image, label and optional id and split.
* DICOM: ``images/<case>/`` series folders with ``labels/<case>.dcm`` (DICOM SEG) or a volume file.
* A PACS export: one folder per patient or study holding image series and the SEGs drawn on them.

`open_dataset` picks the layout; `medseg.data.loading.load_case` reads one record.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.data.splits import SPLIT_NAMES
from medseg.errors import InputError
from medseg.io.annotations import labelled_series
from medseg.io.dicom.files import SkippedFile, non_image_reason, read_dataset
from medseg.io.png import is_png_file
from medseg.io.volume import VOLUME_SUFFIXES, is_volume_file

log = logging.getLogger(__name__)

#: Folder names tried, in order, for 2D image/mask pairs.
IMAGE_FOLDER_NAMES = ("images", "image", "imgs")
MASK_FOLDER_NAMES = ("masks", "mask", "labels", "label")
#: Mask file suffixes tried when masks are named ``<image stem><suffix>``: the one that pairs the most
#: images wins ("" is the image's own name).
MASK_SUFFIXES = ("", "_mask", "_seg", "_label", "_labels", "_gt")
#: Separator between channel paths in one CSV ``image`` cell.
CSV_CHANNEL_SEPARATOR = ";"
#: Label file endings accepted next to DICOM series folders (``.dcm`` is a DICOM SEG).
DICOM_LABEL_SUFFIXES = (".dcm", *VOLUME_SUFFIXES)
#: nnU-Net v2 channel suffix: ``<case>_0000.nii.gz`` is channel 0.
CHANNEL_SUFFIX_DIGITS = 4

Record = dict[str, Any]


@dataclass
class Dataset:
    """The cases of a dataset and what its labels and channels mean."""

    name: str
    root: Path
    cases: list[Record]
    label_names: dict[int, str] = field(default_factory=dict)
    #: One modality name per image channel (e.g. ``["CT"]``, ``["MRI"]``, ``["XRAY"]``); "unknown" if unsaid.
    modalities: list[str] = field(default_factory=lambda: ["unknown"])
    layout: str = ""

    @property
    def ids(self) -> list[str]:
        return [case["id"] for case in self.cases]

    def describe(self, source: str | os.PathLike) -> dict[str, Any]:
        """What a plan records about the dataset (`medseg.data.planner.Plan.dataset`)."""
        return {
            "name": self.name,
            "source": str(Path(source).resolve()),
            "layout": self.layout,
            "num_cases": len(self.cases),
            "labels": {str(value): name for value, name in self.label_names.items()},
            "modalities": self.modalities,
        }


def strip_suffix(name: str) -> str:
    """File name without its image ending (``case.nii.gz`` -> ``case``)."""
    lower = name.lower()
    for suffix in (*VOLUME_SUFFIXES, ".png", ".jpg", ".jpeg", ".dcm"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_unique_ids(cases: list[Record], where: Path) -> None:
    seen: set[str] = set()
    for case in cases:
        if case["id"] in seen:
            raise InputError(where, f"case id {case['id']!r} appears twice")
        seen.add(case["id"])


def _label_names(raw: dict[str, Any]) -> dict[int, str]:
    """MSD writes ``{"0": "background"}``; nnU-Net v2 writes ``{"background": 0}`` (regions as lists). A
    list of names (``{"1": ["Lung-Left", "Lung_L"]}``, ROI name variants) is named by its first."""
    names: dict[int, str] = {}
    for key, value in raw.items():
        if str(key).lstrip("-").isdigit():
            names[int(key)] = str(value[0]) if isinstance(value, list) and value else str(value)
        elif isinstance(value, int):
            names[value] = str(key)
    return dict(sorted(names.items()))


def _channel_files(folder: Path, stem: str, ending: str) -> list[Path]:
    """``<stem>_0000<ending>``, ``<stem>_0001<ending>``... as long as they exist."""
    files = []
    while (candidate := folder / f"{stem}_{len(files):0{CHANNEL_SUFFIX_DIGITS}d}{ending}").is_file():
        files.append(candidate)
    return files


def _msd_image(root: Path, entry: str, ending: str) -> list[Path]:
    path = (root / entry).resolve()
    if path.is_file():
        return [path]
    channels = _channel_files(path.parent, strip_suffix(path.name), ending)
    if not channels:
        raise InputError(path, "image listed in dataset.json does not exist (nor as _0000 channel files)")
    return channels


def _as_image(paths: list[Path]) -> str | list[str]:
    return str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]


def read_msd(root: str | os.PathLike) -> Dataset:
    """An MSD or nnU-Net (v1/v2) dataset folder with ``dataset.json``, ``imagesTr/`` and ``labelsTr/``."""
    root = Path(root)
    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(meta_path, f"cannot read dataset.json ({error})") from None
    ending = meta.get("file_ending", ".nii.gz")
    cases = []
    if "training" in meta:
        for entry in meta["training"]:
            label = (root / entry["label"]).resolve()
            if not label.is_file():
                raise InputError(label, "label listed in dataset.json does not exist")
            image = _msd_image(root, entry["image"], ending)
            cases.append({"id": strip_suffix(label.name), "image": _as_image(image), "label": str(label)})
    else:  # nnU-Net v2: no list, the files are the list
        for label in sorted((root / "labelsTr").glob(f"*{ending}")):
            case_id = strip_suffix(label.name)
            image = _channel_files(root / "imagesTr", case_id, ending)
            if not image:
                raise InputError(root / "imagesTr", f"no {case_id}_0000{ending} for label {label.name}")
            cases.append({"id": case_id, "image": _as_image(image), "label": str(label)})
    if not cases:
        raise InputError(root, "dataset.json lists no training cases")
    _check_unique_ids(cases, meta_path)
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "unknown"}
    modalities = [str(channels[key]) for key in sorted(channels, key=int)]
    return Dataset(
        name=str(meta.get("name", root.name)),
        root=root,
        cases=cases,
        label_names=_label_names(meta.get("labels", {})),
        modalities=modalities,
        layout="msd",
    )


def _first_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / name for name in names if (root / name).is_dir()), None)


def read_image_folders(
    root: str | os.PathLike,
    modality: str = "unknown",
    mask_threshold: float | None = None,
    mask_suffix: str | None = None,
) -> Dataset:
    """Image/mask pairs (2D or 3D) in ``root/images`` and ``root/masks`` (or image/label...), paired by stem.

    A mask is named like its image plus `mask_suffix` (e.g. ``"_mask"``); None tries `MASK_SUFFIXES` and
    takes the one that pairs the most images. Label values are read as they are (8-bit pictures of masks
    are binarised when loaded); `mask_threshold` binarises every mask at ``value > mask_threshold``.
    Unpaired files are skipped with a warning.
    """
    root = Path(root)
    images_dir, masks_dir = _first_folder(root, IMAGE_FOLDER_NAMES), _first_folder(root, MASK_FOLDER_NAMES)
    if images_dir is None or masks_dir is None:
        raise InputError(
            root, f"needs an image folder {IMAGE_FOLDER_NAMES} and a mask folder {MASK_FOLDER_NAMES}"
        )
    masks = {strip_suffix(p.name): p for p in masks_dir.iterdir() if is_png_file(p) or is_volume_file(p)}
    images = [p for p in sorted(images_dir.iterdir()) if is_png_file(p) or is_volume_file(p)]
    suffixes = MASK_SUFFIXES if mask_suffix is None else (mask_suffix,)
    suffix = max(suffixes, key=lambda s: sum(strip_suffix(p.name) + s in masks for p in images))
    cases, unpaired = [], 0
    for image in images:
        mask = masks.pop(strip_suffix(image.name) + suffix, None)
        if mask is None:
            unpaired += 1
            continue
        case: Record = {"id": strip_suffix(image.name), "image": str(image), "label": str(mask)}
        if mask_threshold is not None:
            case["mask_threshold"] = mask_threshold
        cases.append(case)
    if unpaired or masks:
        log.warning(
            "%s: skipped %d image(s) without mask, %d mask(s) without image", root, unpaired, len(masks)
        )
    if not cases:
        raise InputError(root, f"no image/mask pairs found in {images_dir.name}/ and {masks_dir.name}/")
    if suffix:
        log.info("%s: masks named <image>%s", root, suffix)
    return Dataset(root.name, root, cases, {}, [modality], "image_folders")


def _manifest_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and top-level settings (name, labels, modalities) of a CSV or JSON manifest."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [dict(row) for row in csv.DictReader(handle)]
        for row in rows:
            if CSV_CHANNEL_SEPARATOR in row.get("image", ""):
                row["image"] = row["image"].split(CSV_CHANNEL_SEPARATOR)
        return rows, {}
    document = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(document, list):
        return document, {}
    return list(document.get("cases", [])), document


def read_manifest(path: str | os.PathLike, modality: str = "unknown") -> Dataset:
    """A CSV or JSON manifest: rows with ``image`` (paths, relative to the manifest), ``label``, optional
    ``id``, ``split`` and ``mask_threshold`` (``label_threshold`` is read as its older name). A JSON
    manifest may be a list of rows or an object with
    ``cases`` and optional ``name``, ``labels`` and ``modalities``."""
    path = Path(path)
    try:
        rows, settings = _manifest_rows(path)
    except (OSError, ValueError, csv.Error) as error:
        raise InputError(path, f"cannot read manifest ({error})") from None
    cases = []
    for number, row in enumerate(rows, start=1):
        if not row.get("image") or not row.get("label"):
            raise InputError(path, f"row {number} needs both 'image' and 'label'")
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        resolved = [(path.parent / image.strip()).resolve() for image in images]
        label = (path.parent / str(row["label"]).strip()).resolve()
        for file in [*resolved, label]:
            if not file.exists():
                raise InputError(path, f"row {number}: {file} does not exist")
        case: Record = {"id": str(row.get("id") or strip_suffix(label.name)), "image": _as_image(resolved)}
        case["label"] = str(label)
        if row.get("split"):
            split = str(row["split"]).strip().lower()
            if split not in SPLIT_NAMES:
                raise InputError(
                    path, f"row {number}: split {row['split']!r} is not one of {', '.join(SPLIT_NAMES)}"
                )
            case["split"] = SPLIT_NAMES[split]
        threshold = row.get("mask_threshold", row.get("label_threshold"))
        if threshold not in (None, ""):
            case["mask_threshold"] = float(threshold)
        cases.append(case)
    if not cases:
        raise InputError(path, "manifest lists no cases")
    _check_unique_ids(cases, path)
    return Dataset(
        name=str(settings.get("name", path.stem)),
        root=path.parent,
        cases=cases,
        label_names=_label_names(settings.get("labels", {})),
        modalities=[str(m) for m in settings.get("modalities", [modality])],
        layout="manifest",
    )


def read_dicom_cases(root: str | os.PathLike, modality: str = "unknown") -> Dataset:
    """DICOM series folders ``root/images/<case>/``, labels ``root/labels/<case>.dcm`` (SEG) or a volume."""
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(root, "needs images/<case>/ DICOM folders and labels/<case>.dcm|.nii.gz files")
    labels = {
        strip_suffix(p.name): p for p in labels_dir.iterdir() if p.name.lower().endswith(DICOM_LABEL_SUFFIXES)
    }
    cases = []
    for series in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        if series.name not in labels:
            raise InputError(series, f"no label labels/{series.name}.dcm (or a volume file) for this series")
        cases.append({"id": series.name, "image": str(series), "label": str(labels[series.name])})
    if not cases:
        raise InputError(images_dir, "no DICOM series folders")
    return Dataset(root.name, root, cases, seg_class_names(cases), [dicom_modality(cases, modality)], "dicom")


def read_dicom_studies(root: str | os.PathLike, modality: str = "unknown") -> Dataset:
    """A PACS export: one folder per patient or study (``root/<case>/``, any depth below) holding DICOM image
    series and the DICOM SEG(s) or RTSTRUCT(s) drawn on them (``patient/CT/*.dcm``,
    ``patient/SEG/liver.dcm``; RTSTRUCT ROIs become classes through ``--labels`` names). Each SEG
    is paired with the series it references (by SeriesInstanceUID); that series' folder is the image. A
    folder with one image series and one label volume (``label.nii.gz``, ``.nrrd``...) beside it is a case
    too. A folder without a label is listed in a warning and left out: unlabelled, never labelled
    background."""
    root = Path(root)
    cases, unlabelled = [], []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        folders: dict[str, set[Path]] = {}
        segs: list[tuple[Path, list[str]]] = []
        volumes: list[Path] = []
        for path in sorted(p for p in case_dir.rglob("*") if p.is_file()):
            if is_volume_file(path):
                volumes.append(path)
                continue
            header = read_dataset(path, pixels=False)  # the images' own reader (bare files too)
            if isinstance(header, SkippedFile):  # not DICOM: not part of a study
                continue
            referenced = labelled_series(header)  # a SEG, or RTSTRUCT contours (classes by name mapping)
            if referenced is not None:
                segs.append((path, referenced))
            elif "SeriesInstanceUID" in header:
                folders.setdefault(str(header.SeriesInstanceUID), set()).add(path.parent)
        if not segs and len(volumes) == 1 and len(folders) == 1:  # one series, one label volume beside it
            [places] = folders.values()
            if len(places) == 1:
                cases.append(
                    {"id": case_dir.name, "image": str(next(iter(places))), "label": str(volumes[0])}
                )
                continue
        if not segs:
            unlabelled.append(case_dir.name)
        for number, (seg, referenced) in enumerate(segs):
            places = [folders[uid] for uid in referenced if uid in folders]
            if not places or len(places[0]) != 1:
                why = "the series it references is not here" if not places else "its series spans folders"
                log.warning("%s: left out: %s", seg, why)
                unlabelled.append(case_dir.name)
                continue
            case_id = case_dir.name if len(segs) == 1 else f"{case_dir.name}_{number}"
            cases.append({"id": case_id, "image": str(next(iter(places[0]))), "label": str(seg)})
    if unlabelled:
        log.warning(
            "%s: %d folder(s) hold no DICOM SEG and are left out: %s",
            root,
            len(unlabelled),
            ", ".join(unlabelled[:5]),
        )
    if not cases:
        raise InputError(
            root,
            "not a dataset layout medseg reads: no dataset.json, no images/ + masks/ (or labels/) folders, "
            "and no case folder holding a DICOM series with its SEG or label volume (docs/datasets.md)",
        )
    names = seg_class_names(cases)
    return Dataset(root.name, root, cases, names, [dicom_modality(cases, modality)], "dicom_studies")


def dicom_modality(cases: list[Record], default: str = "unknown") -> str:
    """The Modality the cases' DICOM image series record (the first image file of each), if they agree."""
    found = set()
    for case in cases:
        for path in sorted(p for p in Path(case["image"]).rglob("*") if p.is_file()):
            header = read_dataset(path, pixels=False)
            if not isinstance(header, SkippedFile) and non_image_reason(header) is None:
                found.add(str(header.get("Modality", "")))
                break
    return found.pop() if len(found) == 1 and "" not in found else default


def seg_class_names(cases: list[Record]) -> dict[int, str]:
    """Class names from the cases' DICOM SEG labels (segment number -> SegmentLabel), which must number
    their segments alike; {} when the labels are not SEGs (the planner then names the values found)."""
    import pydicom

    names: dict[int, str] = {}
    first: dict[int, str] = {}
    for case in cases:
        if not case["label"].lower().endswith(".dcm"):
            continue
        try:
            header = pydicom.dcmread(case["label"], stop_before_pixels=True)
            segments = {int(item.SegmentNumber): str(item.SegmentLabel) for item in header.SegmentSequence}
        except Exception:  # not a SEG or unreadable: loading the case says which
            continue
        for number, label in segments.items():
            if names.setdefault(number, label).lower() != label.lower():
                raise InputError(
                    case["label"],
                    f"segment {number} is {label!r} here but {names[number]!r} in {first[number]}; the SEGs "
                    "must number their segments alike (or give --labels)",
                )
            first.setdefault(number, Path(case["label"]).name)
    return {0: "background", **dict(sorted(names.items()))} if names else {}


def open_dataset(
    path: str | os.PathLike,
    modality: str | None = None,
    labels: dict[str, Any] | None = None,
    mask_suffix: str | None = None,
    mask_threshold: float | None = None,
) -> Dataset:
    """Open a dataset in whichever supported layout `path` has (see module docstring).

    `modality` overrides (or, for layouts that do not record one, supplies) the modality of every channel;
    `labels` (``{"1": "lung"}``) names the classes where the layout cannot; `mask_suffix` and
    `mask_threshold` apply to image/mask folders (and the threshold to every case).
    """
    path = Path(path)
    if path.is_file() and path.name != "dataset.json":
        dataset = read_manifest(path)
    elif (path / "dataset.json").is_file() or path.name == "dataset.json":
        dataset = read_msd(path if path.is_dir() else path.parent)
    elif (
        (path / "images").is_dir()
        and (path / "labels").is_dir()
        and any(p.is_dir() for p in (path / "images").iterdir())
    ):
        dataset = read_dicom_cases(path)
    elif path.is_dir() and _first_folder(path, IMAGE_FOLDER_NAMES) is None:
        dataset = read_dicom_studies(path)
    elif path.is_dir():
        dataset = read_image_folders(path, mask_suffix=mask_suffix)
    else:
        raise InputError(path, "no such dataset folder or manifest")
    if modality:
        dataset.modalities = [modality] * len(dataset.modalities)
    if labels:
        dataset.label_names = parse_labels(labels, path)
        roi_map = {
            str(name).strip().lower(): int(key)
            for key, value in labels.items()
            if str(key).isdigit()
            for name in (value if isinstance(value, list) else [value])
        }
        for case in dataset.cases:  # RTSTRUCT labels are named contours: these names make the classes
            case["roi_map"] = roi_map
    if mask_threshold is not None:
        for case in dataset.cases:
            case["mask_threshold"] = float(mask_threshold)
    return dataset


def parse_labels(labels: dict[str, Any], where: str | os.PathLike | None = None) -> dict[int, str]:
    """Class names from ``{"1": "lung"}``, ``{"1": ["Lung-Left", "Lung_L"]}`` or nnU-Net's ``{"lung": 1}``."""
    names = _label_names(labels) if isinstance(labels, dict) else {}
    if not names or any(value < 0 for value in names):
        raise InputError(
            where, f'labels must map label values to names, like {{"1": "lung"}}; got {labels!r}'
        )
    return names
