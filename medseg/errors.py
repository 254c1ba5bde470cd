"""Error types. Each carries a one-line message that names the file and what is wrong with it."""

from __future__ import annotations

import os


class MedsegError(Exception):
    """Base class: an expected failure reported to the user without a traceback."""


class InputError(MedsegError, ValueError):
    """An input file or folder cannot be used; `path` names it. Also a `ValueError` for callers."""

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class GeometryError(InputError):
    """The image geometry is inconsistent (orientation, spacing, missing slices...) and was not guessed."""


class ConfigError(MedsegError):
    """A configuration value is invalid; the message names the key and the valid choices."""


class OutOfDomainError(InputError):
    """The input is unlike anything the model was trained on (another modality, 2D for a 3D model...):
    segmenting it would give a mask nobody should read. Skipped unless the user forces it."""
