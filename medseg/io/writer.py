"""`write_image`: one entry point that writes an image in the format its file ending names.

- ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``...: `medseg.io.volume.write_volume` (geometry kept);
- ``.png``: `medseg.io.png.write_png` (2D integer images such as masks; PNG stores no geometry).
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import InputError
from medseg.io.image import Image
from medseg.io.png import is_png_file, write_png
from medseg.io.volume import VOLUME_SUFFIXES, is_volume_file, write_volume


def write_image(image: Image, path: str | os.PathLike) -> Path:
    """Write `image` to `path` atomically, in the format of its ending; return the path."""
    path = Path(path)
    if is_volume_file(path):
        return write_volume(image, path)
    if is_png_file(path):
        return write_png(image, path)
    raise InputError(path, f"unsupported ending; use .png or one of {', '.join(VOLUME_SUFFIXES)}")
