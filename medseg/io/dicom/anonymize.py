"""Replace the patient's identity in a DICOM object that medseg exports (``medseg infer --anonymize``).

A DICOM SEG must carry the patient and study modules of its source (PS3.3 C.7.1.1, C.7.2.1), so by
default it copies the source's PatientName, PatientID and BirthDate. With anonymisation the patient
becomes a pseudonym, the other identifying attributes of PS3.15's Basic Profile that a SEG can carry
are emptied (type 2) or removed (type 3), and the object says so (PatientIdentityRemoved, the method).
UIDs are kept, so the SEG still references its source series: this is pseudonymisation for sharing
results, not a de-identification of the study itself.
"""

from __future__ import annotations

import pydicom

#: Type 2 attributes (present, may be empty) of a SEG's patient and study modules that identify the
#: patient or the visit: emptied (PatientName and PatientID, also type 2, get the pseudonym).
EMPTIED = (
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Type 3 attributes that identify the patient, the visit or the staff: removed.
REMOVED = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "EthnicGroup",
    "PatientComments",
    "IssuerOfPatientID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "PhysiciansOfRecord",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "StudyDescription",
    "SeriesDate",
    "ContentDate",
    "AcquisitionDateTime",
)
#: What DeidentificationMethod says (a LO: at most 64 characters).
METHOD = "medseg anonymize: pseudonym, identifiers emptied, UIDs kept"


def anonymize(ds: pydicom.Dataset, pseudonym: str) -> pydicom.Dataset:
    """Give `ds` the patient `pseudonym` (PatientName and PatientID) and drop identifying attributes."""
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    for keyword in EMPTIED:
        if keyword in ds:
            setattr(ds, keyword, "")
    for keyword in REMOVED:
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    return ds


#: What DeidentificationMethod says where the source says it was de-identified but not how.
METHOD_NOT_RECORDED = "de-identified at the source; method not recorded there"


def copy_identity_removal(ds: pydicom.Dataset, source: pydicom.Dataset) -> pydicom.Dataset:
    """Carry the source's PatientIdentityRemoved into `ds` with the method it requires (type 1C): the
    source's own, or `METHOD_NOT_RECORDED` where a sloppy source gives none."""
    if str(source.get("PatientIdentityRemoved", "")).upper() != "YES" or ds.get("DeidentificationMethod"):
        return ds
    ds.PatientIdentityRemoved = "YES"
    method = source.get("DeidentificationMethod")
    if method:
        ds.DeidentificationMethod = method
    elif "DeidentificationMethodCodeSequence" in source:
        ds.DeidentificationMethodCodeSequence = source.DeidentificationMethodCodeSequence
    else:
        ds.DeidentificationMethod = METHOD_NOT_RECORDED
    return ds
