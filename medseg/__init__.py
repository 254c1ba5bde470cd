"""medseg: medical image segmentation for hospital ML teams."""

__version__ = "0.1.0"
