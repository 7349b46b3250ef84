"""build(recipe): source file -> working graph -> artifact -> measurements -> bundle, in that order."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import targets as target_data
from targets import Target, TargetFileError

from . import analyze, bundle, compat, prune_stage, report
from .data import Dataset
from .emit import EmitOptions, tflite, tflite_from_onnx
from .emit import onnx as onnx_emit
from .errors import RecipeError, TargetError
from .graph import detect_format, framework, load
from .recipe import Recipe
from .stages import Artifacts, Datasets, load_datasets, measure_all

Progress = Callable[[str], None]
# (framework of the working graph, artifact format) -> emitter; Keras -> TFLite never goes
# through ONNX (onnx2tf fails on tf2onnx's NHWC output: FACTS.md).
EMITTERS = {("keras", "tflite"): tflite.emit, ("onnx", "tflite"): tflite_from_onnx.emit,
            ("keras", "onnx"): onnx_emit.emit_from_keras, ("onnx", "onnx"): onnx_emit.emit}


@dataclass(frozen=True)
class BuildResult:
    """Where the bundle went, its manifest, and what the user must be told."""

    output: Path
    manifest: dict
    warnings: tuple[str, ...]


def build(recipe: Recipe, progress: Progress = lambda stage: None) -> BuildResult:
    """Compile recipe.source into a bundle at recipe.output; every stage is one call."""
    target = resolve_target(recipe.target)
    model_format = str(recipe.format or target.default_format)
    output = Path(recipe.output)
    bundle.check_writable(output, recipe.force)            # fail before minutes of work, not after
    notes: list[str] = []                                  # target checks --force overrode
    compat.enforce(lambda: compat.check_wheels(target, model_format), recipe.force, notes)
    if not (recipe.calib or recipe.eval):
        raise RecipeError("a build needs real input data for measurement and golden vectors",
                          "pass --calib DATA and/or --eval DATA")
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        source_format = detect_format(recipe.source)
        graph = load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe, batch=recipe.batch)
        progress("Reading calibration / evaluation data")
        data = load_datasets(recipe, graph.inputs)
        emit = partial(_emit, source=framework(source_format), model_format=model_format, recipe=recipe,
                       target=target, data=data, work=Path(work))
        pruned = prune_stage.prune(graph, recipe, data, Path(work), progress)  # None without --prune
        progress(f"Converting to {model_format}: float32 baseline and {recipe.quantize}")
        artifacts = emit(pruned.graph if pruned else graph)
        progress("Checking the target's limits")
        memory_mb = compat.check_target(target, model_format, artifacts.model, recipe.force, notes)
        progress("Measuring through the bundle runtime")
        measured = measure_all(graph, artifacts, data, recipe, target)  # against the source: drops include pruning
        pruning = prune_stage.finish(pruned, graph, artifacts, data, recipe, target, emit, progress)
        manifest = report.manifest(recipe, target, source_format, graph, artifacts, data, measured,
                                   memory_mb, notes, pruning)
        progress("Writing the bundle")
        bundle.write(output, report.contents(artifacts, manifest, measured, target), force=recipe.force)
    return BuildResult(output, manifest, tuple(manifest["warnings"]))


def resolve_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


def _emit(graph: Any, source: str, model_format: str, recipe: Recipe, target: Target, data: Datasets,
          work: Path) -> Artifacts:
    options = EmitOptions(recipe.quantize, recipe.int8_io, recipe.calibration_method,
                          target.onnx_activation_type, work, recipe.batch)
    emitted = EMITTERS[source, model_format](graph, data.calib, options)
    stats = [analyze.stats(model_format, artifact) for artifact in (emitted.model, emitted.baseline)]
    return Artifacts(model_format, emitted.model, emitted.baseline, *stats, emitted.layouts, emitted.details)


__all__ = ["BuildResult", "Dataset", "build", "resolve_target"]
