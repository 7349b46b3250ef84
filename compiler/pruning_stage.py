"""The pruning stage of a build: choose channels, remove them, recover accuracy, and measure the gain.

It sits between loading and emitting (DESIGN.md): the source Keras model is pruned and recovered,
exported to a new SavedModel, and handed on as the working graph. The bundle's accuracy and
fidelity are still measured against the ORIGINAL source model, so the drops reported include
pruning. After emission, `finish` compiles the unpruned model the same way and times both side by
side, so the manifest shows the speed-up measured, not only the MACs ratio.

`prune_onnx` is the same stage for an ONNX ModelProto (recovery by reconstruction: no training
framework is needed); the logic both share is compiler/prune/driver.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from edgekiln.compiler import Progress, encoder_slimming
from edgekiln.compiler.data import Datasets
from edgekiln.compiler.encoder_slimming import keras_output
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph import keras_graph, keras_prune, keras_recover, onnx_graph, onnx_prune, onnx_recover
from edgekiln.compiler.model_inputs import Dataset, InputSpec
from edgekiln.compiler.prune import driver, groups
from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.judging import data_note, scorer_for
from edgekiln.compiler.prune.recover import resolve
from edgekiln.compiler.prune.recovery_facts import Reconstruction, Training
from edgekiln.compiler.recipe import Recipe, Recover

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.keras_types import KerasModel

WorkingGraph: TypeAlias = keras_graph.KerasGraph | onnx_graph.OnnxGraph


@dataclass(frozen=True)
class Pruned:
    """The working graph to emit (the source's when nothing was removed) and the manifest's pruning block."""

    graph: WorkingGraph
    block: Mapping[str, object]  # JSON: the channel block (prune/driver.PruningBlock) or the encoder slimming's
    removed: bool


class KerasSubject:
    """A Keras model as the pruning driver sees it (compiler/prune/driver.py: Subject)."""

    def __init__(self, model: KerasModel, calib: Dataset | None) -> None:
        self.model = model
        self.analysis = groups.analyze(keras_prune.channel_graph(model))
        self.x = None if calib is None else _single(calib)
        self.y = None if calib is None else calib.labels

    def predict(self, model: KerasModel, x: np.ndarray) -> np.ndarray:
        return keras_output(model, x)

    def masked(self, plan: Plan) -> contextlib.AbstractContextManager[KerasModel]:
        return keras_prune.masked(self.model, self.analysis, plan)

    def prune(self, plan: Plan, method: Recover) -> tuple[KerasModel, list[Reconstruction | Training]]:
        pruned = keras_prune.apply(self.model, self.analysis, plan)
        steps: list[Reconstruction | Training] = []
        if method is Recover.none:
            return pruned, steps
        assert self.x is not None, "recovery needs calibration data (the stage checks it first)"
        steps.append(keras_recover.reconstruct(pruned, self.model, self.analysis, plan, self.x))  # cheap, a good start
        if method is Recover.distill:
            steps.append(keras_recover.distill(pruned, self.model, self.x))
        elif method is Recover.finetune:
            assert self.y is not None, "fine-tuning needs labels (the stage checks it first)"
            steps.append(keras_recover.finetune(pruned, self.model, self.x, self.y))
        return pruned, steps

    def params(self, model: KerasModel) -> int:
        return int(model.count_params())


class OnnxSubject:
    """An ONNX ModelProto as the pruning driver sees it; recovery by reconstruction only (no training)."""

    def __init__(self, model: onnx.ModelProto, calib: Dataset | None) -> None:
        self.model = model
        self.analysis = groups.analyze(onnx_prune.channel_graph(model))
        self.x = None if calib is None else _single(calib)

    def predict(self, model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
        return onnx_recover.run(model, x)[0]

    @contextlib.contextmanager
    def masked(self, plan: Plan) -> Iterator[onnx.ModelProto]:
        yield onnx_prune.masked(self.model, self.analysis, plan)

    def prune(self, plan: Plan, method: Recover) -> tuple[onnx.ModelProto, list[Reconstruction | Training]]:
        pruned = onnx_prune.apply(self.model, self.analysis, plan)
        if method is Recover.none:
            return pruned, []
        assert self.x is not None, "recovery needs calibration data (the stage checks it first)"
        pruned, facts = onnx_recover.reconstruct(pruned, self.model, self.analysis, plan, self.x)
        return pruned, [facts]

    def params(self, model: onnx.ModelProto) -> int:
        return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == 1)  # FLOAT tensors


def _single(dataset: Dataset) -> np.ndarray:
    return next(iter(dataset.inputs.values()))



def prune(graph: WorkingGraph, recipe: Recipe, data: Datasets, workdir: Path, progress: Progress) -> Pruned | None:
    """Prune the source model (Keras or ONNX) as the recipe says; None without --prune / --prune-heads."""
    if recipe.prune_heads is not None or recipe.drop_layers is not None:
        return _slim_encoder(graph, recipe, data, workdir, progress)
    if recipe.prune is None:
        return None
    if isinstance(graph, onnx_graph.OnnxGraph):
        return _prune_onnx_graph(graph, recipe, data, workdir, progress)
    train = _training_data(recipe, graph.inputs)
    method = _check(recipe, data, len(graph.inputs), trainable=True, train=train)
    if graph.keras_model is None:
        raise RecipeError("--prune needs a Keras model (.keras or .h5): a SavedModel cannot be rebuilt with "
                          "fewer channels", "load it in Keras, save it as .keras, and build that")
    subject = KerasSubject(graph.keras_model, train or data.without_holdout)
    outcome = driver.run(subject, recipe.prune, recipe.prune_criterion, method, recipe.max_drop,
                         scorer_for(subject, data), progress, recipe.prune_time)
    block: dict[str, object] = {**outcome.block, "judged_on": data_note(data)}
    if method in (Recover.distill, Recover.finetune) and outcome.block["params_after"] < outcome.block["params_before"]:
        learned_from, warnings = _recovery_data(method, train, data)
        block = {**block, "recovery_data": learned_from, "warnings": [*outcome.block["warnings"], *warnings]}
    if outcome.model is None:
        return Pruned(graph, block, False)
    exported = keras_graph.from_model(outcome.model, workdir / "pruned_saved_model", graph.source_format,
                                      "the pruned model")
    return Pruned(exported, block, True)


def _slim_encoder(graph: WorkingGraph, recipe: Recipe, data: Datasets, workdir: Path, progress: Progress) -> Pruned:
    """--drop-layers N|auto, then --prune-heads R|auto, on a Keras or ONNX encoder (compiler/prune/encoder_slimming.py):
    whole blocks and whole attention heads out, each re-fitted by least squares; the block says which blocks and
    heads stayed, what recovery did and, for auto, the search."""

    method = Recover(str(recipe.recover))
    if method is Recover.finetune:
        raise RecipeError("--recover finetune is not available for head pruning or layer dropping",
                          "use --recover reconstruct (least-squares re-fit, the default), distill (Keras) or none")
    assert data.without_holdout is not None, "the recipe guarantees --calib with --prune-heads / --drop-layers"
    kit = encoder_slimming.kit_for(graph, data.without_holdout)
    if method is Recover.distill and not isinstance(kit, encoder_slimming.KerasKit):
        raise RecipeError("--recover distill trains the model, which is possible for Keras sources only",
                          "use --recover reconstruct (least squares, no training)")
    model, block = encoder_slimming.slim(kit, recipe, data, method is not Recover.none, progress)
    block = {"warnings": [], "search": None, **block}
    if not block["params_after"] < block["params_before"]:
        nothing = [] if block["search"] else ["pruning: removes nothing (ratio 0, one head per layer, or no block "
                                              "dropped)"]
        return Pruned(graph, {**block, "warnings": [*block["warnings"], *nothing]}, False)
    if method is Recover.distill:
        assert isinstance(kit, encoder_slimming.KerasKit)
        block = {**block, "distillation": kit.distill(model, progress)}
    return Pruned(kit.export(model, workdir), block, True)


def _training_data(recipe: Recipe, specs: list[InputSpec]) -> Dataset | None:
    """--train: the recovery's data (labels y: fine-tuning), read like --calib."""
    if recipe.train is None:
        return None
    from edgekiln.compiler.data import load_data

    return load_data(recipe.train, specs, role="training", mean=recipe.mean, std=recipe.std,
                     tokenizer=recipe.tokenizer, seq_len=recipe.seq_len)


def _recovery_data(method: Recover, train: Dataset | None, data: Datasets) -> tuple[str, list[str]]:
    """What a trained recovery learned from, and the warnings to add: without --train it had the calibration
    samples only."""
    if train is not None:
        return f"{train.size} training samples (--train)", []
    size = data.without_holdout.size if data.without_holdout is not None else 0
    note = (f"pruning: recovery ({method}) trained on the {size} calibration samples only, which can overfit "
            "them and cost accuracy; pass --train DATA (labelled: fine-tuning) to recover on more")
    return f"{size} calibration samples only", [note]


def _prune_onnx_graph(graph: onnx_graph.OnnxGraph, recipe: Recipe, data: Datasets, workdir: Path,
                      progress: Progress) -> Pruned:
    """The ONNX working graph pruned and reconstructed, written where the emitters read it."""
    outcome = prune_onnx(graph.model, recipe, data, progress)
    assert outcome is not None, "recipe.prune is set"
    model, block = outcome
    if model is graph.model:
        return Pruned(graph, block, False)
    path = workdir / "pruned.onnx"
    path.write_bytes(model.SerializeToString())
    pruned = onnx_graph.OnnxGraph(graph.source_format, model, path, onnx_graph.input_specs(model),
                                  [o.name for o in model.graph.output], onnx_graph.param_count(model))
    return Pruned(pruned, block, True)


def prune_onnx(model: onnx.ModelProto, recipe: Recipe, data: Datasets, progress: Progress
               ) -> tuple[onnx.ModelProto, dict[str, object]] | None:
    """Prune an ONNX ModelProto as the recipe says: (pruned model or the input one, pruning block), or None.

    Data must be in the model's own input layout (NCHW for most ONNX models).
    """
    if recipe.prune is None:
        return None
    constants = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    method = _check(recipe, data, len(inputs), trainable=False)
    subject = OnnxSubject(model, data.without_holdout)
    outcome = driver.run(subject, recipe.prune, recipe.prune_criterion, method, recipe.max_drop,
                         scorer_for(subject, data), progress, recipe.prune_time)
    block: dict[str, object] = {**outcome.block, "judged_on": data_note(data)}
    return (outcome.model if outcome.model is not None else model), block


def _check(recipe: Recipe, data: Datasets, inputs: int, trainable: bool, train: Dataset | None = None) -> Recover:
    """The recovery method to use, after refusing what cannot work. Labelled --train data: auto fine-tunes."""
    method = resolve(recipe.recover, trainable)
    if recipe.train is not None and not trainable:
        raise RecipeError("--train needs a Keras source: ONNX models recover by reconstruction, without training",
                          "leave out --train, or build from the Keras model")
    if train is not None and train.labels is not None and Recover(str(recipe.recover)) is Recover.auto:
        method = Recover.finetune
    recovery = train if train is not None else data.without_holdout
    if not trainable and method in (Recover.distill, Recover.finetune):
        raise RecipeError(f"--recover {method} trains the model, which is possible for Keras sources only",
                          "use --recover reconstruct (least squares, no training)")
    if inputs != 1:
        raise RecipeError("pruning supports single-input models only")
    if method is not Recover.none and data.calib is None:
        raise RecipeError(f"recovery by {method} runs on calibration data", "pass --calib DATA")
    if method is Recover.finetune and (recovery is None or recovery.labels is None):
        where = "training" if train is not None else "calibration"
        raise RecipeError(f"--recover finetune needs labels 'y' in the {where} data",
                          "use --recover distill, which needs no labels")
    if recipe.prune == "auto" and data.evaluation is None and data.holdout is None:
        raise RecipeError("--prune auto needs data to measure sensitivity", "pass --eval DATA (labelled is best)")
    return method
