"""Inference: `Segmenter` (the front door), sliding window, test-time augmentation, regrid, post-processing,
input discovery and the batch runner. Never imports training, the command line, the PACS services or the
bundle entry points."""
