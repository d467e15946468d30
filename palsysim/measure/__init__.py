"""Measures: expression fidelity (asymmetry, LPIPS), SER-FIQ, re-identification, video measures and `evaluate`."""
