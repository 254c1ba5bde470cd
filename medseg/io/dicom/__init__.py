"""DICOM reading and writing.

`read_series` reads one series (a folder or a list of files) as a `ScalarImage` in RAS+ mm.
"""

from medseg.io.dicom.series import read_series

__all__ = ["read_series"]
