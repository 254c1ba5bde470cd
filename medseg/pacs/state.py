"""Which studies are finished, kept across restarts in a small JSON file written atomically.

Studies are recorded by `medseg.pacs.client.study_key` (a hash of the Study Instance UID), so the file
holds no patient data. A study that failed is retried on later polls up to `MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from medseg.errors import InputError
from medseg.utils.atomic import write_text_atomic

STATE_FORMAT = "medseg-pacs-state-1"
#: A study that failed this many times is left alone until its entry is removed from the state file.
MAX_ATTEMPTS = 3


class ProcessedStudies:
    """The state file: study key -> {"status": "done" | "failed", "attempts", "updated", "detail"}."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.studies: dict[str, dict[str, object]] = {}
        if self.path.is_file():
            try:
                content = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise InputError(self.path, f"unreadable state file ({type(error).__name__})") from None
            if not isinstance(content, dict) or content.get("format") != STATE_FORMAT:
                raise InputError(self.path, f"not a medseg PACS state file (format {STATE_FORMAT!r})")
            self.studies = dict(content["studies"])

    def is_finished(self, key: str) -> bool:
        """Done, or failed `MAX_ATTEMPTS` times: not to be processed again."""
        entry = self.studies.get(key)
        if entry is None:
            return False
        return entry["status"] == "done" or int(entry["attempts"]) >= MAX_ATTEMPTS  # type: ignore[arg-type]

    def record(self, key: str, done: bool, detail: str = "") -> None:
        """Record the outcome of one attempt at a study and save the file."""
        previous = self.studies.get(key, {})
        self.studies[key] = {
            "status": "done" if done else "failed",
            "attempts": int(previous.get("attempts", 0)) + 1,  # type: ignore[call-overload]
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "detail": detail,
        }
        content = {"format": STATE_FORMAT, "studies": self.studies}
        write_text_atomic(self.path, json.dumps(content, indent=1, sort_keys=True) + "\n")
