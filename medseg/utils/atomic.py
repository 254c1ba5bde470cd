"""Write files so that nothing half-written is ever visible: temporary name first, then rename.

A process killed mid-write (SIGKILL) leaves a hidden temporary file, never a partial final one;
`remove_temporaries` clears those when the work is taken up again."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Temporary names `atomic_path` uses: ``.<final name>.<8 hex digits>.tmp<suffix>``.
TEMPORARY_PATTERN = ".*.*.tmp*"


def _full_suffix(path: Path) -> str:
    """Suffixes that format writers look at, e.g. ``.nii.gz`` (not just ``.gz``)."""
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success flush it to disk and rename it to `final`, on
    error remove it. A writer that returns without writing anything (some do, on a full disk) publishes
    nothing: an empty temporary file is an `OSError`.

    The temporary name keeps the extension so that writers choosing a format by suffix still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{_full_suffix(final)}")
    try:
        yield temporary
        if not temporary.is_file() or temporary.stat().st_size == 0:
            raise OSError(f"{final}: nothing was written (is the disk full?)")
        with temporary.open("rb+") as handle:  # on disk before it has its final name
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    """Write `text` to `final` atomically and return the path."""
    with atomic_path(final) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(final)


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed process left in `folder` (any depth); return how many.

    Only for a folder that no other process is writing to at the same time.
    """
    stale = [path for path in Path(folder).rglob(TEMPORARY_PATTERN) if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
