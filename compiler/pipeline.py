"""build(recipe): source file -> working graph -> artifact -> measurements -> bundle, in that order."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import targets as target_data
from targets import Target, TargetFileError

from . import analyze, bundle, compat, prune_stage, report, variants
from .data import Dataset
from .emit import EmitOptions, onnx_variants, tflite, tflite_from_onnx
from .emit import onnx as onnx_emit
from .errors import RecipeError, TargetError
from .graph import detect_format, framework, load
from .recipe import Calibration, Quantize, Recipe
from .stages import Artifacts, Datasets, host_threads, load_datasets, measure_all

Progress = Callable[[str], None]
# (framework of the working graph, artifact format) -> emitter of one quantization mode; Keras -> TFLite
# never goes through ONNX. With --quantize auto, Keras -> TFLite chooses among measured candidates
# (compiler/variants.py), and so do Keras/ONNX -> ONNX; ONNX -> TFLite builds the requested mode (auto: int8
# given calibration data).
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
        threads = recipe.threads or host_threads(target)
        emit = partial(_emit, source=framework(source_format), model_format=model_format, recipe=recipe,
                       target=target, data=data, work=Path(work))
        pruned = prune_stage.prune(graph, recipe, data, Path(work), progress)  # None without --prune
        progress(f"Converting to {model_format} (--quantize {recipe.quantize}; float32 baseline beside it)")
        artifacts = emit(pruned.graph if pruned else graph, threads=threads)
        progress("Checking the target's limits")
        memory_mb = compat.check_target(target, model_format, artifacts.model, recipe.force, notes)
        progress("Measuring through the bundle runtime")
        measured = measure_all(graph, artifacts, data, recipe, target)  # against the source: drops include pruning
        pruning = prune_stage.finish(pruned, graph, artifacts, data, recipe, target,
                                     partial(emit, threads=threads, mode=artifacts.quantize), progress)
        manifest = report.manifest(recipe, target, source_format, graph, artifacts, data, measured,
                                   memory_mb, notes, pruning)
        progress("Writing the bundle")
        bundle.write(output, report.contents(artifacts, manifest, measured, target), force=recipe.force)
    return BuildResult(output, manifest, tuple(manifest["warnings"]))


def _target_problem(recipe: Recipe, target: Target, model_format: str) -> Callable[[bytes], str | None]:
    """What keeps the target's interpreter from running a candidate; --force waives it."""
    return (lambda model: None) if recipe.force else compat.op_problem(target, model_format)


def resolve_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


def _emit(graph: Any, source: str, model_format: str, recipe: Recipe, target: Target, data: Datasets,
          work: Path, threads: int, mode: Quantize | None = None) -> Artifacts:
    """The artifact and its float32 baseline; `mode` forces one quantization mode (the unpruned reference)."""
    if mode is None and (source, model_format) == ("keras", "tflite"):
        return variants.select(graph, model_format, recipe, data, threads, work,
                               target_problem=_target_problem(recipe, target, model_format)).artifacts
    if mode is None and model_format == "onnx" and recipe.quantize in (Quantize.auto, Quantize.int8):
        emitter = partial(onnx_variants.build, source=source, activation_type=target.onnx_activation_type,
                          batch=recipe.batch)
        artifacts = variants.select(graph, model_format, recipe, data, threads, work, emitter,
                                    _target_problem(recipe, target, model_format)).artifacts
        # The chosen candidate's converter facts (converter, activation type, ...) where fixed modes put them.
        return replace(artifacts, details=dict(artifacts.choice["details"]))
    if mode is None:
        mode = recipe.quantize
    if mode is Quantize.auto:
        mode = Quantize.int8 if data.calib is not None else Quantize.none
    calibration = Calibration.minmax if recipe.calibration is Calibration.auto else recipe.calibration
    options = EmitOptions(mode, recipe.int8_io, calibration, target.onnx_activation_type, work, recipe.batch)
    emitted = EMITTERS[source, model_format](graph, data.calib, options)
    stats = [analyze.stats(model_format, artifact) for artifact in (emitted.model, emitted.baseline)]
    return Artifacts(model_format, emitted.model, emitted.baseline, *stats, emitted.layouts, emitted.details,
                     quantize=mode)


__all__ = ["BuildResult", "Dataset", "build", "resolve_target"]
