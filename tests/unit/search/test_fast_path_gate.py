"""int8+fastpath is made only where plain int8 breaks XNNPACK into pieces and something is respelled: the gate
(search/onnx2tf_builder._fast_path) decides before any conversion, from plain int8's recorded pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import numpy_helper

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx2tf_builder
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import VARIANTS, plan
from tests.unit.hard_swish_models import hard_swish_cnn, images

FAST = next(v for v in VARIANTS["tflite"] if v.fast_path)
PLAIN = next(v for v in VARIANTS["tflite"] if v.name == "int8")


def _ctx(tmp_path: Path, spellings: tuple[str, ...]) -> BuildContext:
    (tmp_path / "m.onnx").write_bytes(hard_swish_cnn(spellings, gate=False).SerializeToString())
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    return BuildContext(graph, "onnx", plan(Quantize.int8, "tflite", "onnx", only="int8+fastpath"),
                        Dataset({"x": images(4)}, None, "test"), None, Criterion(), tmp_path)  # type: ignore[arg-type]


def test_plain_int8_in_one_piece_needs_no_respelling(tmp_path: Path) -> None:
    plain = Candidate(PLAIN, b"int8", recorded_pieces=1)
    made = onnx2tf_builder._fast_path(FAST, _ctx(tmp_path, ("HardSwish",)), [plain])
    assert made.model is None and made.notes == ("not needed: plain int8 runs in one XNNPACK piece",)
    assert not list(tmp_path.glob("onnx2tf-*"))  # no conversion was started


def test_pieces_without_a_hard_activation_need_no_respelling(tmp_path: Path) -> None:
    plain = Candidate(PLAIN, b"int8", recorded_pieces=3)
    made = onnx2tf_builder._fast_path(FAST, _ctx(tmp_path, ("Relu",)), [plain])
    assert made.model is None
    assert made.notes == ("not needed: no hard-swish or hard-sigmoid to respell (plain int8: 3 XNNPACK pieces)",)


def test_without_plain_int8_nothing_is_respelled(tmp_path: Path) -> None:
    made = onnx2tf_builder._fast_path(FAST, _ctx(tmp_path, ("HardSwish",)), [Candidate(PLAIN, None)])
    assert made.model is None and made.notes == ("not built: plain int8 was not built",)


def test_the_respelled_graph_is_checked_on_every_calibration_sample(tmp_path: Path) -> None:
    """The respelling computes the source's function (float rounding apart); a graph that does not is caught."""
    from edgekiln.compiler.graph.onnx_fast_path import canonicalize

    ctx = _ctx(tmp_path, ("HardSwish", "x*HardSigmoid(x)", "x*Clip(x+3,0,6)/6"))
    canonical = canonicalize(ctx.graph.model)
    calib = Dataset({"x": images(5)}, None, "test")
    assert onnx2tf_builder._max_difference(ctx.graph, canonical.model, calib) < onnx2tf_builder.FAST_PATH_TOLERANCE
    wrong = canonicalize(ctx.graph.model).model
    three = next(t for t in wrong.graph.initializer  # the respelling's + 3
                 if t.name.startswith("edgekiln_fast_path_const") and float(numpy_helper.to_array(t)) == 3.0)
    three.CopyFrom(numpy_helper.from_array(np.array(2.0, np.float32), three.name))
    assert onnx2tf_builder._max_difference(ctx.graph, wrong, calib) > 0.01
