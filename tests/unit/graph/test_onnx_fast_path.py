"""graph/onnx_fast_path.py: every hard-swish spelling and the lone hard-sigmoid rewritten, the function unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgekiln.compiler.graph.onnx_fast_path import canonicalize
from tests.unit.hard_swish_models import SPELLINGS, hard_swish_cnn, images


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])


def test_every_spelling_becomes_the_fast_path_form_with_the_same_outputs():
    model = hard_swish_cnn()
    canonical = canonicalize(model)
    assert canonical.rewritten == {spelling: 1 for spelling in SPELLINGS} | {"HardSigmoid": 1}
    ops = [n.op_type for n in canonical.model.graph.node]
    assert "HardSwish" not in ops and "HardSigmoid" not in ops and "Div" not in ops
    assert ops.count("Clip") == 4  # one RELU6 per hard-swish and one for the gate
    onnx.checker.check_model(canonical.model)
    x = images(8)
    before, after = _run(model, x), _run(canonical.model, x)
    assert np.max(np.abs(before - after)) <= 1e-5 * np.max(np.abs(before))
    assert [n.op_type for n in model.graph.node].count("HardSwish") == 1  # the source model is left as it was


def test_the_form_the_converter_would_fuse_is_never_written():
    """(x * 1/6) * Clip(x + 3, 0, 6): the 1/6 multiplies x, never the clipped gate or the product."""
    canonical = canonicalize(hard_swish_cnn(("HardSwish",), gate=False))
    by_output = {n.output[0]: n for n in canonical.model.graph.node}
    last = by_output["h0"]
    assert last.op_type == "Mul"
    scaled, clipped = (by_output[name] for name in last.input)
    assert (scaled.op_type, clipped.op_type) == ("Mul", "Clip") and scaled.input[0] == "c0"


def test_a_model_without_hard_activations_is_returned_unchanged():
    model = hard_swish_cnn(("Relu",), gate=False)
    canonical = canonicalize(model)
    assert not canonical.changed and canonical.model is model


def test_a_chain_whose_parts_are_read_elsewhere_is_left_alone():
    """x * Clip(x + 3, 0, 6) / 6 where the clipped gate is also a graph output: rewriting would drop it."""
    model = hard_swish_cnn(("x*Clip(x+3,0,6)/6",), gate=False)
    model.graph.output.append(onnx.helper.make_tensor_value_info("h0_relu6", onnx.TensorProto.FLOAT, None))
    assert canonicalize(model).rewritten == {}
