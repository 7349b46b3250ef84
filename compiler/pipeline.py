"""build(recipe): source file -> working graph -> artifact -> measurements -> bundle, in that order."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import targets as target_data
from targets import Target, TargetFileError

from . import bundle, compat, report, variants
from .data import Dataset
from .errors import RecipeError, TargetError
from .graph import detect_format
from .graph import keras as keras_graph
from .recipe import Recipe
from .stages import host_threads, load_datasets, measure_all

Progress = Callable[[str], None]


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
    compat.check_wheels(target, model_format)
    if not (recipe.calib or recipe.eval):
        raise RecipeError("a build needs real input data for measurement and golden vectors",
                          "pass --calib DATA and/or --eval DATA")
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        source_format = detect_format(recipe.source)
        graph = keras_graph.load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe)
        progress("Reading calibration / evaluation data")
        data = load_datasets(recipe, graph.inputs)
        progress(f"Building, judging and timing the candidates (--quantize {recipe.quantize})")
        threads = recipe.threads or host_threads(target)
        artifacts = variants.select(graph, model_format, recipe, data, threads, Path(work)).artifacts
        progress("Checking the target's limits")
        memory_mb = compat.check_memory(target, len(artifacts.model),
                                        compat.tflite_arena_bytes(artifacts.model))
        progress("Measuring through the bundle runtime")
        measured = measure_all(graph, artifacts, data, recipe, target)
        manifest = report.manifest(recipe, target, source_format, graph, artifacts, data, measured,
                                   memory_mb)
        progress("Writing the bundle")
        bundle.write(output, report.contents(artifacts, manifest, measured, target), force=recipe.force)
    return BuildResult(output, manifest, tuple(manifest["warnings"]))


def resolve_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


__all__ = ["BuildResult", "Dataset", "build", "resolve_target"]
