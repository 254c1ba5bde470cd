"""Reading and writing medical images. Everything comes in and goes out as `medseg.io.Image`."""

from medseg.io.image import Image, LabelMap, ScalarImage

__all__ = ["Image", "LabelMap", "ScalarImage"]
