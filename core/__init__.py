"""Shared settings and models that every layer imports (dependency arrows point here)."""
