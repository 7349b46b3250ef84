"""`edgekiln explain`: why plain int8 hurts a model on a target, measured, and what the rewrites would change.

It builds only what the diagnosis needs: the float32 model and the converter's plain int8 model (min/max
calibration), measures both side by side through the runtime, and diagnoses the int8 model. Keras and
SavedModel sources: TFLite's per-layer debugger, how XNNPACK partitions the int8 graph, and the rewrites
that apply. ONNX sources: onnxruntime's QDQ int8 in the target's activation type, its nodes ranked by the
error they add (compiler/onnx_diagnose.py). No bundle is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from . import rewrite
from .candidates import CANDIDATES, Built, Judge, interleaved_latency
from .choose import Criterion
from .emit import tflite, tflite_variants
from .errors import RecipeError
from .graph import detect_format
from .graph import keras as keras_graph
from .measure import open_model
from .recipe import Quantize, Recipe, check_paths
from .stages import check_labels, host_threads, load_datasets

ROUNDS = 5


def explain(recipe: Recipe, progress: Any = lambda stage: None) -> dict:
    """The diagnosis of plain int8 for recipe.source, with fidelity and host latency beside float32."""
    from .pipeline import resolve_target

    if not recipe.calib:
        raise RecipeError("explain needs calibration data to quantize with", "pass --calib DATA")
    check_paths(recipe)
    target = resolve_target(recipe.target)
    threads = recipe.threads or host_threads(target)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        if detect_format(recipe.source) == "onnx":
            return _explain_onnx(recipe, target, threads, Path(work), progress)
        graph = keras_graph.load(recipe.source, detect_format(recipe.source), Path(work), unsafe=recipe.unsafe)
        data = load_datasets(recipe.replace(quantize=Quantize.int8), graph.inputs)
        check_labels(graph, data)
        progress("Quantizing (plain int8) and running the per-layer debugger")
        feeds, judge = tflite_variants.sample_feeds(data.calib), Judge(graph, data, threads)
        labelled = data.evaluation is not None and data.evaluation.labels is not None
        criterion = Criterion(max_drop=recipe.max_drop if labelled else None)
        _, int8_model, diagnosis = tflite_variants.plain_int8(graph, data.calib, feeds, recipe.int8_io, judge,
                                                              criterion)
        float_model = tflite.convert(graph.saved_model_dir, Quantize.none, None)
        progress("Measuring float32 and int8 side by side")
        plain = {c.name: c for c in CANDIDATES["tflite"]}
        models = {"float32": Built(plain["float32"], float_model), "int8": Built(plain["int8"], int8_model)}
        measured = _side_by_side("tflite", models, judge, data, threads, recipe.bench_runs)
        rewrites = None
        if graph.keras_model is not None:
            progress("Trying the rewrites")
            inputs = rewrite.model_inputs(graph.keras_model, data.calib.inputs)
            rewrites = rewrite.apply(graph.keras_model, inputs).to_dict()
    return {"source": recipe.source, "target": target.name, "threads": threads, "measured": measured,
            "diagnosis": diagnosis, "rewrites": rewrites}


def _explain_onnx(recipe: Recipe, target: Any, threads: int, work: Path, progress: Any) -> dict:
    """The same for an ONNX source: plain QDQ int8 (min/max, the target's activation type) beside float32.

    On an ARM target this x86 host times the int8 model as its u8s8 twin (onnx_variants.TWIN_NOTE).
    """
    from .candidates import plan
    from .emit import onnx_variants
    from .graph import onnx as onnx_graph
    from .shapes import data_shapes

    graph = onnx_graph.load(Path(recipe.source), work, batch=recipe.batch, input_shapes=recipe.input_shape,
                            data_shapes=data_shapes({"calibration data": recipe.calib, "evaluation data": recipe.eval}))
    data = load_datasets(recipe.replace(quantize=Quantize.int8), graph.inputs)
    check_labels(graph, data)
    progress("Quantizing (plain int8) and comparing every node with its float output")
    judge = Judge(graph, data, threads)
    labelled = data.evaluation is not None and data.evaluation.labels is not None
    criterion = Criterion(max_drop=recipe.max_drop if labelled else None)
    wanted = [c for c in plan(Quantize.int8, ["onnx"]) if c.name in ("float32", "int8")]
    built, diagnosis = onnx_variants.build(graph, wanted, data.calib, judge, criterion, work, recipe.int8_io,
                                           "minmax", source="onnx", activation_type=target.onnx_activation_type,
                                           batch=recipe.batch)
    progress("Measuring float32 and int8 side by side")
    measured = _side_by_side("onnx", {b.candidate.name: b for b in built}, judge, data, threads, recipe.bench_runs)
    return {"source": recipe.source, "target": target.name, "threads": threads, "measured": measured,
            "diagnosis": diagnosis, "rewrites": None}


def _side_by_side(model_format: str, models: dict[str, Built], judge: Judge, data: Any, threads: int,
                  bench_runs: int) -> dict[str, dict]:
    """Fidelity, size and host latency (timed in turn; a model's timing stand-in where it has one) per model."""
    opened = {name: open_model(model_format, b.timed_as or b.model, threads) for name, b in models.items()}
    latency = interleaved_latency(opened, data.golden_set, max(1, bench_runs // ROUNDS), ROUNDS)
    return {name: {**vars(judge(model_format, b.model)), "bytes": len(b.model), **latency[name],
                   "notes": list(b.notes)} for name, b in models.items()}
