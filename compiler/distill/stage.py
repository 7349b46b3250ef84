"""build --distill WIDTH|auto: the source replaced by a distilled student before pruning and quantization.

The student is trained on --train (the teacher's soft targets, and the labels when given) and judged on the
labelled evaluation data when there is some, else on the part of --train held back for early stopping. auto
spends the budget as the pruning search does: it leaves QUANT_RESERVE of --max-drop to quantization. The
bundle's accuracy and fidelity stay measured against the source, so they include what distillation cost.
"""

from __future__ import annotations

from pathlib import Path

from edgekiln.compiler import Progress
from edgekiln.compiler.data import Datasets, in_model_types, load_data
from edgekiln.compiler.distill import engine
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph import keras_graph, onnx_graph
from edgekiln.compiler.manifest_schema import Distillation
from edgekiln.compiler.prune.driver import QUANT_RESERVE
from edgekiln.compiler.recipe import Recipe

Working = keras_graph.KerasGraph | onnx_graph.OnnxGraph


def distill(graph: Working, recipe: Recipe, data: Datasets, workdir: Path, progress: Progress
            ) -> tuple[Working, Distillation | None]:
    """The working graph (the student's, or `graph` without --distill) and the manifest's distillation section."""
    if recipe.distill is None:
        return graph, None
    if not isinstance(graph, keras_graph.KerasGraph) or graph.keras_model is None:
        raise RecipeError("--distill trains the student in Keras: it needs a .keras or .h5 source",
                          "distill the Keras model the file came from, or leave out --distill")
    if len(graph.inputs) != 1:
        raise RecipeError(f"--distill trains single-input models; this one has {len(graph.inputs)} inputs")
    assert recipe.train is not None, "the recipe refuses --distill without --train"
    train = in_model_types(load_data(recipe.train, graph.inputs, role="training", mean=recipe.mean,
                                     std=recipe.std), graph.inputs)
    evaluation = data.evaluation
    judge = None if evaluation is None or evaluation.labels is None else \
        (next(iter(evaluation.inputs.values())), evaluation.labels)
    teacher = engine.Teacher(graph.keras_model, next(iter(train.inputs.values())), train.labels, judge,
                             engine.Settings())
    budget = round(recipe.max_drop * (1 - QUANT_RESERVE), 3)
    outcome = engine.distill(teacher, recipe.distill, budget, progress)
    student = outcome.student
    exported = keras_graph.from_model(student.model, workdir / "student_saved_model", graph.source_format,
                                      "the distilled student")
    return exported, {
        "width": student.width, "metric": outcome.metric, "judged_on": outcome.judged_on,
        "params_before": outcome.teacher_params, "params_after": student.params,
        "macs_before": outcome.teacher_macs, "macs_after": student.macs,
        "macs_ratio": round(student.macs / max(outcome.teacher_macs, 1), 4), "paired": student.drop.to_dict(),
        "budget": budget if recipe.distill == "auto" else None,
        "probes": [{"width": p.width, "drop": p.drop, "within_budget": p.within} for p in outcome.probes],
        "training": dict(student.training)}
