"""The build's encoder slimming: --drop-layers N|auto, then --prune-heads R|auto, for Keras or ONNX encoders.

Each framework is a kit: how to drop the last blocks, prune heads (both re-fitted by least squares), count
blocks and heads, run the model's first float output, and hand the slimmed model on as the working graph.
Keras: compiler/graph/keras_layers.py, keras_heads.py (MultiHeadAttention). ONNX: compiler/graph/onnx_layers.py,
onnx_heads.py (the attention pattern torch.onnx exports). The auto search (compiler/prune/encoder_auto.py)
and the pruning block are the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from edgekiln.compiler import Progress
from edgekiln.compiler.data import Datasets
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.prune.judging import data_note, judging_set
from edgekiln.compiler.prune.recovery_facts import Distillation
from edgekiln.compiler.recipe import Recipe

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.graph.keras_graph import KerasGraph
    from edgekiln.compiler.graph.onnx_graph import OnnxGraph
    from edgekiln.compiler.keras_types import KerasModel

ModelT = TypeVar("ModelT")  # the kit's model: a Keras model or an onnx.ModelProto
# A slimming step's facts as compiler/graph's keras_layers / keras_heads / onnx_layers / onnx_heads report them:
# the pruning block's JSON, with at least params_before and params_after.
Facts = dict[str, Any]


def keras_output(model: KerasModel, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The first output of a Keras model on `x`, in batches of `batch`. predict_on_batch runs the same compiled
    step as predict(batch_size=batch) (bit for bit) without the tf.data pipeline predict builds on every call
    (measured on the residual sample's auto-prune build: 38 calls, 61 s -> 52 s wall under load)."""
    outputs = [model.predict_on_batch(x[start:start + batch]) for start in range(0, len(x), batch)]
    firsts = [y[0] if isinstance(y, list | tuple) else y for y in outputs]
    if isinstance(firsts[0], dict):
        return {name: np.concatenate([y[name] for y in firsts]) for name in firsts[0]}  # type: ignore[return-value]
    return np.concatenate(firsts)


class Kit(Protocol[ModelT]):
    """What the encoder slimming needs from a framework."""

    source: ModelT

    def drop(self, model: ModelT, count: int, recover: bool) -> tuple[ModelT, Facts]: ...
    def heads(self, model: ModelT, ratio: float, recover: bool) -> tuple[ModelT, Facts]: ...
    def blocks(self) -> int: ...
    def head_counts(self) -> list[int]: ...
    def predict(self, model: ModelT, dataset: Dataset) -> np.ndarray: ...
    def export(self, model: ModelT, workdir: Path) -> KerasGraph | OnnxGraph: ...


class KerasKit:
    """A Keras encoder (MultiHeadAttention layers); `x` the calibration inputs the re-fits read."""

    def __init__(self, graph: KerasGraph, x: np.ndarray) -> None:
        assert graph.keras_model is not None, "kit_for refuses a SavedModel (no Keras model to rebuild) first"
        self.graph, self.source, self.x = graph, graph.keras_model, x

    def drop(self, model: KerasModel, count: int, recover: bool) -> tuple[KerasModel, Facts]:
        from edgekiln.compiler.graph import keras_layers

        return keras_layers.drop(model, count, self.x, recover)

    def heads(self, model: KerasModel, ratio: float, recover: bool) -> tuple[KerasModel, Facts]:
        from edgekiln.compiler.graph import keras_heads

        _prunable(*keras_heads.attention_layers(model))
        return keras_heads.prune(model, ratio, self.x, recover=recover)

    def blocks(self) -> int:
        from edgekiln.compiler.graph import keras_layers

        return len(keras_layers.encoder_blocks(self.source))

    def head_counts(self) -> list[int]:
        from edgekiln.compiler.graph import keras_heads

        names = _prunable(*keras_heads.attention_layers(self.source))
        return [self.source.get_layer(name).num_heads for name in names]

    def predict(self, model: KerasModel, dataset: Dataset) -> np.ndarray:
        return keras_output(model, next(iter(dataset.inputs.values())))

    def distill(self, model: KerasModel, progress: Progress) -> Distillation:
        """Train the slimmed (and re-fitted) `model` in place towards the source's outputs on the calibration
        inputs (compiler/graph/keras_recover.distill; early stopping keeps its best epoch); the facts, with the
        output cosine to the source before and after. Training that leaves the model further from the source than
        the re-fit did is undone, and the facts say so (a recovery never makes the model worse)."""
        from edgekiln.compiler.graph import keras_recover
        from edgekiln.compiler.graph.keras_layers import output_cosine

        progress("Distilling the slimmed encoder towards the source model")
        reference = keras_output(self.source, self.x)
        refitted = model.get_weights()
        before = output_cosine(self.source, model, self.x, reference)
        facts = keras_recover.distill(model, self.source, self.x)
        after = output_cosine(self.source, model, self.x, reference)
        kept = after >= before
        if not kept:
            model.set_weights(refitted)
        distilled: Distillation = {**facts, "output_cosine_before": round(before, 6),
                                   "output_cosine_after": round(after, 6), "kept": kept}
        if not kept:
            distilled["note"] = "undone: the distilled model was further from the source than the re-fitted one"
        return distilled

    def export(self, model: KerasModel, workdir: Path) -> KerasGraph:
        from edgekiln.compiler.graph import keras_graph

        return keras_graph.from_model(model, workdir / "pruned_saved_model", self.graph.source_format,
                                      "the slimmed encoder")


class OnnxKit:
    """An ONNX encoder as torch.onnx exports it; `feed` the calibration inputs by name, in the model's types."""

    def __init__(self, graph: OnnxGraph, feed: dict[str, np.ndarray]) -> None:
        self.graph, self.source, self.feed = graph, graph.model, feed

    def drop(self, model: onnx.ModelProto, count: int, recover: bool) -> tuple[onnx.ModelProto, Facts]:
        from edgekiln.compiler.graph import onnx_layers

        return onnx_layers.drop(model, count, self.feed, recover)

    def heads(self, model: onnx.ModelProto, ratio: float, recover: bool) -> tuple[onnx.ModelProto, Facts]:
        from edgekiln.compiler.graph import onnx_heads

        return onnx_heads.prune_heads(model, ratio, self.feed, recover)

    def blocks(self) -> int:
        from edgekiln.compiler.graph import onnx_layers

        return len(onnx_layers.encoder_blocks(self.source))

    def head_counts(self) -> list[int]:
        from edgekiln.compiler.graph.onnx_attention import attention_layers

        layers, blocked = attention_layers(self.source)
        _prunable([a.name for a in layers], blocked)
        return [a.heads for a in layers]

    def predict(self, model: onnx.ModelProto, dataset: Dataset) -> np.ndarray:
        return vector_output(model, dataset.inputs)

    def export(self, model: onnx.ModelProto, workdir: Path) -> OnnxGraph:
        from edgekiln.compiler.graph import onnx_graph

        path = workdir / "pruned.onnx"
        path.write_bytes(model.SerializeToString())
        return onnx_graph.OnnxGraph(self.graph.source_format, model, path, onnx_graph.input_specs(model),
                                    [o.name for o in model.graph.output], onnx_graph.param_count(model),
                                    fixed_inputs=self.graph.fixed_inputs)


def vector_output(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    """An ONNX encoder's first float output with a vector axis on `feed` (token-id pass-through outputs are not
    judged)."""
    from edgekiln.compiler.graph.onnx_attention import run

    outputs = run(model, feed)
    floats = [outputs[o.name] for o in model.graph.output
              if outputs[o.name].dtype.kind == "f" and outputs[o.name].ndim >= 2]
    if not floats:
        raise RecipeError("the encoder has no float output with a vector axis to judge slimming by")
    return floats[0]


def _prunable(names: list[str], blocked: dict[str, str]) -> list[str]:
    """The attention layers heads can be removed from, or a RecipeError saying why there is none."""
    if not names:
        why = "; ".join(f"{n}: {r}" for n, r in blocked.items()) or "it has no self-attention layer"
        raise RecipeError(f"--prune-heads found no attention layer to prune ({why})", "leave out --prune-heads")
    return names


def kit_for(graph: KerasGraph | OnnxGraph, calib: Dataset) -> KerasKit | OnnxKit:
    from edgekiln.compiler.graph import onnx_graph

    if isinstance(graph, onnx_graph.OnnxGraph):
        return OnnxKit(graph, calib.inputs)
    if graph.keras_model is None:
        raise RecipeError("--prune-heads / --drop-layers need a Keras model (.keras or .h5) or an ONNX encoder: a "
                          "SavedModel cannot be rebuilt", "load it in Keras, save it as .keras, and build that")
    return KerasKit(graph, next(iter(calib.inputs.values())))


def slim(kit: Kit[ModelT], recipe: Recipe, data: Datasets, recover: bool, progress: Progress
         ) -> tuple[ModelT, Facts]:
    """The slimmed model and its pruning block (fixed settings, or the auto search)."""
    drop, ratio = recipe.drop_layers, recipe.prune_heads
    if drop == "auto" or ratio == "auto":
        return _search(kit, recipe, data, recover, progress)
    assert not isinstance(drop, str) and not isinstance(ratio, str), "the recipe parses every other text"
    return _apply(kit, kit.source, drop, ratio, recover, progress)


def _apply(kit: Kit[ModelT], model: ModelT, drop: int | None, ratio: float | None, recover: bool,
           progress: Progress) -> tuple[ModelT, Facts]:
    """The last `drop` blocks out, then `ratio` of the heads (None: that step is skipped), each re-fitted."""
    dropped = None
    if drop is not None:
        progress(f"Dropping the last {drop} encoder block(s)")
        model, dropped = kit.drop(model, drop, recover)
    if ratio is None:
        assert dropped is not None, "the recipe sets --drop-layers or --prune-heads"
        return model, dropped
    progress(f"Pruning {ratio:g} of the heads of every self-attention layer")
    model, heads = kit.heads(model, ratio, recover)
    return model, heads if dropped is None else {**heads, "params_before": dropped["params_before"],
                                                 "layer_drop": dropped}


def _search(kit: Kit[ModelT], recipe: Recipe, data: Datasets, recover: bool, progress: Progress
            ) -> tuple[ModelT, Facts]:
    """--drop-layers auto / --prune-heads auto (compiler/prune/encoder_auto.py)."""
    from edgekiln.compiler.evaluate import output_kinds
    from edgekiln.compiler.prune import encoder_auto

    dataset = judging_set(data)
    source_output = kit.predict(kit.source, dataset)  # once: the kind is read from it, the judge compares with it
    kind = "embedding" if recipe.embedding else output_kinds.infer(source_output)
    judge, reference = encoder_auto.judge_with(
        lambda model: source_output if model is kit.source else kit.predict(model, dataset), kit.source,
        dataset.labels)
    blocks = kit.blocks() if recipe.drop_layers == "auto" else 0
    heads = kit.head_counts() if recipe.prune_heads == "auto" else []

    def apply(drop: int, ratio: float) -> tuple[ModelT, Facts]:
        return _apply(kit, kit.source, drop if drop or not ratio else None, ratio or None, recover, progress)

    model, block = encoder_auto.run(apply, judge, reference, blocks, heads, recipe, progress, kind)
    measure = "top-1 agreement and output cosine" if kind == "class" else "output cosine"
    return model, {**block, "judged_as": kind,
                   "judged_on": data_note(data, f"{measure} with the source (the output is judged as {kind})")}
