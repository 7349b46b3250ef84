"""compiler/emit/onnx_guard.py: what static int8 leaves in float, and that it saves a PyTorch-style encoder.

The tiny torch-style BERT (tests/unit/bert_onnx.py) adds `(1 - mask) * fill` to its attention scores, as
torch.onnx exports do (fill -3.4e38 since torch 2, -10000 before). onnxruntime's real quantizer is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnxruntime import quantization as q

from edgekiln.compiler.emit import EmitOptions, onnx_guard
from edgekiln.compiler.emit.onnx_convert import _reader, prepare, quantized
from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.graph.onnx_graph import open_session
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from tests.unit.bert_onnx import LAYERS, tiny_bert, tokens

TORCH_FILL = float(np.finfo(np.float32).min)


def _ranges(model, overrides: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Every tensor in [-4, 4] but the given ones."""
    names = {t for node in model.graph.node for t in node.output}
    return {name: overrides.get(name, (-4.0, 4.0)) for name in names}


def _softmax_inputs(model) -> dict[str, str]:
    producer = {out: node.name for node in model.graph.node for out in node.output}
    return {node.name: producer[node.input[0]] for node in model.graph.node if node.op_type == "Softmax"}


def test_a_fill_value_and_the_softmaxes_it_reaches_stay_in_float():
    model = tiny_bert(mask_fill=TORCH_FILL)
    softmaxes = _softmax_inputs(model)
    wide = {out: (TORCH_FILL, 12.0) for node in model.graph.node if node.name in softmaxes.values()
            for out in node.output}
    kept = onnx_guard.kept_in_float(model, _ranges(model, {"/mask/Mul_output_0": (TORCH_FILL, 0.0), **wide}))
    names = {k.node for k in kept}
    assert len(softmaxes) == LAYERS
    assert names == {"/mask/Mul", *softmaxes, *softmaxes.values()}
    assert all(k.reason for k in kept)


def test_narrow_ranges_keep_nothing_and_a_wide_softmax_input_is_caught_without_a_fill():
    model = tiny_bert()
    assert onnx_guard.kept_in_float(model, _ranges(model, {})) == []
    softmax, producer = next(iter(_softmax_inputs(model).items()))
    wide = {out: (-10000.0, 9.0) for node in model.graph.node if node.name == producer for out in node.output}
    kept = onnx_guard.kept_in_float(model, _ranges(model, wide))
    assert {k.node for k in kept} == {softmax, producer}
    assert "spans 1e+04" in next(k.reason for k in kept if k.node == softmax)


@pytest.mark.parametrize("fill", [-10000.0, TORCH_FILL], ids=["minus_1e4", "float32_lowest"])
def test_static_int8_of_a_masked_encoder_stays_faithful_where_plain_qdq_does_not(tmp_path: Path, fill: float):
    model = tiny_bert(mask_fill=fill)
    data = tokens(64, 16, seed=1)
    calib = Dataset(data, None, "test")
    options = EmitOptions(Quantize.int8, True, CalibrationMethod.minmax, "uint8", tmp_path / "ours")
    options.workdir.mkdir()
    guarded = quantized(model.SerializeToString(), calib, options)
    reference = open_session(model.SerializeToString()).run(None, data)[0]
    ours = open_session(guarded).run(None, data)[0]
    assert cosine(reference, ours)["cosine_mean"] >= 0.98
    fills = 1 if fill == TORCH_FILL else 0  # the mask Mul writes a fill value; -10000 is only too wide a step
    assert len(onnx_guard.recorded(options.workdir)) == 2 * LAYERS + fills  # each Softmax and its Add

    # The same model quantized by onnxruntime with nothing kept in float (the behaviour before the guard).
    (tmp_path / "float.onnx").write_bytes(model.SerializeToString())
    prepare(tmp_path / "float.onnx", tmp_path / "prepared.onnx")
    q.quantize_static(str(tmp_path / "prepared.onnx"), str(tmp_path / "plain.onnx"), _reader(calib, 1),
                      quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                      weight_type=q.QuantType.QInt8)
    plain = open_session((tmp_path / "plain.onnx").read_bytes()).run(None, data)[0]
    assert cosine(reference, plain)["cosine_mean"] < 0.9


@pytest.mark.parametrize("method", [CalibrationMethod.entropy, CalibrationMethod.percentile])
def test_histogram_calibrations_run_on_a_torch_mask_and_stay_faithful(tmp_path: Path, method):
    """onnxruntime's histograms cannot span -3.4e38 ("Too many bins for data range"): they calibrate a copy whose
    fill constants are -1e4, which leaves every other tensor's values as they are."""
    model = tiny_bert(mask_fill=TORCH_FILL)
    data = tokens(64, 16, seed=1)
    options = EmitOptions(Quantize.int8, True, method, "uint8", tmp_path)
    int8 = quantized(model.SerializeToString(), Dataset(data, None, "test"), options)
    reference = open_session(model.SerializeToString()).run(None, data)[0]
    assert cosine(reference, open_session(int8).run(None, data)[0])["cosine_mean"] >= 0.98
    stand_in = onnx_guard.without_fill(tmp_path / "onnx_prepared.onnx")
    assert stand_in.name == "onnx_prepared_no_fill.onnx"
    plain = open_session((tmp_path / "onnx_prepared.onnx").read_bytes()).run(None, data)[0]
    assert np.array_equal(open_session(stand_in.read_bytes()).run(None, data)[0], plain)  # not one value moves
