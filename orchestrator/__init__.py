"""Sovereign: serve AI models across jurisdictions, each only where its law allows.

Layers, top to bottom (enforced by import-linter, see pyproject.toml):
cli > demo > reconcile | gateway > planning > policy | state > providers > fleet > errors.
"""

__version__ = "0.1.0"
