"""A float .tflite chain of `ops` ops (FULLY_CONNECTED and ADD in turn, random weights) written with LiteRT's
flatbuffer schema, no TensorFlow: a model with as many ops as a test or bench/bench_profile.py needs."""

from __future__ import annotations

import numpy as np


def chain_model(ops: int, width: int = 64, seed: int = 0) -> bytes:
    """The model's bytes: input (1, width) -> op0 -> op1 -> ... -> op{ops-1} (the output)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    rng, tensors, buffers, operators = np.random.default_rng(seed), [], [fb.BufferT()], []

    def tensor(name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> int:
        made = fb.TensorT()
        made.name, made.shape, made.type, made.buffer = name.encode(), list(shape), fb.TensorType.FLOAT32, 0
        if data is not None:
            buffers.append(fb.BufferT())
            buffers[-1].data, made.buffer = np.frombuffer(data.astype(np.float32).tobytes(), np.uint8), len(buffers) - 1
        tensors.append(made)
        return len(tensors) - 1

    x = tensor("input", (1, width))
    for k in range(ops):
        op, dense = fb.OperatorT(), k % 2 == 0
        weight = tensor(f"w{k}", (width, width), rng.normal(0, width**-0.5, (width, width))) if dense else \
            tensor(f"c{k}", (1, width), rng.normal(0, 1, (1, width)))
        op.opcodeIndex, op.inputs, op.outputs = 0 if dense else 1, [x, weight, -1] if dense else [x, weight], []
        op.builtinOptionsType = fb.BuiltinOptions.FullyConnectedOptions if dense else fb.BuiltinOptions.AddOptions
        op.builtinOptions = fb.FullyConnectedOptionsT() if dense else fb.AddOptionsT()
        x = tensor(f"op{k}", (1, width))
        op.outputs = [x]
        operators.append(op)
    graph, model = fb.SubGraphT(), fb.ModelT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [x], operators
    model.version, model.subgraphs, model.buffers, model.operatorCodes = 3, [graph], buffers, []
    for code in (fb.BuiltinOperator.FULLY_CONNECTED, fb.BuiltinOperator.ADD):
        model.operatorCodes.append(fb.OperatorCodeT())
        model.operatorCodes[-1].builtinCode = model.operatorCodes[-1].deprecatedBuiltinCode = code
        model.operatorCodes[-1].version = 1
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
