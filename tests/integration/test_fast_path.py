"""int8+fastpath (ONNX -> TFLite): hard-swish and hard-sigmoid respelled before onnx2tf (graph/onnx_fast_path.py)
keep an int8 model in one XNNPACK piece where plain int8 breaks into several; the respelled graph computes the same
function and its int8 model is as faithful as plain int8 within a dB. Real onnx2tf, converter and LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx2tf_builder
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import plan
from tests.unit.hard_swish_models import hard_swish_cnn, images

pytestmark = pytest.mark.integration


def test_respelled_hard_swish_stays_in_one_piece_with_the_same_outputs(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(hard_swish_cnn().SerializeToString())
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    x = images(96)
    calib, held = Dataset({"x": x[:64]}, None, "test"), Dataset({"x": x[64:]}, None, "test")
    judge = Judge.for_build(Reference(graph), Datasets(calib, held, None), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.int8, "tflite", "onnx", only="int8+fastpath"), calib, judge,
                       Criterion(), tmp_path, True, "minmax", "uint8")
    built = {b.name: b for b in onnx2tf_builder.build(ctx).built}
    plain, fast = built["int8"], built["int8+fastpath"]
    assert plain.details["coverage"]["outside_fast_path"] == {"HARD_SWISH": 2, "RELU_0_TO_1": 2}
    assert plain.pieces == 5 and fast.pieces == 1
    assert fast.details["coverage"]["outside_fast_path"] == {}
    facts = fast.details["fast_path"]
    assert (facts["pieces_before"], facts["pieces_after"], facts["samples"]) == (5, 1, 64)
    assert facts["rewritten"] == {"HardSwish": 1, "x*HardSigmoid(x)": 1, "x*Clip(x+3,0,6)/6": 1, "HardSigmoid": 1}
    assert facts["max_relative_diff"] < onnx2tf_builder.FAST_PATH_TOLERANCE
    assert fast.notes[0].endswith(": 5 -> 1 piece(s)")
    plain_q, fast_q = judge("tflite", plain.model, plain.layouts), judge("tflite", fast.model, fast.layouts)
    assert fast_q.sqnr_db is not None and plain_q.sqnr_db is not None
    assert fast_q.sqnr_db > 30 and abs(fast_q.sqnr_db - plain_q.sqnr_db) < 2.0, (fast_q, plain_q)
    assert np.isfinite(fast_q.sqnr_db)

