"""compiler/emit/onnx_convert.py and compiler/analyze_onnx.py on tiny models (onnxruntime's real quantizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgekiln.compiler.analyze.onnx_stats import onnx_arena_bytes, onnx_stats, output_steps
from edgekiln.compiler.emit import EmitOptions
from edgekiln.compiler.emit.onnx_convert import quantized
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.timing import host_isa
from edgekiln.compiler.graph.onnx_graph import open_session
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from edgekiln.runtime import Model
from tests.unit.onnx_models import conv_net

CONV_PARAMS = 4 * 3 * 9 + 4 + 2 * 4 + 2          # conv weight + bias, gemm weight + bias
CONV_MACS = (4 * 8 * 8) * (3 * 3 * 3) + 2 * 4     # conv: outputs x (cin * kh * kw); gemm: outputs x K


def _calib(n: int = 24) -> Dataset:
    return Dataset({"x": np.random.default_rng(5).random((n, 3, 8, 8), np.float32)}, None, "test")


def _options(tmp_path: Path, quantize: Quantize = Quantize.int8, activation: str = "uint8",
             method: CalibrationMethod = CalibrationMethod.minmax) -> EmitOptions:
    return EmitOptions(quantize, True, method, activation, tmp_path)


def _float_bytes() -> bytes:
    return conv_net(batch=1).SerializeToString()


def test_stats_of_a_float_model() -> None:
    stats = onnx_stats(_float_bytes())
    assert (stats.params, stats.macs) == (CONV_PARAMS, CONV_MACS)
    assert stats.ops == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    # x (3*8*8) + conv and relu (4*8*8 each) + pool, flatten (4 each) + y (2), float32
    assert onnx_arena_bytes(_float_bytes()) == (4 * (192 + 256 + 256 + 4 + 4 + 2), None)


@pytest.mark.parametrize("activation, zero_point_type", [("uint8", np.uint8), ("int8", np.int8)])
def test_int8_is_qdq_with_the_targets_activation_type(tmp_path: Path, activation: str,
                                                      zero_point_type: type) -> None:
    options = _options(tmp_path, activation=activation)
    model_bytes = quantized(_float_bytes(), _calib(), options)
    model = onnx.load_from_string(model_bytes)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    input_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    assert constants[input_q.input[2]].dtype == zero_point_type
    weight_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear"
                     and constants.get(n.input[0], np.zeros(1)).shape == (4, 3, 3, 3))
    assert constants[weight_dq.input[0]].dtype == np.int8
    assert constants[weight_dq.input[1]].shape == (4,)  # one scale per output channel
    stats = onnx_stats(model_bytes)
    assert (stats.params, stats.macs) == (CONV_PARAMS, CONV_MACS)  # the same network, counted the same way
    x = _calib().inputs["x"][:1]
    want = Model("onnx", _float_bytes()).predict(x)
    got = Model("onnx", model_bytes).predict(x)
    step = output_steps(model_bytes)["y"]
    assert 0 < step < 0.1 and np.max(np.abs(got - want)) < 4 * step


def _saturating_case(tmp_path: Path) -> tuple[bytes, np.ndarray, np.ndarray, float]:
    """int8 conv on inputs that fill the uint8 range: adjacent u8 x s8 products sum past int16."""
    model_bytes = quantized(_float_bytes(), _calib(), _options(tmp_path))
    x = _calib().inputs["x"][:1]
    reference = open_session(model_bytes, optimize=False).run(None, {"x": x})[0]  # QDQ arithmetic, unfused
    return model_bytes, x, reference, output_steps(model_bytes)["y"]


def test_int8_outputs_are_the_exact_integer_result_on_any_cpu(tmp_path: Path) -> None:
    """The runtime's fused int8 kernels give onnxruntime's reference QDQ arithmetic (within a rounding step):
    what an ARM device or a VNNI x86 computes, so golden outputs recorded here validate there."""
    model, x, reference, step = _saturating_case(tmp_path)
    got = Model("onnx", model).predict(x)
    assert np.max(np.abs(got - reference)) <= 1.01 * step


@pytest.mark.skipif(host_isa()["int8_dot_product"] != "none (VPMADDUBSW)",
                    reason="only x86 CPUs without VNNI saturate int8 pair sums (this one cannot)")
def test_without_the_precision_mode_this_host_saturates(tmp_path: Path) -> None:
    """Why the runtime asks for the exact kernels: onnxruntime's default ones are whole steps off here."""
    model, x, reference, step = _saturating_case(tmp_path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    default = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.max(np.abs(default - reference)) > 2 * step


def test_calibration_methods_choose_different_ranges(tmp_path: Path) -> None:
    x = np.random.default_rng(6).normal(size=(32, 3, 8, 8)).astype(np.float32)
    x[0, :, 0, 0] = 40.0  # one outlier: min/max keeps it, entropy and percentile clip it differently
    calib, scales = Dataset({"x": x}, None, "test"), {}
    for method in (CalibrationMethod.minmax, CalibrationMethod.entropy, CalibrationMethod.percentile):
        work = tmp_path / str(method)
        work.mkdir()
        model_bytes = quantized(_float_bytes(), calib, _options(work, method=method))
        model = onnx.load_from_string(model_bytes)
        constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        relu_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "r")
        scales[method] = float(constants[relu_q.input[1]])
    assert len(set(scales.values())) == 3, scales
    assert scales[CalibrationMethod.minmax] == max(scales.values())


def test_dynamic_needs_no_calibration(tmp_path: Path) -> None:
    model_bytes = quantized(_float_bytes(), None, _options(tmp_path, Quantize.dynamic))
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load_from_string(model_bytes).graph.node}
    assert ort.InferenceSession(model_bytes).run(None, {"x": _calib().inputs["x"][:1]})[0].shape == (1, 2)


def test_none_is_the_float_model(tmp_path: Path) -> None:
    model_bytes = quantized(_float_bytes(), None, _options(tmp_path, Quantize.none))
    assert model_bytes == _float_bytes()


def test_float16_is_refused_for_onnx(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="float16 is not available for ONNX"):
        quantized(_float_bytes(), None, _options(tmp_path, Quantize.float16))


def test_onnx2tf_refuses_calibration_methods_it_does_not_have() -> None:
    from edgekiln.compiler.search.onnx2tf_builder import check_calibration

    check_calibration("minmax", True)
    check_calibration("entropy", False)  # no int8 candidate: nothing is calibrated
    with pytest.raises(RecipeError, match="calibration method entropy is not available for ONNX -> TFLite"):
        check_calibration("entropy", True)


def test_onnx2tf_failure_text_is_reduced_to_its_telling_line() -> None:
    from edgekiln.compiler.emit.tflite_from_onnx import error_line

    red, reset = "\x1b[31m", "\x1b[0m"
    text = "\n".join([
        f"\x1b[32mINFO:{reset} onnx_op_type: Conv onnx_op_name: /conv/Conv",
        f"{red}ERROR:{reset} The trace log is below.",
        "Traceback (most recent call last):",
        '  File "onnx2tf/ops/Conv.py", line 300, in make_node',
        "ValueError: Depth of output (16) is not a multiple of the number of groups (32) for '{{node conv}}'",
        f"{red}ERROR:{reset} input_onnx_file_path: model.onnx",
        f"{red}ERROR:{reset} onnx_op_name: /conv/Conv",
    ])
    assert error_line(text).startswith("ValueError: Depth of output (16) is not a multiple of the number")
    assert error_line(f"{red}ERROR:{reset} The model has an unsupported dynamic shape") == \
        "ERROR: The model has an unsupported dynamic shape"
    assert error_line("") == "no output"
