"""Connectors package."""
