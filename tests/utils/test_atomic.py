"""Atomic writes leave either the complete file or nothing."""

from __future__ import annotations

import pytest

from medseg.utils.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        assert temporary.name.endswith(".nii.gz") and temporary != target
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_old_content(tmp_path):
    target = write_text_atomic(tmp_path / "report.json", "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
