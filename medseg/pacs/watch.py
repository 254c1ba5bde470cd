"""Poll the PACS for new studies and process each once, across restarts.

Every `interval_s` the watcher asks for the studies of the last `lookback_days` (plus the query's other
filters). A study is processed once its instance count has stayed the same for `settle_polls` polls (it
may still be arriving), unless the state file says it is finished. Outcomes go to the state file, so a
restarted watcher does not redo finished studies; `process_study` also checks the PACS for SEGs it
already stored, so even a lost state file gives no duplicates.
"""

from __future__ import annotations

import datetime
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

from medseg.errors import MedsegError
from medseg.pacs.client import PacsClient, PacsError, Study, StudyQuery
from medseg.pacs.pipeline import StudyOutcome
from medseg.pacs.state import ProcessedStudies

logger = logging.getLogger(__name__)


def rolling_query(
    query: StudyQuery, lookback_days: int | None, today: datetime.date | None = None
) -> StudyQuery:
    """`query` limited to studies dated from `lookback_days` ago to today.

    Unchanged when it names a date, a study or an accession number, or when `lookback_days` is None.
    """
    if lookback_days is None or query.study_date or query.study_instance_uid or query.accession_number:
        return query
    today = today or datetime.date.today()
    start = today - datetime.timedelta(days=lookback_days)
    return replace(query, study_date=f"{start:%Y%m%d}-{today:%Y%m%d}")


class Watcher:
    """Remembers instance counts between polls to tell which studies have settled."""

    def __init__(
        self,
        client: PacsClient,
        query: StudyQuery,
        process: Callable[[Study], StudyOutcome],
        state: ProcessedStudies,
        lookback_days: int | None = 1,
        settle_polls: int = 1,
    ) -> None:
        self.client, self.query, self.process, self.state = client, query, process, state
        self.lookback_days, self.settle_polls = lookback_days, settle_polls
        self._counts: dict[str, tuple[int | None, int]] = {}  # key -> (instances, polls unchanged)

    def _settled(self, study: Study) -> bool:
        count, unchanged = self._counts.get(study.key, (-1, -1))
        unchanged = unchanged + 1 if count == study.number_of_instances else 0
        self._counts[study.key] = (study.number_of_instances, unchanged)
        return unchanged >= self.settle_polls

    def poll(self) -> list[StudyOutcome]:
        """One poll: process every settled, unfinished study; return their outcomes."""
        outcomes = []
        studies = self.client.find_studies(rolling_query(self.query, self.lookback_days))
        for study in studies:
            if self.state.is_finished(study.key) or not self._settled(study):
                continue
            try:
                outcome = self.process(study)
            except Exception as error:  # this study failed; the others go on
                logger.debug("study %s failed:\n%s", study.key, traceback.format_exc())
                reason = str(error) if isinstance(error, MedsegError) else f"{type(error).__name__}: {error}"
                outcome = StudyOutcome(study.key, failures=[reason])
            self.state.record(study.key, outcome.ok, "; ".join(outcome.failures))
            logger.info(
                "study %s: %s (%d segmented, %d stored, %d already on the PACS)",
                study.key,
                "done" if outcome.ok else "failed: " + "; ".join(outcome.failures),
                outcome.segmented,
                outcome.stored,
                outcome.already_stored,
            )
            outcomes.append(outcome)
        return outcomes

    def run(
        self, interval_s: float, polls: int | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Poll every `interval_s` seconds, `polls` times (None: until interrupted).

        An unreachable PACS is logged and retried at the next poll.
        """
        done = 0
        while polls is None or done < polls:
            try:
                self.poll()
            except PacsError as error:
                logger.warning("poll failed, retrying in %.0f s: %s", interval_s, error)
            done += 1
            if polls is None or done < polls:
                sleep(interval_s)
