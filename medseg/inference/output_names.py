"""The names of what ``medseg infer`` writes: one folder per input, and a summary beside them.

The batch runner writes these; evaluation, reports, the PACS services and the demo read them, so they are
named in one place that imports nothing.
"""

#: Per input: the labels on the source grid, the DICOM SEG, the uncertainty map, the overlays, the page,
#: and the record of what made them (written last).
MASK_NAME = "mask.nii.gz"
#: For a PNG/JPEG input, also the labels as a PNG in the picture's own orientation (rows, columns).
MASK_PNG_NAME = "mask.png"
SEG_NAME = "seg.dcm"
#: With ``--rtstruct``: the labels as an RT Structure Set, one ROI per class (DICOM series inputs).
RTSTRUCT_NAME = "rtstruct.dcm"
#: Where the series came with a clinician's SEG or RTSTRUCT: agree / AI only / clinician only, as a SEG.
DISAGREEMENT_SEG_NAME = "disagreement.dcm"
UNCERTAINTY_NAME = "uncertainty.nii.gz"
OVERLAYS_DIR = "overlays"
REPORT_NAME = "report.html"
RESULT_NAME = "result.json"
#: Beside the input folders: every input's status.
SUMMARY_NAME = "summary.json"
