"""build(recipe): source file -> working graph -> pruned graph -> candidates -> measurements -> bundle.

The stages in order, each one call into its own module; every build is the candidate search
(search/select.py), --quantize and --format only choose its candidate set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edgekiln import targets as target_data
from edgekiln.compiler import (
    Progress,
    bundle,
    manifest,
    output_lock,
    pruning_gain,
    pruning_stage,
    scratch,
    text_bundle,
    vocab_stage,
)
from edgekiln.compiler.build_state import BuildState, Loaded, Searched
from edgekiln.compiler.data import Datasets, check_labels, load_datasets
from edgekiln.compiler.device import compat
from edgekiln.compiler.distill import onnx_sources
from edgekiln.compiler.distill import stage as distill_stage
from edgekiln.compiler.errors import RecipeError, TargetError
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.evaluate.timing import threads_for
from edgekiln.compiler.graph import detect_format, framework, load, shapes
from edgekiln.compiler.manifest_schema import Manifest
from edgekiln.compiler.measure import check_cosine_floor, measure_all
from edgekiln.compiler.profile import stage as profile_stage
from edgekiln.compiler.recipe import Recipe, check_paths
from edgekiln.compiler.search import emulated, formats
from edgekiln.compiler.search.on_device import DeviceTimer
from edgekiln.compiler.search.select import FormatPlan, Selection, select
from edgekiln.targets import Target, TargetFileError


@dataclass(frozen=True)
class BuildResult:
    """Where the bundle went, its manifest, and what the user must be told.

    Attributes:
        output: the bundle directory.
        manifest: the bundle's manifest.json as written (field by field: docs/manifest.md).
        warnings: what the user must be told (e.g. the accuracy budget exceeded), one line each.
    """

    output: Path
    manifest: Manifest
    warnings: tuple[str, ...]


def build(recipe: Recipe, progress: Progress = lambda stage: None, racer: DeviceTimer | None = None) -> BuildResult:
    """Compile recipe.source into a bundle at recipe.output; every stage is one call.
    racer (build --device): times the eligible candidates on the device, whose table the choice reads."""
    check_paths(recipe)                                    # the files named exist, before any work
    target = resolve_target(recipe.target)
    chosen_formats = formats.resolve(recipe, target)       # one, or every format the target runs (measured)
    if recipe.emulate_witness:
        emulated.check(target)                             # an emulable core, qemu-user and cc, before the work
    output = Path(recipe.output)
    bundle.check_writable(output, recipe.force)            # fail before minutes of work, not after
    notes: list[str] = []                    # target checks --force overrode; the vocabulary cut's cost
    for model_format in chosen_formats.build:
        compat.enforce(partial(compat.check_wheels, target, model_format), recipe.force, notes)
    if not (recipe.calib or recipe.eval):
        raise RecipeError("a build needs real input data for measurement and golden vectors",
                          "pass --calib DATA and/or --eval DATA")
    # One build per output at a time; the scratch folder goes away on exit, or with the next run after a SIGKILL
    with output_lock.hold(output), scratch.work_dir() as work:
        if recipe.tokenizer:  # the bundle takes text: the device tokenizes
            compat.enforce(partial(_check_pin, target, text_bundle.TOKENIZERS_PIN), recipe.force, notes)
        progress("Loading the source model")
        source_format = detect_format(recipe.source)
        onnx_sources.refuse_build_options(source_format, recipe.distill, recipe.qat)  # both train in Keras 3
        graph = load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe, batch=recipe.batch,
                     input_shapes=recipe.input_shape, data_shapes=_data_shapes(recipe, source_format))
        if recipe.main_output is not None and recipe.main_output not in graph.output_names:
            raise RecipeError(f"main_output '{recipe.main_output}' is not an output of {Path(recipe.source).name}",
                              f"its outputs: {', '.join(graph.output_names)}")
        progress("Reading calibration / evaluation data")
        data = load_datasets(recipe, graph.inputs)
        check_labels(graph, data)                          # labels index the model's classes
        check_cosine_floor(graph, data, recipe)            # a cosine floor needs vector outputs
        loaded = Loaded(graph, source_format, data, Reference(graph))  # the source's outputs: once per dataset
        cut = vocab_stage.prune(graph, recipe, data, Path(work), progress)  # None without --vocab-from
        if cut is not None:  # the cut model and its re-read data from here on, judged against the source
            notes.extend(filter(None, [vocab_stage.warning(cut.block, recipe)]))
            loaded = Loaded(graph, source_format, cut.data, cut.reference)
            graph, data = cut.graph, cut.data
        search = Search(framework(source_format), recipe, target, data, Path(work), loaded.reference, racer,
                        progress)
        # --distill: a student replaces the source from here on (it is measured against the source all the same)
        working, distilled = distill_stage.distill(graph, recipe, data, Path(work), progress)
        pruned = pruning_stage.prune(working, recipe, data, Path(work), progress)  # None without --prune
        progress(f"Converting to {' and '.join(chosen_formats.build)} (--quantize {recipe.quantize}; "
                 "float32 baseline beside it)")
        searched = search.run(working, pruned, chosen_formats, progress)
        selection = searched.selection
        progress("Checking the target's limits")
        memory = compat.check_target(target, selection.format, selection.model, recipe.force, notes)
        progress("Measuring through the bundle runtime")
        tokenizer = str(cut.tokenizer) if cut else recipe.tokenizer
        measured = measure_all(loaded.reference, selection, data, recipe, target,  # drops include pruning
                               text_bundle.pooler(recipe, tokenizer, graph.inputs))
        progress("Profiling the shipped model op by op")
        shipped_profile = profile_stage.measure_shipped(selection, data.golden_set, threads_for(recipe, target), target)
        pruning = pruning_gain.measured(pruned, selection, searched.unpruned, data, recipe, target,
                                        None if isinstance(shipped_profile, Exception) else shipped_profile)
        pruning = pruning_gain.with_budget_split(pruning, measured.accuracy, recipe.max_drop)
        profile = profile_stage.shipped(shipped_profile)
        shipped = text_bundle.Shipped(selection.format, selection.model, threads_for(recipe, target),
                                      min(recipe.bench_runs, 50))
        text = text_bundle.section(recipe, tokenizer, graph.inputs, recipe.golden_samples, shipped) \
            if tokenizer else None
        built = manifest.build(BuildState(recipe, target, loaded, searched, tuple(notes), memory, measured,
                                          pruning, profile, vocabulary=cut.block if cut else None, text=text,
                                          distillation=distilled))
        progress("Writing the bundle")
        files = {text_bundle.TOKENIZER_FILE: Path(tokenizer).read_bytes()} if text and tokenizer else {}
        bundle.write(output, bundle.contents(selection, built, measured, target, files), force=recipe.force)
    return BuildResult(output, built, tuple(built["warnings"]))


@dataclass(frozen=True)
class Search:
    """The candidate search of one build, bound to what does not change between its calls (the pruned
    model's search, and the unpruned reference built the way the shipped variant was)."""

    source: str
    recipe: Recipe
    target: Target
    data: Datasets
    work: Path
    reference: Reference  # the source model's outputs; a pruned graph gets its own
    racer: DeviceTimer | None = None
    progress: Progress = lambda line: None  # a long candidate's steps (int8+adaround)

    def __call__(self, graph: Any, model_formats: tuple[str, ...], scratch: Path, only: str | None = None,
                 cross_fit: bool = True) -> Selection:
        plans = [FormatPlan(f, self._target_problem(f)) for f in model_formats]
        reference = self.reference if graph is self.reference.subject else Reference(graph)
        return select(graph, self.source, plans, self.recipe, self.data, threads_for(self.recipe, self.target),
                      scratch, self.target.onnx_activation_type, only or self.recipe.variant, self.target,
                      self.racer, reference, self.progress, cross_fit)

    def run(self, source: Any, pruned: pruning_stage.Pruned | None, chosen: formats.Formats,
            progress: Progress) -> Searched:
        """The candidate search on the working graph (pruned, or the source), and for a pruned build the unpruned
        source compiled as the shipped variant: what the measured gain of pruning compares with."""
        selection = self(pruned.graph if pruned else source, chosen.build, self.work)
        if chosen.left_out:
            selection = selection.with_block(formats={**selection.block.get("formats", {}),
                                                      "left_out": chosen.left_out})
        if pruned is None or not pruned.removed:
            return Searched(selection, None)
        progress(f"Compiling the unpruned model the same way ({selection.variant}), to measure the speed-up")
        return Searched(selection, self.unpruned_reference(source, selection))

    def unpruned_reference(self, graph: Any, shipped: Selection) -> Selection:
        """The unpruned source compiled as the shipped variant (same format, same refinements); only timed and
        sized beside the shipped model, so its int8 rows are not cross-fitted (nothing reads their fidelity)."""
        scratch = self.work / "unpruned_reference"
        scratch.mkdir(exist_ok=True)
        return self(graph, (shipped.format,), scratch, only=shipped.variant, cross_fit=False)

    def _target_problem(self, model_format: str) -> Callable[[bytes], str | None]:
        """What keeps the target's interpreter from running a candidate; --force waives it."""
        return (lambda model: None) if self.recipe.force else compat.run_problem(self.target, model_format)


def _data_shapes(recipe: Recipe, source_format: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The data's sample shapes by role and input name, which close an ONNX source's dynamic axes the recipe
    leaves open (none for a Keras source)."""
    if framework(source_format) != "onnx":
        return {}
    found = shapes.data_shapes({"calibration data": recipe.calib, "evaluation data": recipe.eval})
    if found or recipe.seq_len is None:
        return found
    return shapes.sequence_shapes(Path(recipe.source), recipe.seq_len)  # text data: --seq-len tokens


def _check_pin(target: Target, pin: str) -> None:
    problem = compat.pin_problem(target, pin)
    if problem:
        raise TargetError(f"the bundle takes text, so the device tokenizes: {problem}",
                          "build for a target with a wheel for it, or from token arrays (.npz) instead of --text")


def resolve_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


__all__ = ["BuildResult", "Progress", "build", "resolve_target"]
