"""The `medseg` command line. Each command lives in its own module under `medseg.cli`."""
