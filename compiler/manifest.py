"""The versioned manifest schema (schema_version 1): required keys, tool versions, JSON writing."""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from typing import Any

from runtime import jsonsafe

from . import __version__

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "compiler", "created_utc", "recipe", "target", "source", "model",
                 "baseline", "size", "pruning", "quantization", "fidelity", "latency", "golden")
_TOOLS = {"tensorflow": "tensorflow-cpu", "keras": "keras", "onnx": "onnx", "onnxruntime": "onnxruntime",
          "ai_edge_litert": "ai-edge-litert", "numpy": "numpy", "tf2onnx": "tf2onnx",
          "onnx2tf": "onnx2tf"}


def compiler_versions() -> dict[str, str]:
    """edgekiln's version and the versions of the tools a build may use."""
    versions = {"name": "edgekiln", "version": __version__}
    for key, dist in _TOOLS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions


def assemble(sections: dict[str, Any]) -> dict[str, Any]:
    """The manifest: schema header + the build's sections, checked for the contract keys."""
    manifest = {"schema_version": SCHEMA_VERSION, "compiler": compiler_versions(),
                "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **sections,
                "null_values": jsonsafe.NULL_MEANINGS}
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"manifest lacks contract keys {missing}")  # a compiler bug, not a user error
    return manifest


def dumps(manifest: dict[str, Any]) -> str:
    """Strict JSON: a non-finite figure is null, and `non_finite` says what each one was (runtime/jsonsafe.py)."""
    return jsonsafe.dumps(manifest, indent=2, sort_keys=False) + "\n"
