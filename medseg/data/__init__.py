"""Datasets, transforms and synthetic data."""
