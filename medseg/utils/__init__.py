"""Small helpers shared across medseg."""
