"""DICOM reading and writing.

`read_series` reads one series (a folder or a list of files) as a 3D `ScalarImage` in RAS+ mm;
`read_dicom_image` reads one 2D image (radiograph, mammogram).
"""

from medseg.io.dicom.image2d import read_dicom_image
from medseg.io.dicom.series import read_series

__all__ = ["read_dicom_image", "read_series"]
