"""Write files so that nothing half-written is ever visible: temporary name first, then rename."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def _full_suffix(path: Path) -> str:
    """Suffixes that format writers look at, e.g. ``.nii.gz`` (not just ``.gz``)."""
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success rename it to `final`, on error remove it.

    The temporary name keeps the extension so that writers choosing a format by suffix still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{_full_suffix(final)}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    """Write `text` to `final` atomically and return the path."""
    with atomic_path(final) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(final)
