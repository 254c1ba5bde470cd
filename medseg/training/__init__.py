"""Training: `fit` (trainer), its config, experiment, patch pipeline, loss and optimiser, validation, run
log, RNG state and cross-validation."""
