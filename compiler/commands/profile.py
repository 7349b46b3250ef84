"""`edgekiln profile MODEL|BUNDLE`: where the time goes, op by op, measured through the bundle runtime.

A bundle: its shipped model, fed its first golden input. A compiled .tflite file: as it is. A source model
(.keras, .h5, SavedModel, .onnx) with --calib: compiled as float32 and as a default build would ship it
(two builds into a scratch directory), profiled side by side and matched by source layer.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekiln.compiler.console import console
from edgekiln.compiler.data import first_sample
from edgekiln.compiler.errors import EdgekilnError, RecipeError
from edgekiln.compiler.manifest_schema import Profile
from edgekiln.compiler.profile import profile_model
from edgekiln.compiler.profile.stage import layers_side_by_side
from edgekiln.compiler.profile.table import print_layers, print_profile


class SourceProfile(Profile, total=False):
    """`profile SOURCE --json`: the model as a default build ships it, beside its float32 build, by layer."""

    float32: Profile
    by_layer: list[dict[str, object]]


def run_profile(path: Path, target: str | None, calib: Path | None, threads: int | None, top: int,
                json_out: Path | None, runs: int, progress: Any = lambda stage: None, quantize: str = "auto",
                ) -> Profile:
    """Profile PATH, print the tables, write --json; returns what was written. `quantize`: what the build
    of a source model ships (a default build: auto)."""
    from edgekiln.compiler.pipeline import resolve_target

    if not path.exists():
        raise EdgekilnError(f"{path} does not exist", "pass a bundle directory, a .tflite file or a source model")
    result: Profile
    if (path / "manifest.json").is_file():
        result = _bundle(path, target, threads, runs)
        print_profile(result, f"{path} (shipped model, host)", top)
    elif path.suffix == ".tflite":
        figures = resolve_target(target) if target else None
        result = profile_model("tflite", path.read_bytes(), threads or 1, _sample(calib), figures, runs=runs,
                               name=str(path))
        print_profile(result, f"{path} (host)", top)
    else:
        shipped = _source(path, target, calib, threads, runs, progress, quantize)
        print_profile(shipped["float32"], f"{path} as float32 (host)", top)
        print_profile(shipped, f"{path} as a default build ships it: {shipped['variant']} (host)", top)
        print_layers(shipped["by_layer"], "time per source layer (host)", ("float32", shipped["variant"]), top)
        result = shipped
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"profile written to {json_out}", markup=False)
    return result


def _bundle(path: Path, target: str | None, threads: int | None, runs: int) -> Profile:
    from edgekiln.compiler.pipeline import resolve_target
    from edgekiln.runtime import BundleError, load

    try:
        model = load(path)
    except BundleError as exc:
        raise EdgekilnError(str(exc), "rebuild the bundle with `edgekiln build`") from None
    manifest = model.manifest
    figures = resolve_target(target or manifest["target"]["name"])
    threads = threads or manifest["latency"]["host"].get("threads") or 1
    golden = model.golden()
    sample = [golden[f"input_{k}"][:1] for k in range(len(model.inputs))]
    return profile_model(model.format, model.model_bytes, threads, sample, figures, model.layouts, runs=runs,
                         name=str(path))


def _source(path: Path, target: str | None, calib: Path | None, threads: int | None, runs: int,
            progress: Any, quantize: str) -> SourceProfile:
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Quantize, Recipe

    if calib is None:
        raise RecipeError("profiling a source model compiles it, which needs calibration data",
                          "pass --calib DATA (or profile a bundle or a .tflite file)")
    with tempfile.TemporaryDirectory(prefix="edgekiln-profile-") as scratch:
        profiles: dict[str, Profile] = {}
        variants: dict[str, str] = {}
        plans = (("float32", Quantize.none),) + ((("shipped", Quantize(quantize)),) if quantize != "none" else ())
        for name, mode in plans:  # a float32 build ships float32: one build is both
            progress(f"Compiling {path.name} ({'float32' if name == 'float32' else 'as a default build'})")
            recipe = Recipe(source=str(path), target=target or "rpi4", calib=str(calib), threads=threads,
                            quantize=mode, output=str(Path(scratch) / name), bench_runs=min(runs, 30))
            result = build(recipe, progress)
            progress(f"Profiling the {name} model")
            profiles[name] = _bundle(result.output, target, threads, runs)
            quantization = result.manifest["quantization"]
            variants[name] = quantization.get("variant", "int8") if quantization else "float32"
    profiles.setdefault("shipped", profiles["float32"])
    variants.setdefault("shipped", variants["float32"])
    by_layer = layers_side_by_side(profiles["float32"], profiles["shipped"], ("float32_ms", "shipped_ms"))
    float32: Profile = {**profiles["float32"], "model": str(path), "variant": variants["float32"]}
    return {**profiles["shipped"], "model": str(path), "variant": variants["shipped"], "float32": float32,
            "by_layer": list(by_layer)}


def _sample(calib: Path | None) -> list[np.ndarray] | None:
    """The first calibration sample (a .npz with one array per input, or .npy), read by the build's loader (a big
    .npy memory-mapped, not read whole); zeros without --calib."""
    return None if calib is None else [np.asarray(a, np.float32) for a in first_sample(calib, "calibration")]
