"""Where and how tensors run: device, precision, memory format, compilation, distributed processes. Imports
nothing of medseg but the errors."""
