"""build(recipe): source file -> working graph -> artifact -> measurements -> bundle, in that order."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import targets as target_data
from targets import Target, TargetFileError

from . import analyze, bundle, compat, prune_stage, report
from .data import Dataset
from .emit import tflite
from .errors import RecipeError, TargetError
from .graph import detect_format
from .graph import keras as keras_graph
from .recipe import Quantize, Recipe
from .stages import Artifacts, Datasets, load_datasets, measure_all

Progress = Callable[[str], None]
EMITTERS = {"tflite": tflite.convert}


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
        graph = keras_graph.load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe)
        progress("Reading calibration / evaluation data")
        data = load_datasets(recipe, graph.inputs)
        pruned = prune_stage.prune(graph, recipe, data, Path(work), progress)  # None without --prune
        progress(f"Converting: float32 baseline and {recipe.quantize}")
        artifacts = _emit(pruned.graph if pruned else graph, model_format, recipe, data)
        progress("Checking the target's limits")
        memory_mb = compat.check_target(target, model_format, artifacts.model, recipe.force, notes)
        progress("Measuring through the bundle runtime")
        measured = measure_all(graph, artifacts, data, recipe, target)  # against the source: drops include pruning
        pruning = prune_stage.finish(pruned, graph, artifacts, data, recipe, target, EMITTERS[model_format], progress)
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


def _emit(graph: keras_graph.KerasGraph, model_format: str, recipe: Recipe, data: Datasets) -> Artifacts:
    emit = EMITTERS[model_format]
    baseline = emit(graph.saved_model_dir, Quantize.none, None, recipe.int8_io)
    model = baseline if recipe.quantize is Quantize.none else \
        emit(graph.saved_model_dir, recipe.quantize, data.calib, recipe.int8_io)
    return Artifacts(model_format, model, baseline, analyze.tflite_stats(model), analyze.tflite_stats(baseline))


__all__ = ["BuildResult", "Dataset", "build", "resolve_target"]
