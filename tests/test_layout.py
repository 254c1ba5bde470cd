"""The architecture's rules, read from the imports of the source files (not from running them).

- `medseg/inference` segments with a trained model: it never imports training, the command line, the PACS
  services or the bundle entry points (``medseg/bundle.py``), so a deployment needs none of them.
- `medseg/runtime` (device, precision, memory format, compilation, distributed) is a leaf: it imports
  nothing of medseg but the errors.
- `medseg/checkpoint.py` is the one contract between training and inference: it imports neither.
- Building the command line's parser imports neither torch nor MONAI, so ``--help`` is quick.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.cli.main import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "medseg"


def medseg_imports(path: Path) -> set[str]:
    """Every medseg module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "medseg" or name.startswith("medseg."))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _violations(paths: list[Path], allowed) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in paths
        for name in sorted(medseg_imports(path))
        if not allowed(name)
    ]


def _under(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_engine_is_gone():
    assert not (PACKAGE / "engine").exists()


def test_inference_never_imports_training_cli_pacs_or_bundle_steps():
    forbidden = ("medseg.training", "medseg.cli", "medseg.pacs", "medseg.bundle", "medseg.demo")
    assert _violations(_modules("inference"), lambda name: not _under(name, *forbidden)) == []


def test_runtime_imports_nothing_of_medseg_but_the_errors():
    allowed = ("medseg.errors", "medseg.runtime")
    assert _violations(_modules("runtime"), lambda name: _under(name, *allowed)) == []


def test_checkpoint_contract_depends_on_neither_side():
    forbidden = ("medseg.training", "medseg.inference", "medseg.cli")
    assert _violations([PACKAGE / "checkpoint.py"], lambda name: not _under(name, *forbidden)) == []


def test_the_rules_catch_a_violation(tmp_path: Path):
    """The import reader sees imports inside functions too."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from medseg.training.trainer import fit\n")
    assert medseg_imports(module) == {"medseg.training.trainer", "medseg.training.trainer.fit"}


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_building_a_commands_parser_imports_neither_torch_nor_monai(command: str):
    """``medseg --help`` and ``medseg COMMAND --help`` declare options without importing what commands
    run on (torch and MONAI take seconds to import on a 2-core CPU)."""
    code = (
        "import json, sys\n"
        "from medseg.cli.main import build_parser\n"
        f"build_parser([{command!r}] if {command!r} else [])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'monai', 'highdicom') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
