"""Wiring: source -> enrich -> correlate -> map -> emit, plus health and metrics."""
