"""PACS integration: find studies, retrieve them, segment them and store the DICOM SEG back.

- `medseg.pacs.config`: settings from a file and ``MEDSEG_PACS_*`` variables (`load_config`).
- `medseg.pacs.client`: the protocol-neutral `PacsClient`, `StudyQuery`, `Study`, `connect(config)`.
- `medseg.pacs.dicomweb` / `medseg.pacs.dimse`: QIDO/WADO/STOW-RS and C-FIND/C-GET/C-STORE clients.
- `medseg.pacs.pipeline`: `process_study` (retrieve -> `medseg infer`'s batch runner -> store).
- `medseg.pacs.state` and `medseg.pacs.watch`: polling for new studies, once each across restarts.
"""
