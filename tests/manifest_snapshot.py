"""The sample models' manifests, with what a run on another host or at another time changes masked.

A refactor of the compiler must not change what a build writes: `tests/integration/test_manifest_snapshot.py`
builds every recipe here and compares its masked manifest field by field with the one recorded in
`tests/data/manifests/`. Re-record (only when a change of output is intended, and say so in the commit):

    .venv/bin/python -m tests.manifest_snapshot --write [NAME ...]

Masked: timings (they differ run to run), the host's identity (CPU, ISA flags), dates and versions, the
per-op profile (ranked by time), and every phrase of a text that quotes a host timing. Kept: everything
else, byte for byte: choices, verdicts, the cost model's estimates, fidelity and accuracy figures, sizes.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
RECORDED = ROOT / "tests" / "data" / "manifests"

_MNIST = {"calib": SAMPLES / "mnist_calib.npz", "eval": SAMPLES / "mnist_eval.npz"}
_NCHW = {"calib": SAMPLES / "mnist_calib_nchw.npz", "eval": SAMPLES / "mnist_eval_nchw.npz"}
_TEXT = {"calib": SAMPLES / "intent_calib.txt", "eval": SAMPLES / "intent_eval.txt",
         "tokenizer": SAMPLES / "intent_tokenizer.json"}

# name -> (source, build options): the demo build, each sample in its own format, pruning, the encoder.
RECIPES: dict[str, tuple[Path, dict[str, Any]]] = {
    "mnist_resnet_auto": (SAMPLES / "mnist_resnet.keras", {**_MNIST}),
    "mnist_cnn_int8": (SAMPLES / "mnist_cnn.keras", {**_MNIST, "quantize": "int8"}),
    "mnist_cnn_pruned": (SAMPLES / "mnist_cnn.keras", {**_MNIST, "prune": 0.25, "recover": "reconstruct",
                                                      "format": "tflite"}),
    "resnet_nchw_onnx": (SAMPLES / "mnist_resnet_nchw.onnx", {**_NCHW, "format": "onnx"}),
    "dwsep_nchw_tflite": (SAMPLES / "mnist_dwsep_nchw.onnx", {**_NCHW, "format": "tflite"}),
    "intent_slim": (SAMPLES / "intent_encoder.keras", {**_TEXT, "drop_layers": 1, "prune_heads": 0.5,
                                                       "format": "tflite"}),
}
COMMON = {"target": "rpi4", "bench_runs": 20, "force": True}
# The recipes of tests/integration/test_manifest_snapshot.py; the others are test_manifest_snapshot_more.py's.
# Two files, because pytest-xdist's --dist loadfile runs a file on one worker: the six builds in one file made
# it the longest of the suite, which bounds the suite's time on two workers.
FIRST_FILE = ("intent_slim", "mnist_cnn_int8", "resnet_nchw_onnx")

# Keys whose values are timings, host identity or dates: replaced by "<masked>" wherever they occur.
MASKED_KEYS = frozenset({
    "created_utc", "compiler", "cpu", "isa", "machine", "int8_dot_product", "runtime_version",
    "init_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "runs",
    "runs_per_candidate", "speedup_vs_baseline", "speedup", "latency_ratio", "unpruned_p50_ms",
    "host_would_choose", "peak_rss_mb", "profile", "per_layer_ms", "seconds",
})
# Warnings that appear or not with host timing (a variant slower than float32 on this host).
_HOST_WARNINGS = re.compile(r"slower than the float32 baseline on this host", re.I)
# Phrases of free text that quote a host timing or a host-timing verdict.
_HOST_PHRASES = (
    (re.compile(r"host timing (agrees|would have chosen [\w:+.-]+)"), "host timing <masked>"),
    (re.compile(r"p50 [\d.]+ ms( vs [\w:+.-]+ [\d.]+ ms)?"), "p50 <masked>"),
    (re.compile(r"\(p50 [\d.]+ ms vs [\d.]+ ms\)"), "(p50 <masked>)"),
    (re.compile(r"[\d.]+x slower than ([\w:+.-]+)(?! by)"), r"<masked>x slower than \1"),
    (re.compile(r"slower \([\d.]+x the chosen p50\)"), "slower (<masked>x the chosen p50)"),
)


def masked(value: Any, key: str = "") -> Any:
    """The manifest with its host- and time-dependent parts replaced by "<masked>"."""
    if key in MASKED_KEYS:
        return "<masked>"
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        kept = [v for v in value if not (key == "warnings" and isinstance(v, str) and _HOST_WARNINGS.search(v))]
        return [masked(v, key) for v in kept]
    if isinstance(value, str):
        value = value.replace(str(ROOT), "<root>")
        for pattern, replacement in _HOST_PHRASES:
            value = pattern.sub(replacement, value)
    return value


def build_options(name: str) -> dict[str, Any]:
    """The options of `edgekiln.build` for one recipe of RECIPES (the output folder aside)."""
    source, options = RECIPES[name]
    return {"source": source, **COMMON, **options}


def build_masked(name: str, output: Path) -> dict[str, Any]:
    """Build one recipe of RECIPES into `output`; its manifest, masked."""
    import edgekiln

    edgekiln.build(**build_options(name), output=str(output))
    return bundle_masked(output)


def bundle_masked(bundle: Path) -> dict[str, Any]:
    """A bundle's manifest, masked."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["recipe"]["output"] = "<masked>"  # a scratch directory
    return masked(manifest)


def differences(recorded: Any, built: Any, path: str = "") -> list[str]:
    """Every field where two masked manifests differ, as 'path: recorded != built'."""
    if isinstance(recorded, dict) and isinstance(built, dict):
        out = [f"{path}.{k}: only in the recorded manifest" for k in recorded if k not in built]
        out += [f"{path}.{k}: only in the new manifest" for k in built if k not in recorded]
        for k in recorded:
            if k in built:
                out += differences(recorded[k], built[k], f"{path}.{k}")
        return out
    if isinstance(recorded, list) and isinstance(built, list) and len(recorded) == len(built):
        return [d for i, (a, b) in enumerate(zip(recorded, built, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if recorded == built else [f"{path}: {recorded!r} != {built!r}"]


def main(argv: list[str]) -> int:
    import tempfile

    if not argv or argv[0] != "--write":
        print(__doc__)
        return 2
    RECORDED.mkdir(parents=True, exist_ok=True)
    for name in argv[1:] or list(RECIPES):
        with tempfile.TemporaryDirectory() as work:
            manifest = build_masked(name, Path(work) / name)
        (RECORDED / f"{name}.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print(f"recorded {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
