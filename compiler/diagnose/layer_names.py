"""The Keras layers behind a converted node's name: TensorFlow scopes a layer as its name + `_N`, and tf2onnx
keeps those scopes in the node names it writes. Read by the profile (its layer column) and the ONNX int8
diagnosis (the layer behind a node)."""

from __future__ import annotations

import re

TF2ONNX_NODE = re.compile(r"__\d+$")  # a node tf2onnx inserted (Conv__3, .../Mean_Squeeze__9): made from TensorFlow


def keras_layers(names: list[str], scope: str = "") -> str:
    """The Keras layers named by TensorFlow scopes among `names` (after the model's `scope`), joined by '+'
    ("conv2d_4+batch_normalization_4" for `conv2d_4_1/convolution/merged_input:0` and
    `batch_normalization_4_1/batchnorm/sub:0`: TensorFlow scopes a layer as its name + `_N`); "" when none has one."""
    inner = [name.removeprefix(scope) for name in names if name.startswith(scope)]
    found = [re.sub(r"_\d+$", "", name.split("/")[0]) for name in inner if "/" in name.strip("/")]
    return "+".join(dict.fromkeys(layer for layer in found if layer))


def model_scope(names: list[str]) -> str:
    """The scope every scoped node name starts with, the model's ('StatefulPartitionedCall/model_1/'); "" when the
    names start with the layers' own (a file edgekiln converted: emit/onnx_convert.shorten_names drops it)."""
    scoped = [name.split("/") for name in names if "/" in name]
    prefix: list[str] = []
    while scoped and all(len(parts) > len(prefix) + 2 for parts in scoped) and \
            len({parts[len(prefix)] for parts in scoped}) == 1:
        prefix.append(scoped[0][len(prefix)])
    return "".join(f"{part}/" for part in prefix)
