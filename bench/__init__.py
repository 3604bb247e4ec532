"""Reproducible benchmarks (run as scripts; they print figures)."""
