"""Keras -> ONNX (tf2onnx) gives the same bytes for the same model, whatever the process converted before; a graph
is converted once (its folds reuse the bytes)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_the_same_model_converts_to_the_same_bytes_every_time(tiny, tmp_path):
    import onnx

    from edgekiln.compiler.emit.onnx_convert import keras_to_onnx
    from edgekiln.compiler.graph import load

    graph = load(tiny["keras"], "keras", tmp_path / "a")
    first = keras_to_onnx(graph, 1)
    again = keras_to_onnx(load(tiny["keras"], "keras", tmp_path / "b"), 1)  # tf2onnx's name counter has moved on
    assert first == again
    # converted once per graph: a cross-fitting fold's build reads the build's conversion, not a new one
    assert keras_to_onnx(graph, 1) is first and list(graph.onnx_bytes) == [1]
    names = [n.name for n in onnx.load_from_string(first).graph.node]
    inserted = [int(n.rsplit("__", 1)[1]) for n in names if "__" in n and n.rsplit("__", 1)[1].isdigit()]
    assert inserted == sorted(inserted) and (not inserted or inserted[0] == 1)  # numbered 1, 2, ... in graph order
