"""Malformed answers from a PACS: one bad QIDO/C-FIND record is logged and skipped, an answer that is not a
list is one PacsError, and a watcher polling such a PACS keeps polling (no traceback, no exit). A fake
DICOMweb server (`fake_dicomweb`) serves login pages, proxy errors, non-DICOM parts and slow drips to
every request the client makes."""

from __future__ import annotations

import logging
import time

import pytest
from fake_dicomweb import Answer, FakeDicomWeb

from medseg.cli.main import main
from medseg.pacs.client import PacsError, Study, StudyQuery, parse_records
from medseg.pacs.config import load_config
from medseg.pacs.dicomweb import DicomWebClient
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


@pytest.fixture
def fake_pacs():
    with FakeDicomWeb().running() as server:
        yield server


def _client(url: str, timeout_s: str = "3") -> DicomWebClient:
    return DicomWebClient(load_config(None, {"MEDSEG_PACS_URL": url, "MEDSEG_PACS_TIMEOUT": timeout_s}))


def test_a_pacs_dripping_its_answer_is_cut_at_the_deadline(fake_pacs):
    """timeout_s bounds the whole answer, not each read: a server sending a byte every 0.2 s is cut."""
    fake_pacs.answer = Answer(body=b" " * 100, drip_s=0.2)
    start = time.monotonic()
    with pytest.raises(PacsError, match=r"no complete answer from .* within 1.5 s \(a stalled"):
        _client(fake_pacs.url, "1.5").find_studies(StudyQuery())
    assert time.monotonic() - start < 5  # not the 20 s the drip would take


MULTIPART = 'multipart/related; type="application/dicom"; boundary=b'
#: Answers real servers have given (a login page, an empty body, a proxy error...) and what each of the
#: client's requests makes of them: a `PacsError` with these words, or records left out one by one.
MALFORMED = {
    "html page": (
        Answer(media_type="text/html", body=b"<html>log in</html>"),
        "not JSON",
        "Unexpected media",
    ),
    "proxy error": (Answer(502, "text/plain", b"bad gateway"), "HTTP 502", "HTTP 502"),
    "login needed": (Answer(401, "text/plain", b""), "check username and password", "check username"),
    "not DICOM parts": (
        Answer(media_type=MULTIPART, body=b"--b\r\n\r\nnot dicom\r\n--b--"),
        "not JSON",
        "malformed answer",
    ),
    # studies and series need a valid Study/Series UID; a metadata record needs only to be DICOM JSON
    "records of the wrong type": (
        Answer(body=b'["x", 1, {"0020000D": {"vr": "XX"}}]'),
        {"studies": 0, "series": 0, "metadata": 1},
        "malformed answer",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_each_request_meets_a_malformed_answer_with_one_error_or_skips_the_bad_records(
    fake_pacs, case, tmp_path
):
    answer, search_words, retrieve_words = MALFORMED[case]
    fake_pacs.answer = answer
    client = _client(fake_pacs.url)
    searches = {
        "studies": lambda: client.find_studies(StudyQuery()),
        "series": lambda: client.find_series(GOOD_UID),
        "metadata": lambda: client.series_headers(GOOD_UID, GOOD_UID),
    }
    for name, search in searches.items():
        if isinstance(search_words, dict):  # the bad records left out, the answer kept
            assert len(search()) == search_words[name], name
        else:
            with pytest.raises(PacsError, match=search_words):
                search()
    with pytest.raises(PacsError, match=retrieve_words) as error:
        client.retrieve_series(GOOD_UID, GOOD_UID, tmp_path / "series")
    assert "\n" not in str(error.value)


def test_pacs_find_against_a_malformed_server_is_one_line_and_exit_2(fake_pacs, monkeypatch, capsys):
    fake_pacs.answer = Answer(media_type="text/html", body=b"<html>maintenance</html>")
    monkeypatch.setenv("MEDSEG_PACS_URL", fake_pacs.url)
    assert main(["pacs", "find"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "answered with something that is not JSON" in error[0]
