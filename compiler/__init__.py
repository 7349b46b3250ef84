"""edgekiln: compile a trained model into a measured, validated bundle for an edge device."""

from __future__ import annotations

__version__ = "0.1.0"
