"""Sagas package."""
