"""Watch mode against a real Orthanc: new studies are processed once they settle, once, across restarts."""

from __future__ import annotations

import datetime
import json

import pytest
import yaml
from conftest import PASSWORD, free_port

from medseg.cli.main import main
from medseg.inference.segmenter import Segmenter
from medseg.io.dicom.writer import SeriesIdentity
from medseg.pacs.client import StudyQuery, connect, study_key
from medseg.pacs.config import PacsConfig
from medseg.pacs.pipeline import PacsOptions, process_study
from medseg.pacs.state import MAX_ATTEMPTS, ProcessedStudies
from medseg.pacs.watch import Watcher, rolling_query


def test_rolling_query_covers_the_last_days_unless_the_query_names_a_study():
    today = datetime.date(2026, 3, 2)
    assert rolling_query(StudyQuery(modality="CT"), 2, today) == StudyQuery("20260228-20260302", "CT")
    named = StudyQuery(accession_number="A1")
    assert rolling_query(named, 2, today) == named
    assert rolling_query(StudyQuery(), None, today) == StudyQuery()


def test_state_file_survives_a_restart_and_gives_up_after_repeated_failures(tmp_path):
    state = ProcessedStudies(tmp_path / "state.json")
    state.record("a", done=True)
    for _ in range(MAX_ATTEMPTS - 1):
        state.record("b", done=False, detail="PACS timed out")
    reloaded = ProcessedStudies(tmp_path / "state.json")
    assert reloaded.is_finished("a") and not reloaded.is_finished("b") and not reloaded.is_finished("c")
    reloaded.record("b", done=False)
    assert ProcessedStudies(tmp_path / "state.json").is_finished("b")


def test_watch_processes_each_new_study_once(orthanc, upload_study, checkpoint, tmp_path):
    client = connect(PacsConfig(**orthanc.settings("dicomweb"), password=PASSWORD))
    segmenter = Segmenter.load(checkpoint, "cpu", precision="fp32")
    options = PacsOptions(modalities=("CT",), write_overlays=False)
    out = tmp_path / "out"

    def process(study):
        return process_study(client, study, segmenter, out, options)

    def watcher() -> Watcher:
        return Watcher(client, StudyQuery(modality="CT"), process, ProcessedStudies(out / "state.json"))

    first = upload_study(31, SeriesIdentity())
    running = watcher()
    assert running.poll() == []  # first sight: the study may still be arriving
    [outcome] = running.poll()
    assert outcome.ok and outcome.stored == 1 and outcome.key == study_key(first.study_instance_uid)

    second = upload_study(32, SeriesIdentity())
    assert running.poll() == []
    [outcome] = running.poll()
    assert outcome.stored == 1 and outcome.key == study_key(second.study_instance_uid)

    restarted = watcher()
    restarted.run(interval_s=0, polls=2, sleep=lambda seconds: None)
    assert restarted.poll() == []
    for study in (first, second):
        [seg] = orthanc.instances(study.study_instance_uid)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == study.series_instance_uid
    state_text = (out / "state.json").read_text()
    assert first.study_instance_uid not in state_text
    assert json.loads(state_text)["studies"][outcome.key]["status"] == "done"
    assert not (out / outcome.key / "images").exists()  # retrieved images are not kept


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_unreachable_pacs_does_not_stop_the_watcher(protocol, orthanc, tmp_path, caplog):
    settings = {**orthanc.settings(protocol), "timeout_s": 5}
    closed = free_port()  # nothing listens there
    settings["url" if protocol == "dicomweb" else "port"] = (
        f"http://127.0.0.1:{closed}/dicom-web" if protocol == "dicomweb" else closed
    )
    client = connect(PacsConfig(**settings, password=PASSWORD))
    running = Watcher(client, StudyQuery(), lambda study: None, ProcessedStudies(tmp_path / "state.json"))
    running.run(interval_s=0, polls=2, sleep=lambda seconds: None)
    assert caplog.text.count("poll failed") == 2
    assert PASSWORD not in caplog.text


def test_cli_watch_polls_and_stops(orthanc, upload_study, checkpoint, tmp_path):
    study = upload_study(33, SeriesIdentity())
    config = tmp_path / "pacs.yaml"
    config.write_text(yaml.safe_dump(orthanc.settings("dimse")))
    out = tmp_path / "out"
    arguments = ["--model", str(checkpoint), "--out", str(out), "--precision", "fp32", "--no-overlays"]
    status = main(["pacs", "-c", str(config), "watch", *arguments, "--interval", "0", "--polls", "2"])
    assert status == 0
    state = json.loads((out / "pacs-state.json").read_text())["studies"]
    assert state[study_key(study.study_instance_uid)]["status"] == "done"
    assert len(orthanc.instances(study.study_instance_uid)) == 1
