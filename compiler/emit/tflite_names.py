"""Give a .tflite model one serving signature whose input/output names are the source model's.

onnx2tf names the outputs of its quantized models `output_0`, ... and writes no signature at all
for some variants; the bundle's runtime addresses tensors by signature name, and users by the
names their ONNX model has. Only names change: tensors, buffers and ops are untouched.
"""

from __future__ import annotations

import re

SIGNATURE_KEY = b"serving_default"


def rename_signature(model_bytes: bytes, inputs: list[str], outputs: list[str]) -> bytes:
    """The model with signature names mapped onto `inputs` / `outputs` (a signature is added if missing)."""
    from edgekiln.compiler.tf_env import import_tf

    import_tf()  # quietly, before flatbuffer_utils imports TensorFlow
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    if len(model.signatureDefs or []) > 1 or len(model.subgraphs) != 1:
        return model_bytes  # not something onnx2tf writes; leave it as it is
    if not model.signatureDefs:
        model.signatureDefs = [_signature_from_subgraph(model.subgraphs[0])]
    signature = model.signatureDefs[0]
    _rename(signature.inputs, inputs)
    _rename(signature.outputs, outputs)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _signature_from_subgraph(subgraph: object) -> object:
    from tensorflow.lite.python import schema_py_generated as schema

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    signature.inputs = [_tensor_map(subgraph, i) for i in subgraph.inputs]  # type: ignore[attr-defined]
    signature.outputs = [_tensor_map(subgraph, i) for i in subgraph.outputs]  # type: ignore[attr-defined]
    return signature


def _tensor_map(subgraph: object, index: int) -> object:
    from tensorflow.lite.python import schema_py_generated as schema

    entry = schema.TensorMapT()
    name = subgraph.tensors[index].name.decode()  # type: ignore[attr-defined]
    entry.name = re.sub(r"^serving_default_|:\d+$", "", name).encode()
    entry.tensorIndex = index
    return entry


def _rename(entries: list, names: list[str]) -> None:
    """Match each signature entry to a source name: exact, sanitised, `output_K`, then by position."""
    current = [e.name.decode() for e in entries]
    chosen = [_match(name, k, names, len(entries)) for k, name in enumerate(current)]
    if len(set(chosen)) != len(chosen):
        return  # ambiguous: keep the converter's names rather than guess
    for entry, name in zip(entries, chosen, strict=True):
        entry.name = name.encode()


def _match(name: str, position: int, names: list[str], count: int) -> str:
    if name in names:
        return name
    sanitised = {_sanitise(n): n for n in names}
    if _sanitise(name) in sanitised:
        return sanitised[_sanitise(name)]
    numbered = re.fullmatch(r"output_(\d+)", name)
    if numbered and int(numbered.group(1)) < len(names):
        return names[int(numbered.group(1))]
    return names[position] if count == len(names) else name


def _sanitise(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name).lower()
