"""`edgekiln explain`: why plain int8 hurts a model on a target, measured, and what the rewrites would change.

It builds only what the diagnosis needs: the float32 model and the converter's plain int8 model (min/max
calibration), measures both side by side through the runtime, runs the per-layer debugger, reads how
XNNPACK partitions the int8 graph, and lists the rewrites that apply. No bundle is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from . import rewrite
from .candidates import Judge, interleaved_latency
from .choose import Criterion
from .emit import tflite, tflite_variants
from .errors import RecipeError
from .graph import detect_format
from .graph import keras as keras_graph
from .measure import open_model
from .recipe import Quantize, Recipe
from .stages import host_threads, load_datasets

ROUNDS = 5


def explain(recipe: Recipe, progress: Any = lambda stage: None) -> dict:
    """The diagnosis of plain int8 for recipe.source, with fidelity and host latency beside float32."""
    from .pipeline import resolve_target

    if not recipe.calib:
        raise RecipeError("explain needs calibration data to quantize with", "pass --calib DATA")
    target = resolve_target(recipe.target)
    threads = recipe.threads or host_threads(target)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        progress("Loading the source model")
        graph = keras_graph.load(recipe.source, detect_format(recipe.source), Path(work), unsafe=recipe.unsafe)
        data = load_datasets(recipe.replace(quantize=Quantize.int8), graph.inputs)
        progress("Quantizing (plain int8) and running the per-layer debugger")
        feeds, judge = tflite_variants.sample_feeds(data.calib), Judge(graph, data, threads)
        labelled = data.evaluation is not None and data.evaluation.labels is not None
        criterion = Criterion(max_drop=recipe.max_drop if labelled else None)
        _, int8_model, diagnosis = tflite_variants.plain_int8(graph, data.calib, feeds, recipe.int8_io, judge,
                                                              criterion)
        float_model = tflite.convert(graph.saved_model_dir, Quantize.none, None)
        progress("Measuring float32 and int8 side by side")
        models = {"float32": float_model, "int8": int8_model}
        opened = {name: open_model("tflite", m, threads) for name, m in models.items()}
        latency = interleaved_latency(opened, data.golden_set, max(1, recipe.bench_runs // ROUNDS), ROUNDS)
        measured = {name: {**vars(judge("tflite", m)), "bytes": len(m), **latency[name]}
                    for name, m in models.items()}
        rewrites = None
        if graph.keras_model is not None:
            progress("Trying the rewrites")
            inputs = rewrite.model_inputs(graph.keras_model, data.calib.inputs)
            rewrites = rewrite.apply(graph.keras_model, inputs).to_dict()
    return {"source": recipe.source, "target": target.name, "threads": threads, "measured": measured,
            "diagnosis": diagnosis, "rewrites": rewrites}
