"""onnxruntime's transformer optimizer on a torch-style encoder (tests/unit/bert_onnx.py, real onnxruntime, no
PyTorch): heads and width read from the graph, fusions fire, the fused graph computes the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgekiln.compiler.emit.onnx_fused import attention_shape, contrib_ops, fused, is_transformer
from tests.unit.bert_onnx import HEADS, HIDDEN, tiny_bert, tokens


def test_a_torch_style_encoder_is_fused_with_heads_and_width_read_from_its_graph(tmp_path: Path) -> None:
    model = tiny_bert()
    assert is_transformer(model)
    assert attention_shape(model) == (HEADS, HIDDEN)  # layer 1's [B, S, heads, dim] Reshape target
    fused_bytes, facts = fused(model.SerializeToString(), tmp_path)
    assert (facts["num_heads"], facts["hidden_size"]) == (HEADS, HIDDEN)
    assert facts["rewrites"] == {}  # LayerNormalization and the Erf GELU are already in onnxruntime's forms
    assert {"SkipLayerNormalization", "BiasGelu"} <= set(facts["fusions"]), facts
    assert fused_bytes is not None and {"SkipLayerNormalization", "BiasGelu"} <= set(contrib_ops(fused_bytes))
    feed = tokens(4, 12)  # padded rows: the mask path is exercised too
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    after = ort.InferenceSession(fused_bytes, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(after - before).max() < 1e-5
