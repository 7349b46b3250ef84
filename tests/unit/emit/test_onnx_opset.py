"""Static int8 of old-opset ONNX models (emit/onnx_opset.py through search/onnx_builder.py): the opset is raised to 13
for per-channel weights when the converted model computes what the source computes, else weights go per tensor.
Real onnx version converter, onnxruntime quantizer and runtime; no TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.emit import onnx_opset
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.graph.onnx_graph import open_session
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx_builder
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import plan
from tests.unit.old_opsets import hardmax_gate, images, paddle_like


def _int8(tmp_path: Path, model: onnx.ModelProto, size: int) -> tuple[Candidate, Reference, Dataset]:
    """The plain int8 candidate of `model` (calibrated on 24 samples, judged on 8), its source and the samples."""
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    x = images(32, size)
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path, data_shapes={"calibration": {"x": x.shape[1:]}})
    calib, held = Dataset({"x": x[:24]}, None, "test"), Dataset({"x": x[24:]}, None, "test")
    reference = Reference(graph)
    judge = Judge.for_build(reference, Datasets(calib, held, None), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.int8, "onnx", "onnx", only="int8"), calib, judge, Criterion(),
                       tmp_path, True, "minmax", "uint8")
    built = {b.variant.name: b for b in onnx_builder.build(ctx).built}
    return built["int8"], reference, held


def _per_channel_weights(model: bytes) -> bool:
    """Whether every Conv's weight is dequantized with a vector of scales (per channel), not a scalar."""
    graph = onnx.load_from_string(model).graph
    producer = {out: node for node in graph.node for out in node.output}
    dims = {t.name: list(t.dims) for t in graph.initializer}
    dequantized = [producer[node.input[1]] for node in graph.node if node.op_type == "Conv"]
    assert dequantized and all(dq.op_type == "DequantizeLinear" for dq in dequantized), "Conv weights not int8"
    return all(dims[dq.input[1]] not in ([], [1]) for dq in dequantized)


@pytest.mark.parametrize("opset", [11, 12])
def test_an_old_opset_is_raised_to_13_and_its_int8_runs(tmp_path: Path, opset: int) -> None:
    int8, reference, held = _int8(tmp_path, paddle_like(opset), 16)
    assert int8.model is not None, int8.notes
    facts = int8.details["opset"]
    assert (facts["source"], facts["quantized"], facts["weights"]) == (opset, 13, "per-channel")
    assert f"opset {opset} raised to 13 for per-channel int8" in int8.notes[-1]
    assert "outputs match the source's on 24 calibration samples" in facts["why"]
    assert onnx_opset.opset_of(int8.model) == 13 and _per_channel_weights(int8.model)
    session = open_session(int8.model)  # the int8 model is a valid graph onnxruntime runs
    (ours,) = session.run(None, {"x": held.inputs["x"][:1]})
    (theirs,) = reference.graph.run({"x": held.inputs["x"][:1]})
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()  # measured ~1 % (SQNR ~40 dB)


def test_a_conversion_that_changes_the_outputs_is_refused_and_weights_go_per_tensor(tmp_path: Path) -> None:
    model = hardmax_gate(12).SerializeToString()
    converted = onnx_opset.convert(model)  # onnx's converter keeps Hardmax(axis=1) though opset 13 changed it
    feeds = [{"x": images(1, 8, seed)} for seed in range(4)]
    assert onnx_opset.max_difference(model, converted, iter(feeds)) > 0.1
    int8, _, _ = _int8(tmp_path, hardmax_gate(12), 8)
    assert int8.model is not None, int8.notes
    facts = int8.details["opset"]
    assert (facts["source"], facts["quantized"], facts["weights"]) == (12, 12, "per-tensor")
    assert "raising it to 13 changed the outputs" in facts["why"] and "per-tensor int8 weights" in int8.notes[-1]
    assert onnx_opset.opset_of(int8.model) == 12 and not _per_channel_weights(int8.model)
    open_session(int8.model)  # per-tensor QDQ is valid at opset 12: onnxruntime loads it


def test_a_current_opset_is_left_as_it_is() -> None:
    model = paddle_like(13).SerializeToString()
    kept = onnx_opset.for_per_channel(model, Dataset({"x": images(2)}, None, "test"), 1)
    assert kept.model == model and kept.per_channel and kept.facts is None and kept.note == ""
