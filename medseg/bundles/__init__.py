"""The bundles that ship with medseg: found by name from any folder, trusted by their content.

Each sub-folder is a MONAI bundle (``configs/``, ``models/``, ``docs/``, ``LICENSE``) installed with the
package. Bundle configs can run Python code, so medseg reads a bundle's configs only when it is one of
these, recognised by a SHA-256 over its configs and weights (`bundle_digest`, recorded in
`DIGESTS_FILE`), or when the user trusts it (``--trust-bundle``). Where the folder lies does not matter:
a copied shipped bundle is trusted, an edited one is not. After changing a shipped bundle, record its
new digest with ``python -m medseg.bundles``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError

#: Where the shipped bundles are installed.
SHIPPED_DIR = Path(__file__).resolve().parent
#: ``{bundle name: digest}`` of the shipped bundles.
DIGESTS_FILE = SHIPPED_DIR / "digests.json"
#: The parts of a bundle that make its behaviour: what it runs and what it loads.
CONTENT_FOLDERS = ("configs", "models")
CONFIGS_DIR, INFERENCE_CONFIG, METADATA = "configs", "inference.json", "metadata.json"
#: metadata.json key of a sentence every output of the bundle carries (a model card's "not for real data").
CAUTION_KEY = "medseg_caution"
#: The command-line flag that trusts a bundle from elsewhere.
TRUST_FLAG = "--trust-bundle"
#: Keys of inference.json's ``run`` step that are inference defaults, with the JSON types they need.
#: Read as plain JSON: nothing in them is evaluated.
INFERENCE_DEFAULTS: dict[str, tuple[type, ...]] = {
    "overlap": (int, float),
    "tta": (bool,),
    "tta_zooms": (list,),
    "largest_component": (list,),
}


#: What the items of those lists may be: zoom factors are numbers; classes are values or names.
ZOOM_TYPES, CLASS_TYPES = (int, float), (int, str)


def is_bundle(folder: str | os.PathLike) -> bool:
    """True for a folder in MONAI's bundle layout (it has a ``configs`` folder)."""
    return (Path(folder) / CONFIGS_DIR).is_dir()


def bundle_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and bytes of every file under the bundle's configs and models."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for part in CONTENT_FOLDERS:
        for path in sorted(p for p in (folder / part).rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


def recorded_digests() -> dict[str, str]:
    """The digests of the shipped bundles, as released."""
    return json.loads(DIGESTS_FILE.read_text(encoding="utf-8"))


def shipped_names() -> list[str]:
    """Names of the shipped bundles."""
    return sorted(recorded_digests())


def find_bundle(name: str) -> Path | None:
    """The installed folder of the shipped bundle `name`, or None."""
    folder = SHIPPED_DIR / name
    return folder if name in recorded_digests() and is_bundle(folder) else None


def is_shipped(folder: str | os.PathLike) -> bool:
    """True when `folder` holds, byte for byte, the configs and weights of a bundle medseg shipped."""
    return is_bundle(folder) and bundle_digest(folder) in recorded_digests().values()


def require_trust(bundle: str | os.PathLike, trusted: bool) -> None:
    """Refuse a bundle that did not ship with medseg unless `trusted`: its configs can run Python code."""
    if trusted or is_shipped(bundle):
        return
    raise InputError(
        bundle,
        "this bundle is not one medseg shipped (or it was changed), and bundle configs can run Python "
        f"code; if you trust whoever wrote it, pass {TRUST_FLAG}",
    )


def inference_defaults(bundle: str | os.PathLike) -> dict[str, Any]:
    """The inference settings of the bundle's inference.json ``run`` step (`INFERENCE_DEFAULTS`).

    Read as plain JSON, nothing evaluated, so that ``medseg infer --model BUNDLE`` and the Python API
    run the bundle as its inference.json does. A value of the wrong type is refused, naming the file.
    """
    path = Path(bundle) / CONFIGS_DIR / INFERENCE_CONFIG
    if not path.is_file():
        return {}
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("run")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ConfigError(f"{path}: not a JSON object ({error})") from error
    defaults: dict[str, Any] = {}
    for step in steps if isinstance(steps, list) else []:
        for key, types in INFERENCE_DEFAULTS.items():
            if not isinstance(step, dict) or key not in step:
                continue
            value = step[key]
            item_types = ZOOM_TYPES if key == "tta_zooms" else CLASS_TYPES
            items_ok = not isinstance(value, list) or all(type(v) in item_types for v in value)  # no bools
            expression = isinstance(value, str) or (
                isinstance(value, list) and any(str(v)[:1] in "$@%" for v in value)
            )
            if type(value) not in types or not items_ok or expression:
                raise ConfigError(f"{path}: {key} must be a literal {types[0].__name__}, got {value!r}")
            defaults[key] = value
    return defaults


def bundle_card(folder: str | os.PathLike) -> dict[str, Any]:
    """What a user choosing a bundle needs: its task, classes, validation figures and intended use."""
    folder = Path(folder)
    meta_path = folder / CONFIGS_DIR / METADATA
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(meta_path, f"cannot read bundle metadata ({error})") from None
    return {
        "name": meta.get("name", folder.name),
        "version": meta.get("version", ""),
        "task": meta.get("task", ""),
        "classes": meta.get("pred_classes", ""),
        "validation": meta.get("eval_metrics", {}),
        "intended_use": meta.get("intended_use", ""),
        # what every output of the bundle must say (e.g. trained on synthetic data only), if anything
        "caution": meta.get(CAUTION_KEY, ""),
        # the output channels by name, as the card's network_data_format gives them
        "output_names": {
            int(value): str(name)
            for value, name in meta.get("network_data_format", {})
            .get("outputs", {})
            .get("pred", {})
            .get("channel_def", {})
            .items()
            if str(value).isdigit()
        },
        "folder": str(folder),
    }


def list_bundles() -> list[dict[str, Any]]:
    """The card (`bundle_card`) of every shipped bundle, by name."""
    return [bundle_card(SHIPPED_DIR / name) for name in shipped_names()]


def write_digests() -> dict[str, str]:
    """Record the digests of the bundles now in `SHIPPED_DIR` (run after changing a shipped bundle)."""
    digests = {
        folder.name: bundle_digest(folder) for folder in sorted(SHIPPED_DIR.iterdir()) if is_bundle(folder)
    }
    DIGESTS_FILE.write_text(json.dumps(digests, indent=2) + "\n", encoding="utf-8")
    return digests
