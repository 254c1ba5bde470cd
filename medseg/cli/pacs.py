"""`medseg pacs find|retrieve|run|watch`: segment studies from a PACS and store the DICOM SEGs back.

Connection settings come from ``--config FILE`` and ``MEDSEG_PACS_*`` variables (`medseg.pacs.config`).
Logs name studies by key (a hash of the Study Instance UID), never by patient data; ``find`` prints the
UIDs on standard output because they are what the user asked for.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command runs: `medseg --help` stays quick
    from medseg.pacs.client import PacsClient, Study, StudyQuery
    from medseg.pacs.pipeline import StudyOutcome

STATE_NAME = "pacs-state.json"

logger = logging.getLogger(__name__)


def _query_arguments(parser: argparse.ArgumentParser) -> None:
    query = parser.add_argument_group("which studies")
    query.add_argument("--date", default="", help="StudyDate YYYYMMDD or range YYYYMMDD-YYYYMMDD")
    query.add_argument(
        "--modality", default="", help="studies with this modality; only its series are segmented"
    )
    query.add_argument("--accession", default="", help="AccessionNumber")
    query.add_argument("--study-uid", default="", help="StudyInstanceUID")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        nargs="+",
        required=True,
        help="a shipped bundle's name, a bundle folder, a run folder or checkpoint(s), as for 'medseg infer'",
    )
    parser.add_argument(
        "--trust-bundle",
        action="store_true",
        help="allow a bundle folder that medseg did not ship (bundle configs can run code)",
    )
    parser.add_argument(
        "--out", "-o", type=Path, required=True, help="results folder (one sub-folder per study)"
    )
    parser.add_argument("--state", type=Path, default=None, help=f"state file (default: OUT/{STATE_NAME})")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "fp32"),
        default="auto",
        help="autocast (default: %(default)s)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    parser.add_argument(
        "--store-overlays", action="store_true", help="also store overlays as a Secondary Capture series"
    )
    parser.add_argument("--keep-images", action="store_true", help="keep the retrieved DICOM files")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=None, help="PACS settings (YAML or JSON)")
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    find = actions.add_parser("find", help="list matching studies as JSON lines")
    _query_arguments(find)
    retrieve = actions.add_parser("retrieve", help="download matching studies' image series")
    _query_arguments(retrieve)
    retrieve.add_argument("--out", "-o", type=Path, required=True, help="folder (one sub-folder per study)")
    run = actions.add_parser(
        "run", help="segment matching studies not yet in the state file and store the SEGs"
    )
    _query_arguments(run)
    _model_arguments(run)
    watch = actions.add_parser("watch", help="poll for new studies and process each once")
    _query_arguments(watch)
    _model_arguments(watch)
    watch.add_argument(
        "--interval", type=float, default=60.0, help="seconds between polls (default: %(default)s)"
    )
    watch.add_argument(
        "--lookback-days", type=int, default=1, help="poll studies this recent (default: %(default)s)"
    )
    watch.add_argument(
        "--settle-polls",
        type=int,
        default=1,
        help="polls a study's instance count must stay unchanged (default: %(default)s)",
    )
    watch.add_argument("--polls", type=int, default=None, help="stop after this many polls (default: never)")


def _query(args: argparse.Namespace) -> StudyQuery:
    from medseg.pacs.client import StudyQuery

    return StudyQuery(args.date, args.modality.upper(), args.accession, args.study_uid)


def _modalities(args: argparse.Namespace) -> tuple[str, ...]:
    """Series modalities to retrieve and segment: the one asked for, or any."""
    return (args.modality.upper(),) if args.modality else ()


def _processor(args: argparse.Namespace, client: PacsClient) -> Callable[[Study], StudyOutcome]:
    """A function segmenting one study with the model, as `medseg infer` does."""
    from medseg.inference.segmenter import Segmenter
    from medseg.pacs.pipeline import PacsOptions, process_study

    segmenter = Segmenter.load(
        args.model, args.device, precision=args.precision, trust_bundle=args.trust_bundle
    )
    options = PacsOptions(
        modalities=_modalities(args),
        keep_images=args.keep_images,
        store_overlays=args.store_overlays and not args.no_overlays,
        write_overlays=not args.no_overlays,
    )
    return lambda study: process_study(client, study, segmenter, args.out, options)


def run(args: argparse.Namespace) -> int:
    from medseg.inference.runner import EXIT_SOME_FAILED
    from medseg.pacs.client import connect
    from medseg.pacs.config import load_config
    from medseg.pacs.pipeline import retrieve_study
    from medseg.pacs.state import ProcessedStudies
    from medseg.pacs.watch import Watcher

    config = load_config(args.config)
    client = connect(config)
    logger.info("PACS: %s", config.describe())
    if args.action == "find":
        for study in client.find_studies(_query(args)):
            record = {
                "key": study.key,
                "study_instance_uid": study.study_instance_uid,
                "study_date": study.study_date,
                "modalities": list(study.modalities),
                "instances": study.number_of_instances,
            }
            print(json.dumps(record))
        return 0
    if args.action == "retrieve":
        for study in client.find_studies(_query(args)):
            count = retrieve_study(client, study, args.out / study.key, _modalities(args))
            logger.info("study %s: %d series retrieved", study.key, count)
        return 0
    state = ProcessedStudies(args.state or args.out / STATE_NAME)
    process = _processor(args, client)
    if args.action == "watch":
        watcher = Watcher(client, _query(args), process, state, args.lookback_days, args.settle_polls)
        watcher.run(args.interval, args.polls)
        return 0
    outcomes = Watcher(client, _query(args), process, state, lookback_days=None, settle_polls=0).poll()
    return 0 if all(outcome.ok for outcome in outcomes) else EXIT_SOME_FAILED
