"""Malformed answers from a PACS: one bad QIDO/C-FIND record is logged and skipped, an answer that is not a
list is one PacsError, and a watcher polling such a PACS keeps polling (no traceback, no exit)."""

from __future__ import annotations

import logging

import pytest

from medseg.pacs.client import PacsError, Study, StudyQuery, parse_records
from medseg.pacs.config import load_config
from medseg.pacs.state import ProcessedStudies
from medseg.pacs.watch import Watcher

GOOD_UID = "1.2.826.0.1.3680043.8.498.1"


def _record(uid: str = GOOD_UID, count: object = "12", vr: str = "UI") -> dict:
    return {
        "0020000D": {"vr": vr, "Value": [uid]},
        "00080020": {"vr": "DA", "Value": ["20261207"]},
        "00201208": {"vr": "IS", "Value": [count]},
    }


def test_one_malformed_record_is_skipped_and_the_others_kept(caplog):
    records = [_record(), _record(count="ten"), _record(uid="1.2.ü.3"), _record(uid="1" * 80), "not a record"]
    with caplog.at_level(logging.WARNING):
        studies = parse_records(records, Study.from_dataset, "QIDO-RS study search")
    assert [study.study_instance_uid for study in studies] == [GOOD_UID]
    assert studies[0].number_of_instances == 12
    assert caplog.text.count("is malformed and skipped") == 4


def test_an_answer_that_is_not_a_list_is_one_error():
    with pytest.raises(PacsError, match="answered with a dict, not a list of records"):
        parse_records({"error": "busy"}, Study.from_dataset, "QIDO-RS study search")


class _BrokenPacs:
    """Answers its first search with an object instead of a list, then with one bad and one good study."""

    def __init__(self) -> None:
        self.polls = 0

    def find_studies(self, query: StudyQuery) -> list[Study]:
        self.polls += 1
        answer = {"oops": 1} if self.polls == 1 else [_record(count="many"), _record()]
        return parse_records(answer, Study.from_dataset, "QIDO-RS study search")


def test_a_watcher_keeps_polling_a_pacs_that_answers_badly(tmp_path, caplog):
    pacs, processed = _BrokenPacs(), []
    state = ProcessedStudies(tmp_path / "state.json")
    process = lambda study: processed.append(study.key) or _Done(study.key)  # noqa: E731
    watcher = Watcher(pacs, StudyQuery(), process, state, lookback_days=None, settle_polls=0)
    with caplog.at_level(logging.WARNING):
        watcher.run(interval_s=0, polls=3, sleep=lambda _: None)
    assert pacs.polls == 3 and "poll failed, retrying" in caplog.text
    assert len(processed) == 1  # the good study, once


class _Done:
    def __init__(self, key: str) -> None:
        self.key, self.ok, self.failures = key, True, []
        self.segmented = self.stored = self.already_stored = 0


def test_a_pacs_dripping_its_answer_is_cut_at_the_deadline():
    """timeout_s bounds the whole answer, not each read: a server sending a byte every 0.2 s is cut."""
    import http.server
    import threading
    import time

    from medseg.pacs.dicomweb import DicomWebClient

    class Drip(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        client = DicomWebClient(load_config(None, {"MEDSEG_PACS_URL": url, "MEDSEG_PACS_TIMEOUT": "1.5"}))
        start = time.monotonic()
        with pytest.raises(PacsError, match="cannot reach"):
            client.find_studies(StudyQuery())
        assert time.monotonic() - start < 5  # not the 20 s the drip would take
    finally:
        server.shutdown()
