"""`edgekiln explain`: why plain int8 hurts a model on a target, measured, and what the rewrites would change.

It builds only what the diagnosis needs, through the same builders a build uses: the float32 model and
the converter's plain int8 model (min/max calibration), measured side by side through the runtime, and
the diagnosis of the int8 model. Keras and SavedModel sources: TFLite's per-layer debugger, how XNNPACK
partitions the int8 graph, and the rewrites that apply. ONNX sources: onnxruntime's QDQ int8 in the
target's activation type, its nodes ranked by the error they add (diagnose/onnx_diagnosis.py); on an ARM target
this x86 host times the int8 model as its u8s8 twin (search/onnx_builder.py TWIN_NOTE). No bundle is written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from edgekiln.compiler import Progress, rewrite
from edgekiln.compiler.commands import explain_ladder
from edgekiln.compiler.commands.explain_ladder import Rung
from edgekiln.compiler.console import console
from edgekiln.compiler.data import Datasets, check_labels, load_datasets
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.criterion import criterion_for
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.output_kinds import KindRule
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.evaluate.runner import open_model
from edgekiln.compiler.evaluate.timing import RoundTiming, interleaved_latency, threads_for
from edgekiln.compiler.graph import detect_format, framework, load
from edgekiln.compiler.graph.keras_graph import KerasGraph
from edgekiln.compiler.graph.shapes import data_shapes
from edgekiln.compiler.manifest_schema import Diagnosis, RewriteFacts
from edgekiln.compiler.recipe import Quantize, Recipe, check_paths
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.select import BUILDERS
from edgekiln.compiler.search.variants import plan
from edgekiln.compiler.summary import figures_text

ROUNDS = 5


@dataclass(frozen=True)
class MeasuredModel:
    """One model of the explanation (float32 or plain int8): its fidelity, its size, its host p50 (its timing
    stand-in's where it has one) and the builder's notes."""

    quality: Quality
    bytes: int
    latency: RoundTiming
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    """What `explain` found: float32 and plain int8 measured side by side on this host (`measured`, by variant
    name), the diagnosis of the int8 model (diagnose/), and the Keras rewrites that apply (None: not a Keras
    source)."""

    source: str
    target: str
    threads: int
    measured: dict[str, MeasuredModel]
    diagnosis: Diagnosis
    rewrites: RewriteFacts | None
    ladder: tuple[Rung, ...] = ()  # with --ladder: each rung built alone and measured (commands/explain_ladder.py)


def explain(recipe: Recipe, progress: Progress = lambda stage: None, ladder: bool = False) -> Explanation:
    """The diagnosis of plain int8 for recipe.source, with fidelity and host latency beside float32; with `ladder`,
    each rung between int8 and float built alone and measured against plain int8 (commands/explain_ladder.py)."""
    from edgekiln.compiler.pipeline import resolve_target

    if not recipe.calib:
        raise RecipeError("explain needs calibration data to quantize with", "pass --calib DATA")
    check_paths(recipe)
    target = resolve_target(recipe.target)
    threads = threads_for(recipe, target)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        source_format = detect_format(recipe.source)
        source = framework(source_format)
        graph = load(recipe.source, source_format, Path(work), unsafe=recipe.unsafe, batch=recipe.batch,
                     input_shapes=recipe.input_shape,
                     data_shapes=data_shapes({"calibration data": recipe.calib, "evaluation data": recipe.eval}))
        data = load_datasets(recipe.replace(quantize=Quantize.int8), graph.inputs)
        check_labels(graph, data)
        model_format = "onnx" if source == "onnx" else "tflite"
        progress("Quantizing (plain int8) and diagnosing it layer by layer" if model_format == "tflite" else
                 "Quantizing (plain int8) and comparing every node with its float output")
        # One int8 model, judged on held-back samples (the last fold) when there are enough to hold any back.
        judge = Judge(Reference(graph), data.holdout or data.fidelity_set, data.evaluation, threads,
                      kinds=KindRule.of_build(recipe, graph))  # each output judged by its kind, as a build judges
        labelled = data.evaluation is not None and data.evaluation.labels is not None
        ctx = BuildContext(graph, source, plan(Quantize.int8, model_format, source, True, target.onnx_activation_type,
                                               only="int8"),
                           data.without_holdout, judge, criterion_for(recipe, labelled), Path(work),
                           recipe.int8_io, "minmax", target.onnx_activation_type, recipe.batch)
        made = BUILDERS[source, model_format](ctx)
        progress("Measuring float32 and int8 side by side")
        models = {b.variant.name: b for b in made.built if b.model is not None}
        measured = _side_by_side(model_format, models, judge, data, threads, recipe.bench_runs)
        rewrites = None
        if isinstance(graph, KerasGraph) and data.calib is not None:
            progress("Trying the rewrites")
            inputs = rewrite.model_inputs(graph.keras_model, data.calib.inputs)
            rewrites = rewrite.apply(graph.keras_model, inputs).to_dict()
        rungs = explain_ladder.measure(ctx, target, models.get("int8"), progress) if ladder else ()
    assert made.diagnosis is not None, "plain int8 is built and diagnosed whenever calibration data is given"
    return Explanation(recipe.source, target.name, threads, measured, made.diagnosis, rewrites, rungs)


def _side_by_side(model_format: str, models: dict[str, Candidate], judge: Judge, data: Datasets, threads: int,
                  bench_runs: int) -> dict[str, MeasuredModel]:
    """Fidelity, size and host latency (timed in turn; a model's timing stand-in where it has one) per model."""
    opened = {name: open_model(model_format, b.timed_as or b.model or b"", threads, b.layouts)
              for name, b in models.items()}
    latency = interleaved_latency(opened, data.golden_set, max(1, bench_runs // ROUNDS), ROUNDS)
    return {name: MeasuredModel(judge(model_format, b.model or b"", b.layouts), len(b.model or b""), latency[name],
                                b.notes) for name, b in models.items()}


def print_explanation(result: Explanation) -> None:
    """`edgekiln explain`: the likely causes first, then the ranked layers, coverage and rewrites."""
    d, measured = result.diagnosis, result.measured
    console.print(f"[bold]{result.source}[/bold] on {result.target}: plain int8 ({d['of']})")
    base, q = measured["float32"], measured["int8"]
    ms, base_ms = q.latency["p50_ms"], base.latency["p50_ms"]
    console.print(f"int8 vs float32 on this host ({result.threads} thread(s)): p50 {ms:.3f} ms vs "
                  f"{base_ms:.3f} ms ({ms / base_ms:.2f}x), size {q.bytes:,} B vs {base.bytes:,} B; fidelity "
                  f"{figures_text(q.quality.sqnr_db, q.quality.agreement)}")
    console.print("[bold]likely causes, worst first:[/bold]")
    for k, cause in enumerate(d["causes"], 1):
        console.print(f"  {k}. {cause}")
    if "nodes" in d:  # ONNX: nodes ranked by the error they add; no XNNPACK, no Keras rewrites
        _print_nodes(d, q)
        _print_ladder(result)
        return
    table = Table(title=f"per-layer int8 error ({d['samples']} samples; each op against its float op, same input)")
    for column in ("layer", "op", "share", "channel noise/signal", "SQNR", "RMSE / step"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for e in d["layers"]:
        table.add_row(e["layer"], e["op"], f"{e['share']:.0%}", f"{e['channel_nsr']:.4f}",
                      "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f} dB", f"{e['rmse_over_scale']:.2f}")
    console.print(table)
    c = d["coverage"]
    outside = ", ".join(f"{op} x{n}" for op, n in c["outside_fast_path"].items()) or "none"
    console.print(f"fast path ({c['library']}): {c['fast_path_nodes']}/{c['nodes']} nodes in "
                  f"{c['fast_path_pieces']} piece(s); outside it: {outside}")
    _print_rewrites(result.rewrites)
    _print_ladder(result)
    console.print("`edgekiln build` (--quantize auto) builds and measures the variants that address these.")


def _print_ladder(result: Explanation) -> None:
    """explain --ladder: each rung measured against plain int8 (nothing printed without --ladder)."""
    if not result.ladder:
        return
    console.print("[bold]the rungs between int8 and float, each built alone (fidelity on the held-back samples):"
                  "[/bold]")
    for line in explain_ladder.lines(result.ladder, result.target):
        console.print(f"  {line}")


def _print_rewrites(rewrites: RewriteFacts | None) -> None:
    """Which exact rewrites apply to which layers, and which were found but left, with the reason (None: not
    a Keras source, none tried)."""
    if rewrites is None:
        console.print("rewrites that apply: none")
        return
    applied = rewrites["applied"]
    console.print("rewrites that apply: " + ("; ".join(applied) if applied else "none"))
    if rewrites.get("dropped"):
        console.print(f"  {rewrites['dropped']}")
    for why in rewrites["not_applied"]:
        console.print(f"  not applied: {why}")


def _print_nodes(d: Diagnosis, int8: MeasuredModel) -> None:
    table = Table(title=f"per-node int8 error ({d['samples']} samples; {d['method']})")
    for column in ("node", "op", "share", "SQNR at its output"):
        table.add_column(column, justify="left" if column in ("node", "op") else "right")
    for e in d["nodes"]:
        table.add_row(e["name"], e["op"], f"{e['share']:.0%}",
                      "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f} dB")
    console.print(table)
    for note in int8.notes:
        console.print(f"[dim]int8: {note}[/dim]")
    console.print("`edgekiln build` (--quantize auto) builds and measures the variants that address these "
                  "(calibration methods, nodes kept in float, and the TFLite variants where the target runs both).")
