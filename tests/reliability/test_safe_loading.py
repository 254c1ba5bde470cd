"""Loading a file never runs code from it: checkpoints load weights only, and a bundle that did not ship
with medseg is refused unless trusted (its configs can evaluate Python expressions)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch

from medseg.bundles import SHIPPED_DIR, TRUST_FLAG, bundle_digest, recorded_digests, shipped_names
from medseg.cli.main import main

PACKAGE = Path(__file__).resolve().parents[2] / "medseg"


class _LeavesAMark:
    """Unpickling this would create the file `path` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_every_torch_load_in_medseg_is_weights_only():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls, "no torch.load found: the scan is broken"
    assert all(weights_only == "True" for _, weights_only in calls), calls


def _run(capsys, *argv: str | Path) -> tuple[int, str]:
    """``medseg ARGV`` in this process: (exit status, stderr)."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_a_malicious_checkpoint_is_refused_and_its_code_never_runs(tmp_path: Path, capsys):
    mark = tmp_path / "code_ran"
    checkpoint = tmp_path / "model.pt"
    torch.save({"format": "medseg-checkpoint-1", "payload": _LeavesAMark(mark)}, checkpoint)
    status, err = _run(capsys, "infer", tmp_path, "--model", checkpoint, "--out", tmp_path / "out")
    assert status == 2
    [line] = err.strip().splitlines()
    assert f"{checkpoint}: refused: not a plain-weights checkpoint" in line
    assert not mark.exists()


@pytest.fixture
def marked_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a shipped bundle whose model_file expression also creates a file: (bundle, that file)."""
    bundle, mark = tmp_path / "bundle", tmp_path / "code_ran"
    shutil.copytree(SHIPPED_DIR / "hippocampus_mri_3d", bundle, ignore=shutil.ignore_patterns("runs"))
    config = bundle / "configs" / "train.json"
    original = "\"$@bundle_root + '/models/model.pt'\""
    planted = f"\"$open({str(mark)!r}, 'w').close() or @bundle_root + '/models/model.pt'\""
    assert original in config.read_text()
    config.write_text(config.read_text().replace(original, planted))
    return bundle, mark


def test_a_bundle_from_elsewhere_needs_the_trust_flag(marked_bundle, tmp_path: Path, capsys):
    bundle, mark = marked_bundle
    for argv in (
        ["train", "--bundle", bundle, "--check"],
        ["infer", tmp_path, "--model", bundle, "--out", "x"],
    ):
        status, err = _run(capsys, *argv)
        assert status == 2, err
        [line] = err.strip().splitlines()
        assert f"{bundle}: this bundle is not one medseg shipped (or it was changed)" in line
        assert TRUST_FLAG in line
    assert not mark.exists()


def test_a_trusted_bundle_runs_its_expressions_and_a_shipped_one_needs_no_flag(
    marked_bundle, tmp_path: Path, capsys
):
    bundle, mark = marked_bundle
    missing = tmp_path / "no_data"  # the config is read, then the dataset is found missing
    status, err = _run(capsys, "train", "--bundle", bundle, "--dataset_dir", missing, "--check", TRUST_FLAG)
    assert status == 2 and str(missing) in err
    assert mark.exists()  # the expression ran: what the flag guards against
    shipped = SHIPPED_DIR / "hippocampus_mri_3d"
    status, err = _run(capsys, "train", "--bundle", shipped, "--dataset_dir", missing, "--check")
    assert status == 2 and str(missing) in err and "not one medseg shipped" not in err


def test_shipped_bundles_are_trusted_by_content_wherever_they_lie(tmp_path, capsys):
    """The recorded digests are the shipped bundles' own; a byte-identical copy elsewhere is trusted, a
    copy whose weights changed is not (its configs could have been changed the same way)."""
    folders = sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "configs").is_dir())
    assert folders == shipped_names()
    for name, digest in recorded_digests().items():
        assert bundle_digest(SHIPPED_DIR / name) == digest, f"{name}: run python -m medseg.bundles"
    for name in ("copied", "edited"):
        shutil.copytree(SHIPPED_DIR / "lung_cxr_2d", tmp_path / name, ignore=shutil.ignore_patterns("runs"))
    with open(tmp_path / "edited" / "models" / "model.pt", "ab") as handle:
        handle.write(b"\0")
    missing = tmp_path / "no_data"
    status, err = _run(capsys, "train", "--bundle", tmp_path / "copied", "--dataset_dir", missing, "--check")
    assert status == 2 and str(missing) in err and "not one medseg shipped" not in err
    status, err = _run(capsys, "train", "--bundle", tmp_path / "edited", "--check")
    assert status == 2 and "not one medseg shipped (or it was changed)" in err


@pytest.mark.parametrize(
    "value", ["$open({mark!r}, 'w').close() or 'data'", "@bundle_root", "%configs/x.json#a"]
)
def test_command_line_values_are_data_never_bundle_expressions(value, tmp_path: Path, capsys):
    """``--dataset_dir '$open(...)'`` would run as Python through MONAI's ConfigParser, even for a shipped
    bundle: a value starting with $, @ or % is refused before the config is read."""
    mark = tmp_path / "code_ran"
    shipped = SHIPPED_DIR / "hippocampus_mri_3d"
    status, err = _run(
        capsys, "train", "--bundle", shipped, "--dataset_dir", value.format(mark=str(mark)), "--check"
    )
    assert status == 2 and "command line are data, never config expressions" in err
    assert not mark.exists()
