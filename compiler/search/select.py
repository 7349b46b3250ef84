"""The quantization stage of a build: build the candidates, judge and time them side by side, choose one.

Every build is this search; --quantize and --format only choose the candidate set (variants.plan):
`--quantize none` is [float32], a forced mode builds its own variants (the float32 baseline is always
built: it is what "slower" is measured against), `--quantize auto` every variant. With --format auto
(search/formats.py) the candidates of every format the target runs share one table.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

import numpy as np

from edgekiln.compiler import Progress, analyze
from edgekiln.compiler.analyze.graph_stats import GraphStats
from edgekiln.compiler.data import NOT_HELD_BACK, Datasets, in_model_types, load_data
from edgekiln.compiler.device import estimate
from edgekiln.compiler.emulate.cycles import Standing
from edgekiln.compiler.errors import EdgekilnError, TargetError
from edgekiln.compiler.evaluate.criterion import criterion_for
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.output_kinds import KindRule
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.evaluate.runner import open_model
from edgekiln.compiler.evaluate.timing import ROUNDS, RoundTiming, interleaved_latency
from edgekiln.compiler.manifest_schema import Diagnosis, Layout, Quantization
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.search import crossfit, on_device, onnx2tf_builder, onnx_builder, tflite_builder
from edgekiln.compiler.search.candidate import Candidate, Timings, Verdict
from edgekiln.compiler.search.choose import Choice, Evidence, decide, evidence_for
from edgekiln.compiler.search.context import BuildContext, Builder
from edgekiln.compiler.search.emulated import witnessed
from edgekiln.compiler.search.quantization_block import data_note, quantization_block
from edgekiln.compiler.search.variants import BASELINE, VARIANTS, Plan, plan
from edgekiln.targets import Target

if TYPE_CHECKING:
    from edgekiln.compiler.graph.keras_graph import KerasGraph
    from edgekiln.compiler.graph.onnx_graph import OnnxGraph

# (framework of the working graph, artifact format) -> the builder of that format's candidates.
# Keras -> TFLite goes through TensorFlow's converter, ONNX -> TFLite through onnx2tf, * -> ONNX
# through tf2onnx (Keras) or as loaded (ONNX), then onnxruntime's quantizer.
BUILDERS: dict[tuple[str, str], Builder] = {
    ("keras", "tflite"): tflite_builder.build, ("onnx", "tflite"): onnx2tf_builder.build,
    ("keras", "onnx"): onnx_builder.build, ("onnx", "onnx"): onnx_builder.build,
}
FORMAT_NOTE = ("formats compared on this host: which interpreter is faster here need not be the faster one on "
               "the target's CPU; `edgekiln deploy` measures the shipped model there")
IDENTICAL = "identical to int8"  # how a builder says a refinement changed nothing (search/tflite_builder.py, onnx.py)
ONLY_ONE = "the only eligible candidate: not raced (its latency is measured with the baseline's, latency.host)"


@dataclass(frozen=True)
class FormatPlan:
    """One artifact format of a search and why the target's interpreter cannot run a model of it
    (None: it can; --force waives it)."""

    format: str
    target_problem: Callable[[bytes], str | None] = lambda model: None


@dataclass(frozen=True)
class Selection:
    """The search's outcome: the chosen candidate and its format's float32 baseline (each with its static
    stats), the table they were chosen from (every measured candidate with its verdict), and the manifest's
    quantization block (`block`, written from the table by search/quantization_block.py)."""

    shipped: Candidate
    reference: Candidate
    block: Quantization
    table: tuple[Candidate, ...] = ()
    choice: Choice | None = None
    judged_outputs: list[np.ndarray] | None = None  # the shipped model's, cross-fitted (search/crossfit.py)

    @property
    def model_stats(self) -> GraphStats:
        assert self.shipped.stats is not None
        return self.shipped.stats

    @property
    def baseline_stats(self) -> GraphStats:
        assert self.reference.stats is not None
        return self.reference.stats

    @property
    def format(self) -> str:
        return self.shipped.format

    @property
    def model(self) -> bytes:
        assert self.shipped.model is not None
        return self.shipped.model

    @property
    def baseline(self) -> bytes:
        assert self.reference.model is not None
        return self.reference.model

    @property
    def layouts(self) -> dict[str, Layout]:
        return self.shipped.layouts

    @property
    def quantize(self) -> Quantize:
        return self.shipped.variant.quantize

    @property
    def variant(self) -> str:
        """The shipped candidate's variant name, without a format prefix (e.g. "int8+rewrites")."""
        return self.shipped.variant.name

    def with_block(self, **changes: Unpack[Quantization]) -> Selection:
        return replace(self, block={**self.block, **changes})


def select(graph: KerasGraph | OnnxGraph, source: str, formats: list[FormatPlan], recipe: Recipe, data: Datasets,
           threads: int, workdir: Path, activation_type: str, only: str | None = None, target: Target | None = None,
           racer: on_device.DeviceTimer | None = None, reference: Reference | None = None,
           progress: Progress = lambda line: None, cross_fit: bool = True) -> Selection:
    """Build every format's candidates, judge and time them in one table, and choose.

    With more than one format, rows are named "format:variant" and a format whose conversion fails is
    left out (and said so) instead of stopping the build. Candidates the target cannot run are left out
    and listed in the manifest; the float32 baselines stay (they are the yardstick).
    only: build just this variant (and what it is built from) and ship it when it was built, e.g. the
    unpruned reference of a pruned build made the way the shipped variant was.
    target: whose latency the choice is for: each candidate gets the target's estimate, and the rule reads
    it when the build host's arch differs from the target's (choose.evidence_for).
    racer: build --device: the eligible candidates are timed on the device and its table decides.
    reference: `graph`'s outputs, computed once per build (made here when not given).
    progress: where a long candidate reports its steps.
    cross_fit: False for a build that is only timed and sized, whose rows no manifest records and whose choice
    `only` makes (the unpruned reference of a pruned build): its int8 candidates are not built again per fold.
    """
    labelled = data.evaluation is not None and data.evaluation.labels is not None
    criterion = criterion_for(recipe, labelled, data.judged_by)
    reference = reference or Reference(graph)
    kinds = KindRule.of_build(recipe, graph)
    kinds.check(list(reference.graph.output_names))
    judge = Judge.for_build(reference, data, threads, recipe.main_output, kinds)
    # The search's own decisions (calibration method, what stays float) are made on the calibration samples,
    # by fidelity alone (the cosine floor when one is given), never on the labels. With cross-fitting, each
    # fold makes them again on its own samples, so the samples that judge a candidate shaped none of it.
    tuner, tuning = Judge.for_tuning(reference, data, threads, kinds), criterion_for(recipe, False, NOT_HELD_BACK)
    train = _training(recipe, graph) if recipe.qat else None
    contexts = {f.format: BuildContext(graph, source, plan(recipe.quantize, f.format, source, data.calib is not None,
                                                            activation_type, only, recipe.qat),
                                       data.calib, tuner, tuning, workdir / f"candidates_{f.format}",
                                       recipe.int8_io, str(recipe.calibration), activation_type, recipe.batch, train,
                                       progress)
                for f in formats}
    built, diagnoses, failed = _build_all(contexts)
    made = {key for key, b in built.items() if b.model is not None}
    crossfitted, not_crossfitted = crossfit.run(contexts, BUILDERS, data, threads, len(formats) > 1, made) \
        if data.folds is not None and cross_fit else ({}, {})
    ready = {key: b for key, b in built.items() if b.model is not None}
    baselines = {key for key, b in ready.items() if b.variant.name == BASELINE}
    problems = {f.format: f.target_problem for f in formats}
    unrunnable = {key: why for key, b in ready.items() if (why := problems[b.variant.format](b.model or b""))}
    refused = {key: why for key, why in unrunnable.items() if key not in baselines}
    ready = {key: b for key, b in ready.items() if key not in refused}
    eligible_names = _eligible(ready, baselines, unrunnable, recipe.quantize, only, _identical_to_int8(built, only))
    runs = max(1, recipe.bench_runs // ROUNDS)
    rows = _rows(ready, judge, data, runs, threads, len(eligible_names) > 1, crossfitted, not_crossfitted)
    rows = [_with_estimate(target, _with_stats(r)) for r in rows] if target else rows
    emulated = None  # --emulate-witness: each row's executed instructions on the target's emulated core
    if recipe.emulate_witness and target is not None:
        rows, emulated = witnessed(rows, target, threads, progress)
    timed = [r for r in rows if r.timings.host_p50_ms is not None]
    device_method, device_evidence = None, Evidence()
    if racer is not None and target is not None and len(eligible_names) > 1:
        rows, device_evidence, device_method = on_device.raced(racer, target, rows, set(eligible_names),
                                                               baselines - set(unrunnable), criterion, runs, threads)
    competing = [r for r in rows if r.name in eligible_names]
    evidence = replace(device_evidence, emulated=emulated) if device_method is not None else \
        _evidence(competing, target, emulated)
    yardstick = min((r for r in rows if r.name in baselines), key=lambda r: _ms(evidence, r))  # the fastest float32
    choice = decide(competing, criterion, yardstick if timed else None, evidence)
    table = _table(rows, choice, unrunnable)
    chosen = _with_stats(next(c for c in table if c.name == choice.chosen.name))
    baseline = _with_stats(next(c for c in table if c.name == _key(chosen.format, BASELINE, len(formats) > 1)))
    block = quantization_block(recipe, criterion, choice, table, built, diagnoses, chosen, runs, threads)
    block["data"] = data_note(data, judge, len(rows), tuning, sum(r.name in crossfitted for r in rows))
    block["output_kinds"] = kinds.explain(reference.outputs(judge.check))
    block["yardstick"] = yardstick.name  # the float32 row "slower" and the table's Nx are relative to
    block["evidence"] = {**choice.evidence.to_dict(), "host_would_choose": choice.host_choice}
    if device_method is not None:
        block["timing"]["device"] = device_method
    if refused:
        block["refused_by_target"] = refused
    if len(formats) > 1:
        block["formats"] = {"compared": [f.format for f in formats], "failed": failed, "note": FORMAT_NOTE}
    shipped = crossfitted.get(chosen.name)
    return Selection(chosen, baseline, block, table, choice, shipped.outputs if shipped else None)


def _training(recipe: Recipe, graph: KerasGraph | OnnxGraph) -> Dataset:
    """--train's samples for the int8+qat candidate, read like --calib."""
    assert recipe.train is not None, "the recipe refuses --qat without --train"
    return in_model_types(load_data(recipe.train, graph.inputs, role="training", mean=recipe.mean, std=recipe.std),
                          graph.inputs)


def _table(rows: list[Candidate], choice: Choice, unrunnable: dict[str, str]) -> tuple[Candidate, ...]:
    """Every measured candidate with its verdict: the rule's for those that competed, else a baseline's (and
    why the target cannot run a float32 baseline that did not ship)."""
    judged = {c.name: c for c in choice.table}
    table = []
    for row in rows:
        row = judged.get(row.name) or replace(row, verdict=Verdict("baseline (not eligible)", "baseline"))
        if row.name in unrunnable and row.name != choice.chosen.name:
            row = replace(row, verdict=Verdict(f"not eligible: {unrunnable[row.name]}", "target can't run it"))
        table.append(row)
    return tuple(table)


def _with_stats(candidate: Candidate) -> Candidate:
    """The candidate with the static stats of its model (read once)."""
    if candidate.stats is not None:
        return candidate
    return replace(candidate, stats=analyze.stats(candidate.format, candidate.model or b""))


def _ms(evidence: Evidence, row: Candidate) -> float:
    value = evidence.latency(row)
    return value if value is not None else float("inf")  # a baseline the device did not time: not the yardstick


def _with_estimate(target: Target, candidate: Candidate) -> Candidate:
    """The candidate with the target's cost-model estimate, from its per-op records and measured coverage; where
    some op's MACs or bytes are unknown there is none, and its notes say why."""
    assert candidate.stats is not None
    ms = estimate.candidate_ms(target, candidate.format, candidate.stats.records, candidate.details.get("coverage"))
    unknown = candidate.stats.unknown if target.estimate is not None else None
    if unknown:
        candidate = replace(candidate, notes=(*candidate.notes, f"no {target.name} estimate: {unknown}"))
    return candidate.timed(estimate_ms=ms)


def _evidence(rows: list[Candidate], target: Target | None, emulated: Standing | None) -> Evidence:
    if target is None:
        return Evidence()
    return evidence_for([r.timings for r in rows], target.name, target.arch, platform.machine(),
                        target.estimate is not None, target.estimate.ratio_error if target.estimate else None,
                        emulated)


def _identical_to_int8(built: dict[str, Candidate], only: str | None) -> bool:
    """The variant asked for was not built because it would be plain int8 byte for byte."""
    return any(b.variant.name == only and b.model is None and any(n.startswith(IDENTICAL) for n in b.notes)
               for b in built.values())


def _eligible(ready: dict[str, Candidate], baselines: set[str], unrunnable: dict[str, str], quantize: Quantize,
              only: str | None, identical: bool = False) -> list[str]:
    """The rows the choice may ship: runnable on the target, and no float32 baseline for a forced mode."""
    free = quantize in (Quantize.auto, Quantize.none)
    eligible = [name for name in ready if (free or name not in baselines) and name not in unrunnable]
    refused = [why for name, why in unrunnable.items() if name not in baselines]
    if not eligible and not free and refused:
        raise TargetError(refused[0], "use --quantize auto to pick a variant the target can run, or --force to "
                                      "build it anyway")
    # Nothing runs on the target: the float32 baseline goes on, and the target check refuses it by name.
    eligible = eligible or [name for name in ready if name in baselines]
    if only is None:
        return eligible
    # The variant asked for; when it was not built because it is plain int8 byte for byte, plain int8.
    wanted = [name for name in eligible if ready[name].variant.name == only] or \
        [name for name in eligible if identical and ready[name].variant.name == "int8"]
    return wanted or eligible


def _build_all(contexts: dict[str, BuildContext]) -> tuple[dict[str, Candidate], dict[str, Diagnosis],
                                                          dict[str, str]]:
    """Every format's candidates by row name (not built ones too, with the reason), each format's
    int8 diagnosis, and the formats whose conversion failed."""
    built: dict[str, Candidate] = {}
    diagnoses: dict[str, Diagnosis] = {}
    failed: dict[str, str] = {}
    compared = len(contexts) > 1
    for model_format, ctx in contexts.items():
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        try:
            made = BUILDERS[ctx.source, model_format](ctx)
        except EdgekilnError as exc:
            if not compared or len(failed) == len(contexts) - 1:  # nothing else to ship: the error stands
                raise
            failed[model_format] = exc.one_line()
            continue
        built.update({(key := _key(model_format, b.variant.name, compared)): replace(b, key=key)
                      for b in _in_order(ctx.plan, made.built)})
        if made.diagnosis is not None:
            diagnoses[model_format] = made.diagnosis
    return built, diagnoses, failed


def _in_order(planned: Plan, made: tuple[Candidate, ...]) -> list[Candidate]:
    """The builder's candidates and the ones the plan did not build (with the reason), in catalogue order."""
    by_name = {b.variant.name: b for b in made}
    fmt = made[0].variant.format if made else planned.build[0].format
    return [by_name.get(c.name) or Candidate(c, None, (planned.not_built[c.name],))
            for c in VARIANTS[fmt] if c.name in by_name or c.name in planned.not_built]


def _key(model_format: str, name: str, compared: bool) -> str:
    """A candidate's row name: the variant, prefixed by its format when formats are compared."""
    return f"{model_format}:{name}" if compared else name


def _rows(ready: dict[str, Candidate], judge: Judge, data: Datasets, runs: int, threads: int, timed: bool,
          crossfitted: dict[str, crossfit.CrossFitted], not_crossfitted: dict[str, str]) -> list[Candidate]:
    """Every ready candidate judged (a cross-fitted one on its pooled fold outputs); timed in turn when there
    is a choice to make (else p50 None)."""
    latency: dict[str, RoundTiming] = {}
    if timed:
        models = {name: open_model(b.format, b.timed_as or b.model or b"", threads, b.layouts)
                  for name, b in ready.items()}
        latency = interleaved_latency(models, data.golden_set, runs, ROUNDS)
    rows = []
    for name, b in ready.items():
        lat, fitted = latency.get(name), crossfitted.get(name)
        how = (fitted.note,) if fitted else (f"not cross-fitted ({not_crossfitted[name]}): judged on its own "
                                             "calibration samples",) if name in not_crossfitted else ()
        rows.append(replace(b, quality=judge(b.format, b.model or b"", b.layouts, fitted.outputs if fitted else None),
                            timings=Timings(lat["p50_ms"], lat["runs"]) if lat else Timings(),
                            notes=(*b.notes, *how) if timed else (*b.notes, *how, ONLY_ONE)))
    return rows
