"""The word embedding's rows cut to a kept vocabulary, in a Keras model (an Embedding layer) or an ONNX encoder (the
initializer a Gather on the token ids reads, as torch.onnx exports BERT), for compiler/vocab_stage.py.

The word embedding is found by its row count: the one table with as many rows as the tokenizer hands out ids
(`rows`, or more: some checkpoints pad the table to a multiple of 8). Anything else reading that table (an output
layer tied to it, as a masked-LM head is) is refused: cutting its rows would change what it computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.tf_env import import_keras

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.keras_types import KerasLayer, KerasModel

HINT = "leave out --vocab-from for this model"


def keras_embedding(model: KerasModel, rows: int) -> KerasLayer:
    """The model's word embedding: its one Embedding layer with at least `rows` rows."""
    found = [layer for layer in model.layers if type(layer).__name__ == "Embedding" and layer.input_dim >= rows]
    if len(found) != 1:
        raise RecipeError(f"--vocab-from needs one Embedding layer with the tokenizer's {rows} rows; the model has "
                          f"{len(found)}", HINT)
    return found[0]


def keras_cut(model: KerasModel, rows: int, kept: Sequence[int]) -> tuple[KerasModel, int, int]:
    """A copy of `model` whose word embedding holds the kept rows, in their order; (model, width, rows before)."""
    keras = import_keras()
    embedding = keras_embedding(model, rows)
    table = np.asarray(embedding.get_weights()[0])

    def clone(layer: KerasLayer) -> KerasLayer:
        config = layer.get_config()
        if layer.name == embedding.name:
            config["input_dim"] = len(kept)
        return layer.__class__.from_config(config)

    cut = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            weights = [table[list(kept)]] if layer.name == embedding.name else layer.get_weights()
            cut.get_layer(layer.name).set_weights(weights)
    return cut, int(table.shape[1]), int(table.shape[0])


def onnx_cut(model: onnx.ModelProto, rows: int, ids_input: str, kept: Sequence[int]
             ) -> tuple[onnx.ModelProto, int, int]:
    """A copy of `model` whose word-embedding initializer holds the kept rows; (model, width, rows before)."""
    import onnx
    from onnx import numpy_helper

    name = _onnx_table(model, rows, ids_input)
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    tensor = next(t for t in cut.graph.initializer if t.name == name)
    table = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[list(kept)]), name))
    return cut, int(table.shape[1]), int(table.shape[0])


def _onnx_table(model: onnx.ModelProto, rows: int, ids_input: str) -> str:
    """The initializer a Gather reads at the token ids (through Casts / Identities), with at least `rows` rows and
    no other reader."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}

    def from_ids(tensor: str) -> bool:
        node = producers.get(tensor)
        while node is not None and node.op_type in ("Cast", "Identity"):
            tensor, node = node.input[0], producers.get(node.input[0])
        return tensor == ids_input

    tables = [n.input[0] for n in model.graph.node if n.op_type == "Gather" and len(shapes.get(n.input[0], ())) == 2
              and shapes[n.input[0]][0] >= rows and from_ids(n.input[1])]
    if len(tables) != 1:
        raise RecipeError(f"--vocab-from needs one embedding table ({rows} rows or more) gathered at '{ids_input}'; "
                          f"the model has {len(tables)}", HINT)
    readers = [n for n in model.graph.node if tables[0] in n.input]
    if len(readers) != 1:
        raise RecipeError(f"the word embedding '{tables[0]}' is read by {len(readers)} nodes (tied to an output "
                          "layer?): its rows cannot be cut", HINT)
    return tables[0]
