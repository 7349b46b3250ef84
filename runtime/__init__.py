"""The edgekiln bundle runtime: stdlib + numpy + one interpreter package, nothing else.

    import runtime
    m = runtime.load("path/to/bundle")   # verifies the model's sha256 before loading it
    y = m.predict(x)                      # float in, float out, whatever the model's int8 I/O
                                          # and in the source model's layout (e.g. NCHW)

This package is copied verbatim into every bundle; it never imports the compiler, and it
imports TensorFlow only when neither ai-edge-litert nor tflite-runtime is installed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .model import Model, ValidationReport, compare_golden

__all__ = ["BundleError", "BundleModel", "ChecksumError", "Model", "load"]
__version__ = "1"


class BundleError(Exception):
    """The bundle is incomplete or unreadable."""


class ChecksumError(BundleError):
    """The model file is not the one the manifest describes: refuse to run it."""


class BundleModel(Model):
    """A model loaded from a bundle directory, with its manifest and golden vectors."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], model_bytes: bytes,
                 threads: int | None) -> None:
        tensors = manifest["model"].get("inputs", []) + manifest["model"].get("outputs", [])
        layouts = {t["name"]: t["layout"] for t in tensors if t.get("layout")}
        super().__init__(manifest["model"]["format"], model_bytes, threads, layouts)
        self.bundle_dir, self.manifest = bundle_dir, manifest

    def golden(self) -> dict[str, np.ndarray]:
        with np.load(self.bundle_dir / self.manifest["golden"]["file"]) as data:
            return {k: data[k] for k in data.files}

    def validate(self) -> ValidationReport:
        """Golden inputs through this interpreter, compared with the outputs recorded at build time."""
        spec = self.manifest["golden"]
        return compare_golden(self, self.golden(), float(spec["atol"]), float(spec["rtol"]))

    def benchmark(self, sample: list[np.ndarray] | None = None, runs: int = 50, warmup: int = 5) -> dict:
        if sample is None:
            golden = self.golden()
            sample = [golden[f"input_{k}"] for k in range(len(self.inputs))]
        return super().benchmark(sample, runs, warmup)


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    path = Path(bundle_dir) / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: it has no manifest.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc


def load(bundle_dir: str | Path, threads: int | None = None) -> BundleModel:
    """Load a bundle after checking that the model bytes match the manifest's sha256.

    threads: interpreter threads; by default the target's default from the manifest.
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    try:
        model_path, expected = bundle / manifest["model"]["file"], manifest["model"]["sha256"]
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{bundle / 'manifest.json'} lacks model.file / model.sha256") from exc
    if not model_path.is_file():
        raise BundleError(f"model file {model_path} is missing")
    model_bytes = model_path.read_bytes()
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != expected:
        raise ChecksumError(f"{model_path.name} has sha256 {digest[:12]}..., the manifest expects "
                            f"{expected[:12]}...: the model was changed; refusing to load it")
    if threads is None:
        threads = manifest.get("target", {}).get("default_threads")
    return BundleModel(bundle, manifest, model_bytes, threads)
