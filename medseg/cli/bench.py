"""`medseg bench NAME`: run a benchmark from the source checkout's `benchmarks/` folder."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from medseg.errors import ConfigError

#: Benchmarks ship with the source checkout, beside the package.
BENCHMARK_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def available() -> dict[str, Path]:
    """Benchmark name -> script, for every ``benchmarks/<name>.py`` not starting with an underscore."""
    if not BENCHMARK_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BENCHMARK_DIR.glob("*.py")) if not p.stem.startswith("_")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark to run; leave out to list them")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    scripts = available()
    if not scripts:
        raise ConfigError(f"no benchmarks found in {BENCHMARK_DIR}; they ship with the source checkout")
    if args.name is None:
        for name, path in scripts.items():
            print(f"{name:12s} {_first_docstring_line(path)}")
        return 0
    if args.name not in scripts:
        raise ConfigError(f"unknown benchmark {args.name!r}; choose one of: {', '.join(scripts)}")
    if str(BENCHMARK_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARK_DIR))  # the scripts share benchmarks/_common.py
    spec = importlib.util.spec_from_file_location(f"medseg_benchmark_{args.name}", scripts[args.name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.options) or 0)


def _first_docstring_line(path: Path) -> str:
    text = path.read_text(encoding="utf-8").lstrip()
    if text.startswith('"""'):
        return text[3:].split("\n", 1)[0].rstrip('". ')
    return ""
