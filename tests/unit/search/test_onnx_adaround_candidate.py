"""ONNX int8+adaround in the builder: plain QDQ int8 with only its int8 weights moved (+-1 step), its per-layer
outcomes in details.adaround, never less faithful than plain int8 on the tuning samples. Real onnxruntime quantizer
and runtime; no TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.criterion import Criterion, fidelity_key
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx_builder
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import plan
from tests.unit.hard_swish_models import hard_swish_cnn


def _plain_and_adaround(tmp_path: Path, model: onnx.ModelProto, x: np.ndarray):
    """The ONNX builder's int8 and int8+adaround of `model`, calibrated on x[:64] and judged on x[64:]."""
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    calib, held = Dataset({"x": x[:64]}, None, "test"), Dataset({"x": x[64:]}, None, "test")
    judge = Judge.for_build(Reference(graph), Datasets(calib, held, None), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.auto, "onnx", "onnx", only="int8+adaround"), calib, judge,
                       Criterion(), tmp_path, True, "minmax", "uint8")
    built = {b.name: b for b in onnx_builder.build(ctx).built}
    return judge, built["int8"], built["int8+adaround"]


def test_adaround_moves_only_int8_weights_and_is_not_less_faithful_than_plain_int8(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((96, 3, 12, 12), dtype=np.float32)
    judge, plain, learned = _plain_and_adaround(tmp_path, hard_swish_cnn(("Relu", "Relu"), gate=False, size=12), x)
    assert plain.model is not None and learned.model is not None, learned.notes
    facts = learned.details["adaround"]
    assert facts["weights_changed"] > 0 and facts["samples"] == facts["held_back"] == 32
    note = next(n for n in learned.notes if n.startswith("AdaRound: "))
    assert note.startswith(f"AdaRound: {facts['weights_changed']} of ") and "no judged output changed" not in note
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(plain.model).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(learned.model).graph.initializer}
    moved = [name for name in before if not np.array_equal(before[name], after[name])]
    assert moved and all(before[n].dtype == np.int8 for n in moved)  # scales, zero points, biases untouched
    assert all(np.abs(after[n].astype(int) - before[n].astype(int)).max() == 1 for n in moved)
    assert fidelity_key(judge("onnx", learned.model)) >= fidelity_key(judge("onnx", plain.model))


def test_adaround_that_changes_no_judged_output_says_so(tmp_path: Path) -> None:
    """The outlier chain (tests/unit/onnx_models.py: one int8 scale spent on a 300x column): AdaRound moves
    weights, yet no output moves by a whole int8 step, so its figures equal plain int8's; the note says why."""
    from tests.unit.onnx_models import outlier_chain

    x = np.random.default_rng(1).random((96, 8), np.float32)
    judge, plain, learned = _plain_and_adaround(tmp_path, outlier_chain(), x)
    assert plain.model is not None and learned.model is not None, learned.notes
    moved = learned.details["adaround"]["weights_changed"]
    assert moved > 0 and len(learned.model) == len(plain.model)
    assert judge("onnx", learned.model) == judge("onnx", plain.model)
    note = next(n for n in learned.notes if n.startswith("AdaRound: "))
    assert note.startswith(f"AdaRound: {moved} of ")
    assert note.endswith("; no judged output changed: on the 32 tuning samples its outputs equal nearest rounding's "
                         "bit for bit (the moved weights shift no output by a whole int8 step)")
