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
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .model import Model, ValidationReport, compare_golden, to_compiled
from .text import TextEncoder, bucket_lengths, text_samples

__all__ = ["BundleError", "BundleModel", "ChecksumError", "Model", "load"]
__version__ = "1"


class BundleError(Exception):
    """The bundle is incomplete or unreadable; the message names the file and what to do."""


RECOPY = "copy the bundle again from the build host, or rebuild it with `edgekiln build`"


class ChecksumError(BundleError):
    """The model file is not the one the manifest describes: refuse to run it."""


class BundleModel(Model):
    """A model loaded from a bundle directory, with its manifest and golden vectors."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], model_bytes: bytes, threads: int | None) -> None:
        tensors = manifest["model"].get("inputs", []) + manifest["model"].get("outputs", [])
        layouts = {t["name"]: t["layout"] for t in tensors if t.get("layout")}
        super().__init__(manifest["model"]["format"], model_bytes, threads, layouts)
        self.bundle_dir, self.manifest = bundle_dir, manifest
        self._text: TextEncoder | None = None
        self._lengths: dict[int, Model] = {}

    def golden(self) -> dict[str, np.ndarray]:
        """The golden vectors, checked against this model's inputs and outputs."""
        path = self.bundle_dir / self.manifest["golden"]["file"]
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise BundleError(f"{path} is truncated or not an .npz file ({type(exc).__name__}): {RECOPY}") from None
        outputs = [] if self.manifest.get("text") else self.outputs  # a text bundle's: its sentence embeddings
        names = [f"input_{k}" for k in range(len(self.inputs))] + [f"output_{k}" for k in range(len(outputs))]
        missing = [n for n in names if n not in arrays]
        counts = {arrays[n].shape[0] if arrays[n].ndim else 0 for n in names if n not in missing}
        bad = [n for n in names if n not in missing and arrays[n].dtype.kind not in "fiu"]
        if missing or bad or len(counts) != 1 or 0 in counts:
            raise BundleError(f"{path} does not hold golden vectors for this model (missing {missing}, "
                              f"non-numeric {bad}, sample counts {sorted(counts)}): {RECOPY}")
        tensors = zip(names, [*self.inputs, *outputs], strict=True)
        for name, info in tensors:  # golden arrays are in the source layout; info is the compiled one
            given = arrays[name].shape
            if len(given) == len(info.shape):  # (the layout's permutation needs the rank)
                given = to_compiled(arrays[name][:1], self.layouts.get(info.name)).shape
            if len(given) != len(info.shape) or any(0 < d != g for d, g in zip(info.shape[1:], given[1:], strict=True)):
                raise BundleError(f"{path}: {name} has shape {given}, the model's is {info.shape}: {RECOPY}")
        return arrays

    def validate(self) -> ValidationReport:
        """Golden inputs through this interpreter against the outputs recorded at build time; a bundle that takes text
        from text: its tokenizer gives the recorded token ids exactly, tokenizer -> model -> pooling the embeddings."""
        spec, golden, text = self.manifest["golden"], self.golden(), self.manifest.get("text")
        report = ValidationReport(atol=float(spec["atol"]), rtol=float(spec["rtol"]))
        if not text:
            return compare_golden(self, golden, report.atol, report.rtol)
        feeds, _ = self.text_encoder().feeds(text["golden_sentences"], [info.name for info in self.inputs])
        report.samples = text_samples(self.embed(text["golden_sentences"]), golden, feeds, report.atol, report.rtol)
        return report

    def text_encoder(self) -> TextEncoder:
        """The bundle's tokenizer bound to its text section (runtime/text.py), opened once."""
        if not self.manifest.get("text"):
            raise BundleError("this bundle takes token arrays, not text: it was built without --tokenizer")
        self._text = self._text or TextEncoder(self.bundle_dir, self.manifest["text"])
        return self._text

    def embed(self, sentences: list[str]) -> np.ndarray:
        """Sentences -> [len(sentences), width] embeddings, as the source model's users compute them (the bundle's
        tokenizer, padding, attention mask, pooling and normalization: runtime/text.py)."""
        encoder = self.text_encoder()
        feeds, mask = encoder.feeds(sentences, [info.name for info in self.inputs])
        lengths = bucket_lengths(mask, self.manifest["text"].get("buckets") or [mask.shape[1]])
        vectors: list[np.ndarray] = [np.empty(0)] * len(sentences)
        for length in sorted(set(lengths)):  # each sentence at its bucket's length: its own, rounded up
            rows = [k for k, n in enumerate(lengths) if n == length]
            outputs = self.at_length(length).predict_list([f[rows, :length] for f in feeds])
            for k, v in zip(rows, encoder.embeddings(outputs, mask[rows, :length]), strict=True):
                vectors[k] = v
        return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def at_length(self, length: int) -> Model:
        """This model with its sequence axis at `length`: onnxruntime takes any; TFLite gets one interpreter per
        length, kept (its first run resizes and allocates it: TFLiteBackend.run)."""
        if self.format == "onnx" or length == self.inputs[0].shape[1]:
            return self
        if length not in self._lengths:
            self._lengths[length] = Model(self.format, self.model_bytes, self.threads, self.layouts)
        return self._lengths[length]

    def raw_feeds(self, sample: list[np.ndarray] | None) -> list[np.ndarray]:
        """A bundle is benchmarked and profiled on its first golden input by default."""
        golden = self.golden() if sample is None else {}
        return super().raw_feeds(sample or [golden[f"input_{k}"] for k in range(len(self.inputs))])


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """manifest.json, with the keys the runtime relies on checked (types, plain file names)."""
    path = Path(bundle_dir) / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: it has no manifest.json")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"{path} is not valid JSON ({' '.join(str(exc).split())}): {RECOPY}") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise BundleError(f"{path} is not a bundle manifest: {problem}: {RECOPY}")
    return manifest


def _manifest_problem(m: object) -> str | None:
    """What in a parsed manifest the runtime cannot use, or None."""
    if not isinstance(m, dict) or not isinstance(m.get("model"), dict) or not isinstance(m.get("golden"), dict):
        return "it lacks the 'model' and 'golden' sections"
    model, golden, target = m["model"], m["golden"], m.get("target", {})
    for key, value in (("model.file", model.get("file")), ("golden.file", golden.get("file"))):
        if not isinstance(value, str) or not value or Path(value).name != value or value in (".", ".."):
            return f"{key} must name a file inside the bundle, got {value!r}"  # never a path out of it
    if not isinstance(model.get("sha256"), str) or model.get("format") not in ("tflite", "onnx"):
        return "model.sha256 must be text and model.format tflite or onnx"
    tensors = model.get("inputs", []), model.get("outputs", [])
    if not all(isinstance(ts, list) and all(isinstance(t, dict) and "name" in t for t in ts) for ts in tensors):
        return "model.inputs / model.outputs must be lists of tensors with a name"
    tolerances = (golden.get("atol"), golden.get("rtol"))
    if not all(isinstance(t, int | float) and not isinstance(t, bool) and t >= 0 for t in tolerances):
        return f"golden.atol / golden.rtol must be numbers >= 0, got {tolerances}"
    threads = target.get("default_threads") if isinstance(target, dict) else "?"
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        return f"target.default_threads must be a positive integer, got {threads!r}"
    return None


def load(bundle_dir: str | Path, threads: int | None = None) -> BundleModel:
    """Load a bundle after checking that the model bytes match the manifest's sha256.

    threads: interpreter threads; by default the target's default from the manifest.
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    model_path, expected = bundle / manifest["model"]["file"], manifest["model"]["sha256"]
    if not model_path.is_file():
        raise BundleError(f"model file {model_path} is missing: {RECOPY}")
    model_bytes = model_path.read_bytes()
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != expected:
        raise ChecksumError(f"{model_path.name} has sha256 {digest[:12]}..., the manifest expects "
                            f"{expected[:12]}...: the model was changed; refusing to load it")
    if threads is None:
        threads = manifest.get("target", {}).get("default_threads")
    try:
        return BundleModel(bundle, manifest, model_bytes, threads)
    except ImportError as exc:  # no interpreter package: requirements.txt was not installed
        raise BundleError(f"no interpreter for {model_path.name} ({exc}): pip install -r requirements.txt") from None
    except Exception as exc:  # noqa: BLE001  (interpreters raise their own types; wrapped where they enter)
        text = " ".join(str(exc).split())[:300]
        raise BundleError(f"{model_path.name} cannot be opened by the interpreter ({text}): check that "
                          "requirements.txt is installed, else " + RECOPY) from None
