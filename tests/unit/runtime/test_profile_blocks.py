"""The LiteRT profiler times a long model in blocks of BLOCK ops (so a round runs each op at most BLOCK times,
not once per later op): each block is a model of its own, fed the tensors the whole model computes at its
start. The cut models compute what the whole model computes, and every op still gets its row."""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

from edgekiln.runtime import profile as runtime_profile
from tests.unit.runtime.chain_model import chain_model

OPS = 2 * runtime_profile.BLOCK + 5  # two full blocks and a short one
FEEDS = [np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)]


def test_every_op_gets_its_row_in_order():
    result = runtime_profile.profile("tflite", chain_model(OPS), 1, FEEDS, runs=2)
    rows = result["ops"]
    assert result["method"] == "prefix-differences"
    assert [r["index"] for r in rows] == list(range(OPS))
    assert [r["name"] for r in rows] == [f"op{k}" for k in range(OPS)]
    assert [r["op"] for r in rows] == ["FULLY_CONNECTED", "ADD"] * (OPS // 2) + ["FULLY_CONNECTED"] * (OPS % 2)
    assert min(r["ms"] for r in rows) >= 0  # the running minimum keeps every step non-negative


def test_a_later_blocks_cut_models_compute_what_the_whole_model_computes():
    model_bytes = chain_model(OPS)
    model = fb.ModelT.InitFromPackedBuf(model_bytes, 0)
    graph = model.subgraphs[0]
    ops = list(graph.operators)
    last_use = {int(t): k for k, op in enumerate(ops) for t in op.inputs} | {int(t): OPS for t in graph.outputs}
    values = runtime_profile._all_tensors(model_bytes, FEEDS, set(range(len(graph.tensors))))
    start = runtime_profile.BLOCK
    block = ops[start:start + runtime_profile.BLOCK]
    calls = runtime_profile._block_prefixes(fb, flatbuffers, model, (start, block), last_use, values, 1)
    assert len(calls) == len(block) + 1  # the empty prefix, then one per op
    for k in (0, 1, len(block)):  # nothing run (the block's input passed through), one op, the whole block
        interp = calls[k].__self__
        interp.invoke()
        (output,) = interp.get_output_details()
        expected = int(ops[start + k - 1].outputs[0])  # the tensor live at the cut: the last op's output
        assert output["name"] == graph.tensors[expected].name.decode()
        np.testing.assert_allclose(interp.get_tensor(output["index"]), values[expected], rtol=1e-4, atol=1e-4)
