"""`Segmenter`: the one way in to inference, for the command line, the PACS services, bundles and notebooks.

    from medseg import Segmenter, read_image, write_image
    segmenter = Segmenter.load("hippocampus_mri_3d")            # a shipped bundle, on the GPU if any
    write_image(segmenter.predict(read_image("case.nii.gz")), "mask.nii.gz")
    segmenter.run_folder("dicom/", "results/")                 # what `medseg infer` does

`Segmenter.load` takes a shipped bundle's name, a bundle folder (its inference.json defaults, e.g.
test-time zooms, apply unless overridden), a training run folder (its ``best.pt``), a checkpoint file,
or several of these (an ensemble). It remembers its device, window settings and post-processing, so
every entry point that loads the same model with the same options segments the same way and records the
same `settings` in ``result.json``. `model_digest` identifies the weights and settings that made a
result, so a folder run into an existing output redoes the inputs another model made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.bundles import (
    CONFIGS_DIR,
    METADATA,
    bundle_card,
    find_bundle,
    inference_defaults,
    is_bundle,
    require_trust,
    shipped_names,
)
from medseg.checkpoint import checkpoint_paths
from medseg.errors import InputError
from medseg.inference.discovery import discover
from medseg.inference.domain import CAUTION, DomainCheck, check_domain
from medseg.inference.ensemble import Ensemble, load_ensemble
from medseg.inference.postprocess import PostProcessing, class_values, postprocess
from medseg.inference.runner import RunOptions, run_batch
from medseg.inference.sliding_window import WindowSettings
from medseg.io.dicom.scan import SeriesRules
from medseg.io.image import LabelMap, ScalarImage
from medseg.runtime.device import resolve_device

logger = logging.getLogger(__name__)

#: Window settings that change how fast labels come, not which: left out of `Segmenter.model_digest`.
SPEED_ONLY_SETTINGS = ("batch_size", "compile", "channels_last")

#: What a model may be given as: a name, a path, or several of them.
ModelReference = str | os.PathLike | Sequence[str | os.PathLike]


def resolve_model(
    reference: ModelReference, trust_bundle: bool = False
) -> tuple[list[Path], dict[str, Any], list[str]]:
    """The checkpoint files of `reference`, the inference defaults of the first bundle among them (with
    its card's class names and version under `CARD_KEYS`), and the cautions its bundles' cards ask every
    output to carry.

    A bare name that is not a path is looked up among the shipped bundles. Bundle folders that medseg
    did not ship need `trust_bundle` (their configs can run code).
    """
    items = [reference] if isinstance(reference, (str, os.PathLike)) else list(reference)
    if not items:
        raise InputError(None, "no model given")
    paths: list[Path] = []
    defaults: dict[str, Any] | None = None
    cautions: list[str] = []
    names: dict[int, str] = {}
    version = ""
    for item in items:
        path = Path(item)
        if not path.exists() and (shipped := find_bundle(str(item))) is not None:
            path = shipped
        elif not path.exists():
            raise InputError(
                path,
                f"no such checkpoint, model folder or shipped bundle (shipped: {', '.join(shipped_names())})",
            )
        if path.is_dir() and is_bundle(path):
            require_trust(path, trust_bundle)
            if defaults is None:
                defaults = inference_defaults(path)
        # A bundle's card (metadata.json: data, no code) also speaks for its models folder or a checkpoint
        # in it, as inference.json run by MONAI loads them: their outputs carry the same caution and version.
        in_bundle = is_bundle(path) and path.is_dir()
        bundle = path if in_bundle else (path if path.is_dir() else path.parent).parent
        if in_bundle or (bundle / CONFIGS_DIR / METADATA).is_file():
            card = bundle_card(bundle)
            cautions += [card["caution"]] if card["caution"] and card["caution"] not in cautions else []
            names = names or card["output_names"]
            version = version or card["version"]
        paths += checkpoint_paths([path])
    card_values = {"class_names": names, "model_version": version}
    defaults = {**(defaults or {}), **{key: value for key, value in card_values.items() if value}}
    return paths, defaults, cautions


#: What `resolve_model`'s defaults carry from a bundle's card rather than from its inference.json.
CARD_KEYS = ("class_names", "model_version")


#: Class names that say nothing of the task: a binary model trained on unnamed masks.
GENERIC_NAMES = ("foreground",)


def task_names(names: dict[int, str], card: dict[int, str]) -> dict[int, str]:
    """The checkpoint's class names, with generic ones ("foreground", ``label_1``) replaced by the bundle
    card's names for the same outputs ("lung"): reports and SEGs name what the model finds."""
    return {
        value: card[value]
        if value in card and (name.lower() in GENERIC_NAMES or name.startswith("label_"))
        else name
        for value, name in names.items()
    }


def torch_device_type(device: str) -> str:
    """``cuda`` for ``cuda:1``, ``cpu`` for ``cpu``."""
    return device.split(":", 1)[0]


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Segmenter:
    """A loaded model with its device, window settings and post-processing."""

    def __init__(
        self,
        ensemble: Ensemble,
        settings: WindowSettings,
        postprocessing: PostProcessing,
        cautions: Sequence[str] = (),
        model_version: str | None = None,
    ):
        self.ensemble = ensemble
        self.settings = settings
        self.postprocessing = postprocessing
        #: Sentences every output of this model carries (from its bundle's card).
        self.cautions = list(cautions)
        #: The bundle's version (its metadata.json), or None for a checkpoint or training run.
        self.model_version = model_version
        self._digests = [file_digest(path) for path in ensemble.sources]

    @classmethod
    def load(
        cls,
        model: ModelReference,
        device: str = "auto",
        *,
        tta: bool | None = None,
        tta_zooms: Sequence[float] | None = None,
        overlap: float | None = None,
        roi_size: Sequence[int] | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        accumulate: str = "fp16",
        channels_last: bool | str = "auto",
        compile: bool = False,
        largest_component: Sequence[str | int] | None = None,
        min_lesion_ml: float = 0.0,
        fill_holes: Sequence[str | int] | None = None,
        trust_bundle: bool = False,
    ) -> Segmenter:
        """Load `model` (see the module docstring) on `device` (``auto``: the GPU when there is one).

        Options left as None take the bundle's inference.json value, else medseg's default: no
        mirroring, no zooms, overlap 0.5, the plan's patch as the window. ``tta_zooms=[1]`` turns a
        bundle's zooms off. Class lists name classes by name or value; an empty list means every class.
        """
        paths, defaults, cautions = resolve_model(model, trust_bundle)
        settings_given = {key: value for key, value in defaults.items() if key not in CARD_KEYS}
        if settings_given:
            logger.info("bundle inference.json defaults: %s", json.dumps(settings_given))
        device = resolve_device(device)
        ensemble = load_ensemble(paths, device)
        ensemble.class_names = task_names(ensemble.class_names, defaults.get("class_names", {}))
        tta = defaults.get("tta", False) if tta is None else tta
        if tta and not ensemble.plan.mirroring:
            logger.warning(
                "test-time mirroring does nothing: the model was trained without mirroring along any axis it "
                "sees (plan mirror_axes); test-time zooms are the augmentation for such models"
            )
        zooms = defaults.get("tta_zooms") if tta_zooms is None else tta_zooms
        settings = ensemble.settings(
            tta=tta,
            roi_size=tuple(roi_size) if roi_size else None,
            overlap=defaults.get("overlap") if overlap is None else overlap,
            batch_size=batch_size,
            zooms=tuple(zooms) if zooms else None,
            precision=precision,
            accumulate=accumulate,
            channels_last=channels_last,
            compile=compile,
        )
        if largest_component is None:  # inference.json's [] means no class, the command line's every class
            largest_component = defaults.get("largest_component") or None
        postprocessing = PostProcessing(
            largest_component=class_values(largest_component, ensemble.class_names),
            min_volume_ml=min_lesion_ml,
            fill_holes=class_values(fill_holes, ensemble.class_names),
        )
        return cls(ensemble, settings, postprocessing, cautions, defaults.get("model_version"))

    @property
    def device(self) -> str:
        return self.settings.device

    @property
    def class_names(self) -> dict[int, str]:
        return self.ensemble.class_names

    @property
    def name(self) -> str:
        """The algorithm name shown in SEGs and reports: the dataset the model was trained on."""
        return f"medseg {self.ensemble.plan.dataset.get('name', 'model')}"

    @property
    def model_digest(self) -> str:
        """SHA-256 over the checkpoints' bytes and the settings that shape the labels: the window settings
        and post-processing, with the device by its type only (``cuda:1`` gives ``cuda:0``'s labels) and
        without the settings that only change speed (`SPEED_ONLY_SETTINGS`)."""
        described = self.describe_settings()
        settings = {k: v for k, v in described["settings"].items() if k not in SPEED_ONLY_SETTINGS}
        settings["device"] = torch_device_type(self.settings.device)
        record = {
            "checkpoints": self._digests,
            "settings": settings,
            "postprocessing": described["postprocessing"],
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def describe_settings(self) -> dict[str, Any]:
        """The settings and post-processing as plain JSON values (recorded in ``result.json``)."""
        settings = dataclasses.asdict(self.settings)
        post = {
            key: sorted(value) if isinstance(value, (set, frozenset)) else value
            for key, value in dataclasses.asdict(self.postprocessing).items()
        }
        return json.loads(json.dumps({"settings": settings, "postprocessing": post}))

    def check_domain(self, image: ScalarImage) -> DomainCheck:
        """How far `image` is from the model's training data (`medseg.inference.domain`), with the
        model's own cautions."""
        check = check_domain(image, self.ensemble.plan)
        for caution in self.cautions:
            check.add(CAUTION, caution)
        return check

    def predict(self, image: ScalarImage | str | os.PathLike, progress: bool = False) -> LabelMap:
        """Labels for `image` (an image, or a file or DICOM series folder to read) on its own grid."""
        labels = self.ensemble.predict(_as_image(image), self.settings, progress)
        return postprocess(labels, self.postprocessing)

    def predict_with_uncertainty(
        self, image: ScalarImage | str | os.PathLike, progress: bool = False
    ) -> tuple[LabelMap, ScalarImage]:
        """`predict`'s labels and the normalised entropy (0..1) of the mean softmax on the same grid."""
        labels, entropy = self.ensemble.predict_with_uncertainty(_as_image(image), self.settings, progress)
        return postprocess(labels, self.postprocessing), entropy

    def run_folder(
        self,
        input: str | os.PathLike,
        out: str | os.PathLike,
        *,
        modalities: Sequence[str] = (),
        write_seg: bool = True,
        seg_type: str = "binary",
        write_rtstruct: bool = False,
        write_overlays: bool = True,
        anonymize: bool = False,
        uncertainty: bool | None = None,
        force: bool = False,
        force_domain: bool = False,
        select: Mapping[str, str] | None = None,
        reference: str | os.PathLike | None = None,
        reference_map: Mapping[str, str | int] | None = None,
        progress: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> dict[str, Any]:
        """Segment every series and image under `input` into `out` (`medseg.inference.runner`): what
        ``medseg infer`` does. Returns the run summary, also written to ``out/summary.json``.

        `uncertainty` None writes the uncertainty map when there is disagreement to show (mirroring,
        zooms or several networks). Inputs the domain check calls out of domain are skipped with the
        reason unless `force_domain`. DICOM series get a SEG (`seg_type` binary or labelmap) and, with
        `write_rtstruct`, an RT Structure Set. Each series is compared with the clinician's SEG or
        RTSTRUCT found beside it (or `reference`), structures matched by name or `reference_map`.
        `select` picks one volume of DICOM series that stack several (``{"EchoNumbers": "1"}``). With
        several processes, process `rank` of `world_size` takes every world_size-th input and the last
        to finish merges the summaries (``medseg infer`` passes torchrun's RANK and WORLD_SIZE).
        """
        discovery = discover(input, SeriesRules(modalities=tuple(m.upper() for m in modalities)))
        if not discovery.jobs:
            raise InputError(input, f"nothing to segment ({len(discovery.skipped)} file(s) skipped)")
        if uncertainty is None:
            settings = self.settings
            uncertainty = (
                bool(settings.mirror_axes) or len(settings.zooms) > 1 or len(self.ensemble.networks) > 1
            )
        options = RunOptions(
            write_seg=write_seg,
            seg_type=seg_type,
            write_rtstruct=write_rtstruct,
            write_overlays=write_overlays,
            anonymize=anonymize,
            uncertainty=uncertainty,
            force=force,
            force_domain=force_domain,
            select=tuple(sorted((select or {}).items())),
            reference=None if reference is None else Path(reference),
            reference_map=tuple((str(k), str(v)) for k, v in (reference_map or {}).items()),
            rank=rank,
            world_size=world_size,
            progress=progress,
        )
        return run_batch(discovery, self, out, options)


def _as_image(image: ScalarImage | str | os.PathLike) -> ScalarImage:
    if isinstance(image, ScalarImage):
        return image
    from medseg.io.reader import read_image

    read = read_image(image)
    if not isinstance(read, ScalarImage):
        raise InputError(image, "is a label map, not an image to segment")
    return read
