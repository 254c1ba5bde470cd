"""DICOM reading and writing."""
