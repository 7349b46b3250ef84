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

from . import analyze, bundle, compat, formats, prune_stage, report, shapes, variants
from .data import Dataset
from .emit import EmitOptions, onnx_variants, tflite, tflite_from_onnx, tflite_from_onnx_variants, tflite_variants
from .emit import onnx as onnx_emit
from .errors import RecipeError, TargetError
from .graph import detect_format, framework, load
from .recipe import Calibration, Quantize, Recipe, check_paths
from .stages import Artifacts, Datasets, check_labels, host_threads, load_datasets, measure_all

Progress = Callable[[str], None]
# (framework of the working graph, artifact format) -> emitter of one quantization mode; Keras -> TFLite
# never goes through ONNX. Fixed modes of a single format use these (the unpruned reference of a pruned
# build, too); the candidate search (compiler/variants.py) uses VARIANT_EMITTERS.
EMITTERS = {("keras", "tflite"): tflite.emit, ("onnx", "tflite"): tflite_from_onnx.emit,
            ("keras", "onnx"): onnx_emit.emit_from_keras, ("onnx", "onnx"): onnx_emit.emit}
# (framework, format) -> the emitter of every candidate of that format (candidates.CANDIDATES).
VARIANT_EMITTERS = {("keras", "tflite"): tflite_variants.build, ("onnx", "tflite"): tflite_from_onnx_variants.build,
                    ("keras", "onnx"): partial(onnx_variants.build, source="keras"),
                    ("onnx", "onnx"): partial(onnx_variants.build, source="onnx")}


@dataclass(frozen=True)
class BuildResult:
    """Where the bundle went, its manifest, and what the user must be told."""

    output: Path
    manifest: dict
    warnings: tuple[str, ...]


def build(recipe: Recipe, progress: Progress = lambda stage: None) -> BuildResult:
    """Compile recipe.source into a bundle at recipe.output; every stage is one call."""
    check_paths(recipe)                                    # the files named exist, before any work
    target = resolve_target(recipe.target)
    chosen_formats = formats.resolve(recipe, target)       # one, or every format the target runs (measured)
    output = Path(recipe.output)
    bundle.check_writable(output, recipe.force)            # fail before minutes of work, not after
    notes: list[str] = []                                  # target checks --force overrode
    for model_format in chosen_formats.build:
        compat.enforce(lambda f=model_format: compat.check_wheels(target, f), recipe.force, notes)
    if not (recipe.calib or recipe.eval):
        raise RecipeError("a build needs real input data for measurement and golden vectors",
                          "pass --calib DATA and/or --eval DATA")
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        source_format = detect_format(recipe.source)
        graph = load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe, batch=recipe.batch,
                     input_shapes=recipe.input_shape, data_shapes=_data_shapes(recipe, source_format))
        if recipe.main_output is not None and recipe.main_output not in graph.output_names:
            raise RecipeError(f"main_output '{recipe.main_output}' is not an output of {Path(recipe.source).name}",
                              f"its outputs: {', '.join(graph.output_names)}")
        progress("Reading calibration / evaluation data")
        data = load_datasets(recipe, graph.inputs)
        check_labels(graph, data)                          # labels index the model's classes
        threads = recipe.threads or host_threads(target)
        emit = partial(_emit, source=framework(source_format), recipe=recipe, target=target, data=data,
                       work=Path(work))
        pruned = prune_stage.prune(graph, recipe, data, Path(work), progress)  # None without --prune
        progress(f"Converting to {' and '.join(chosen_formats.build)} (--quantize {recipe.quantize}; "
                 "float32 baseline beside it)")
        artifacts = _left_out(emit(pruned.graph if pruned else graph, chosen_formats.build, threads=threads),
                              chosen_formats.left_out)
        progress("Checking the target's limits")
        memory_mb = compat.check_target(target, artifacts.format, artifacts.model, recipe.force, notes)
        progress("Measuring through the bundle runtime")
        measured = measure_all(graph, artifacts, data, recipe, target)  # against the source: drops include pruning
        pruning = prune_stage.finish(pruned, graph, artifacts, data, recipe, target,
                                     partial(emit, model_formats=(artifacts.format,), threads=threads,
                                             mode=artifacts.quantize, variant=_variant(artifacts)), progress)
        manifest = report.manifest(recipe, target, source_format, graph, artifacts, data, measured,
                                   memory_mb, notes, pruning)
        progress("Writing the bundle")
        bundle.write(output, report.contents(artifacts, manifest, measured, target), force=recipe.force)
    return BuildResult(output, manifest, tuple(manifest["warnings"]))


def _data_shapes(recipe: Recipe, source_format: str) -> dict:
    """The data's sample shapes, which close an ONNX source's dynamic axes the recipe leaves open."""
    if framework(source_format) != "onnx":
        return {}
    return shapes.data_shapes({"calibration data": recipe.calib, "evaluation data": recipe.eval})


def _target_problem(recipe: Recipe, target: Target, model_format: str) -> Callable[[bytes], str | None]:
    """What keeps the target's interpreter from running a candidate; --force waives it."""
    return (lambda model: None) if recipe.force else compat.run_problem(target, model_format)


def resolve_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


def _emit(graph: Any, model_formats: tuple[str, ...], source: str, recipe: Recipe, target: Target,
          data: Datasets, work: Path, threads: int, mode: Quantize | None = None,
          variant: str | None = None) -> Artifacts:
    """The artifact and its float32 baseline. The unpruned reference of a pruned build passes the shipped
    `variant` (built the same way when the search can; else its `mode`, converted plainly)."""
    if (mode is None or variant is not None) and _searched(source, model_formats, recipe):
        scratch = work / "unpruned_reference" if variant else work
        scratch.mkdir(exist_ok=True)
        artifacts = variants.select(graph, format_plans(source, model_formats, recipe, target), recipe, data,
                                    threads, scratch, only=variant).artifacts
        if variant is None or artifacts.choice["variant"] == variant:
            if (source, artifacts.format) == ("keras", "tflite"):
                return artifacts
            # The chosen candidate's converter facts (converter, activation type, ...) where fixed modes put them.
            return replace(artifacts, details=dict(artifacts.choice["details"]))
    (model_format,) = model_formats
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


def _variant(artifacts: Artifacts) -> str | None:
    """The shipped candidate's variant name without its format prefix (None outside the candidate search)."""
    return artifacts.choice["variant"].split(":")[-1] if artifacts.choice else None


def _left_out(artifacts: Artifacts, left_out: dict[str, str]) -> Artifacts:
    """Record in the candidate block which formats were not compared because the target cannot run them."""
    if not left_out or artifacts.choice is None:
        return artifacts
    formats_block = dict(artifacts.choice.get("formats", {}), left_out=left_out)
    return replace(artifacts, choice=dict(artifacts.choice, formats=formats_block))


def _searched(source: str, model_formats: tuple[str, ...], recipe: Recipe) -> bool:
    """Whether the candidate search builds this artifact (else one fixed mode through EMITTERS).

    Formats compared: always. Keras -> TFLite: always (a forced mode has its own variants). ONNX: with
    --quantize auto or int8 (the full-integer variants). ONNX -> TFLite alone: never (onnx2tf builds the
    one mode asked for).
    """
    if len(model_formats) > 1 or (source, model_formats[0]) == ("keras", "tflite"):
        return True
    return model_formats[0] == "onnx" and recipe.quantize in (Quantize.auto, Quantize.int8)


def format_plans(source: str, model_formats: tuple[str, ...], recipe: Recipe,
                 target: Target) -> list[variants.FormatPlan]:
    """What the candidate search needs per format: its emitter, and what keeps the target from running it."""
    return [variants.FormatPlan(f, _variant_emitter(source, f, recipe, target), _target_problem(recipe, target, f))
            for f in model_formats]


def _variant_emitter(source: str, model_format: str, recipe: Recipe, target: Target) -> variants.Emitter:
    emitter = VARIANT_EMITTERS[source, model_format]
    if model_format == "onnx":
        return partial(emitter, activation_type=target.onnx_activation_type, batch=recipe.batch)
    return emitter


__all__ = ["BuildResult", "Dataset", "build", "resolve_target"]
