"""The numeric helpers of the int8 analysis: fast-path coverage, calibration ranges, layer naming."""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.analyze.coverage import from_ops
from edgekiln.compiler.diagnose.causes import spread_of
from edgekiln.compiler.diagnose.layer_error import LayerError
from edgekiln.compiler.diagnose.tflite_diagnosis import group, layer_of
from edgekiln.compiler.emit import calibrate


def op(index: int, name: str, inputs: list[int], outputs: list[int]) -> dict:
    return {"index": index, "op_name": name, "inputs": np.array(inputs), "outputs": np.array(outputs)}


def test_coverage_follows_each_partition_between_its_boundary_tensors():
    # conv -> prelu -> conv -> softmax, as LiteRT lists them after XNNPACK took the two convs separately:
    # tensors 0 input, 1..2 weights, 3..6 activations.
    ops = [op(0, "CONV_2D", [0, 1], [3]), op(1, "PRELU", [3, 2], [4]), op(2, "CONV_2D", [4, 1], [5]),
           op(3, "SOFTMAX", [5], [6]),
           op(4, "DELEGATE", [0, 1], [3]), op(5, "DELEGATE", [4, 1], [5])]
    cover = from_ops(ops)
    assert (cover.nodes, cover.fast, cover.pieces) == (4, 2, 2)
    assert cover.slow_ops == {"PRELU": 1, "SOFTMAX": 1}
    assert cover.to_dict()["outside_fast_path"] == {"PRELU": 1, "SOFTMAX": 1}


def test_coverage_of_a_graph_in_one_piece():
    ops = [op(0, "CONV_2D", [0, 1], [3]), op(1, "RELU", [3], [4]), op(2, "DELEGATE", [0, 1], [4])]
    cover = from_ops(ops)
    assert (cover.fast, cover.pieces, cover.slow_ops) == (2, 1, {})


def _stats(values: np.ndarray, internal: bool = True) -> calibrate.TensorStats:
    s = calibrate.TensorStats("t", float(values.min()), float(values.max()), np.zeros(calibrate.BINS, np.int64),
                              np.zeros(0), internal)
    calibrate._accumulate(s, values.reshape(1, -1, 4))
    return s


def test_percentile_and_entropy_clip_rare_outliers_but_minmax_does_not():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 39_996), [60.0, -55.0, 0.0, 0.0]]).astype(np.float32)
    stats = {7: _stats(values), 8: _stats(values, internal=False)}
    assert calibrate.ranges(stats, "minmax") == {}
    lo, hi = calibrate.ranges(stats, "percentile")[7]
    assert -5.0 < lo < -3.0 and 3.0 < hi < 5.0          # 99.99 % of |N(0, 1)| lies within about 3.9
    lo, hi = calibrate.ranges(stats, "entropy")[7]
    assert -20.0 < lo < -2.0 and 2.0 < hi < 20.0
    assert 8 not in calibrate.ranges(stats, "percentile")  # model inputs and outputs keep min/max


def test_a_nonnegative_tensor_keeps_its_zero_floor():
    rng = np.random.default_rng(1)
    values = np.abs(rng.normal(0, 1, 40_000)).astype(np.float32)
    lo, hi = calibrate.ranges({0: _stats(values)}, "percentile")[0]
    assert lo == values.min() and 3.0 < hi < 5.0


def test_tflite_tensor_names_map_back_to_keras_layers():
    names = ["image", "conv2d", "batch_normalization", "re_lu", "conv2d_1", "batch_normalization_1", "re_lu_1"]
    assert layer_of("m_1/re_lu_1_2/Relu;m_1/batch_normalization_1_2/batchnorm/add_1;m_1/conv2d_1_2/convolution",
                    names) == "conv2d_1+batch_normalization_1+re_lu_1"
    assert layer_of("m_1/re_lu_1/Relu;m_1/conv2d_1/convolution", names) == "conv2d+re_lu"
    assert layer_of("StatefulPartitionedCall_1:0", names) == "(model output)"


def test_ops_of_one_layer_are_summed():
    mul = LayerError("bn", "MUL", ("bn/mul",), 0.2, 40.0, 0.3, 0.3)
    add = LayerError("bn", "ADD", ("bn/add",), 0.3, 35.0, 0.2, 0.2)
    conv = LayerError("conv", "CONV_2D", ("conv",), 0.5, 20.0, 0.4, 0.4)
    grouped = {e.layer: e for e in group([mul, conv, add])}
    bn = grouped["bn"]
    assert (bn.op, bn.tensors, bn.rmse_over_scale, bn.sqnr_db) == ("MUL+ADD", ("bn/mul", "bn/add"), 0.3, 35.0)
    assert np.isclose(bn.share, 0.5) and np.isclose(bn.channel_nsr, 0.5)


def test_spread_ignores_dead_channels():
    assert spread_of(np.array([0.0, 1.0, 2.0, 4.0, 8.0] * 4)) == 8.0
