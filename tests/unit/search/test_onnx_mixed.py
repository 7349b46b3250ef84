"""ONNX int8+mixed on tiny models where int8 genuinely hurts in one place (real onnxruntime quantizer and the
bundle's runtime, no TensorFlow): an activation outlier in one layer, and a detector-like Concat of box pixels
with [0, 1] scores. The candidate promotes only the layers it names, beats plain int8, and is one QDQ file the
runtime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from edgekiln.compiler.analyze.onnx_stats import onnx_stats
from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.metrics import fidelity
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx_builder
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import plan
from edgekiln.runtime import Model
from tests.unit.onnx_models import conv_net, detector_head, outlier_chain

HELD_BACK = 32


def _build(model: onnx.ModelProto, tmp_path: Path, shape: tuple[int, ...] = (8,)) -> tuple[dict[str, Candidate],
                                                                                           np.ndarray]:
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    x = np.random.default_rng(1).random((64 + HELD_BACK, *shape), np.float32)
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    calib, held = Dataset({"x": x[:-HELD_BACK]}, None, "test"), Dataset({"x": x[-HELD_BACK:]}, None, "test")
    judge = Judge.for_build(Reference(graph), Datasets(calib, held, None), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.auto, "onnx", "onnx", only="int8+mixed"), calib, judge,
                       Criterion(), tmp_path, True, "minmax", "uint8")
    return {b.variant.name: b for b in onnx_builder.build(ctx).built}, x[-HELD_BACK:]


def _sqnr(source: onnx.ModelProto, compiled: bytes, x: np.ndarray) -> float:
    """Through the bundle's runtime, sample by sample."""
    want = np.concatenate([Model("onnx", source.SerializeToString()).predict(s[None]) for s in x])
    got = np.concatenate([Model("onnx", compiled).predict(s[None]) for s in x])
    sqnr = fidelity([want], [got])["sqnr_db"]
    assert sqnr is not None
    return float(sqnr)


def _int16_tensors(model: bytes) -> set[str]:
    """The activation tensors the QDQ model quantizes to int16 (its QuantizeLinear inputs with an int16 zero point)."""
    graph = onnx.load_from_string(model).graph
    sixteen = {t.name for t in graph.initializer if t.data_type == TensorProto.INT16}
    return {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[2] in sixteen}


def test_the_outlier_layer_alone_is_promoted_and_its_file_runs_faithfully(tmp_path: Path) -> None:
    source = outlier_chain()
    built, held = _build(source, tmp_path)
    plain, mixed = built["int8"], built["int8+mixed"]
    assert plain.model is not None and mixed.model is not None
    facts = mixed.details["mixed"]
    assert [p["layer"] for p in facts["promoted"]] == ["mm_b"]  # measured: +17 dB alone, the others <= 0
    assert facts["probe_gain_db"]["mm_b"] > 10 and all(g <= 0.5 for n, g in facts["probe_gain_db"].items()
                                                        if n != "mm_b")
    assert facts["concats_apart"] == [] and facts["promoted"][0]["op"] == "MatMul"
    # only the promoted layer's output is int16; everything else stays int8
    assert _int16_tensors(mixed.model) == {"hb"} and _int16_tensors(plain.model) == set()
    plain_db, mixed_db = _sqnr(source, plain.model, held), _sqnr(source, mixed.model, held)
    assert plain_db < 5 and mixed_db > plain_db + 10  # measured: 0.1 dB and 20 dB
    assert mixed.notes[0].startswith("1 layer(s) promoted to int16 activations")
    # the estimate charges the two ops that touch the int16 tensor at the float rate, the rest as int8
    widened = [r.op for r in onnx_stats(mixed.model).records if r.input_dtype == "int16" and r.op == "MatMul"]
    assert widened == ["MatMul", "MatMul"]


def test_a_concat_of_pixels_and_scores_is_fixed_structurally_before_any_layer(tmp_path: Path) -> None:
    source = detector_head()
    built, held = _build(source, tmp_path)
    plain, mixed = built["int8"], built["int8+mixed"]
    assert plain.model is not None and mixed.model is not None
    facts = mixed.details["mixed"]
    assert [a["node"] for a in facts["concats_apart"]] == ["concat"] and "one int8 scale" in \
        facts["concats_apart"][0]["reason"]
    assert facts["promoted"] == [] and facts["meets_criterion"]  # the structure alone was enough
    assert _int16_tensors(mixed.model) == {"joined"}
    plain_db, mixed_db = _sqnr(source, plain.model, held), _sqnr(source, mixed.model, held)
    assert mixed_db > plain_db + 8  # measured: 7 dB and 18.7 dB


def test_not_built_where_plain_int8_meets_the_criterion(tmp_path: Path) -> None:
    mixed = _build(conv_net(batch=1), tmp_path, (3, 8, 8))[0]["int8+mixed"]
    assert mixed.model is None and mixed.notes[0].startswith("not needed: plain int8 meets the criterion")
