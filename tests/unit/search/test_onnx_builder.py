"""ONNX int8+calibration on a tiny model (real onnxruntime quantizer and runtime, no TensorFlow).

Two huge input values in the calibration samples (none in the held-back ones) stretch min/max ranges over
outliers the model never meets again; a clipping method is then measurably more faithful, and the
refinements (int8+s8s8) are built with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.emit.onnx_convert import kl_threshold
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx_builder
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import plan
from tests.counting_judge import CountingJudge

HELD_BACK = 32


def _model() -> onnx.ModelProto:
    """x [1, 3, 32, 32] -> Conv 3->8 (3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 8->4."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "fc")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(nodes, "outliers", [x], [y], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _build(tmp_path: Path, calibration: str) -> dict[str, Candidate]:
    (tmp_path / "m.onnx").write_bytes(_model().SerializeToString())
    x = np.random.default_rng(1).normal(size=(64 + HELD_BACK, 3, 32, 32)).astype(np.float32)
    x[0, 0, 5, 5] = x[1, 1, 9, 20] = 200.0  # outliers in two calibration samples only
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    calib, held = Dataset({"x": x[:-HELD_BACK]}, None, "test"), Dataset({"x": x[-HELD_BACK:]}, None, "test")
    judge = Judge.for_build(Reference(graph), Datasets(calib, held), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.int8, "onnx", "onnx"), calib, judge, Criterion(), tmp_path,
                       True, calibration, "uint8")
    return {b.variant.name: b for b in onnx_builder.build(ctx).built}


def test_a_clipping_method_wins_over_outliers_and_the_refinements_use_it(tmp_path: Path) -> None:
    built = _build(tmp_path, "auto")
    tuned, plain, s8s8 = built["int8+calibration"], built["int8"], built["int8+s8s8"]
    trials = tuned.details["calibration_trials"]
    assert set(trials) == {"minmax", "percentile", "entropy"}
    # Measured (seeded): min/max 31.5 dB, percentile 30.9 dB, entropy 42.4 dB on the held-back samples.
    assert tuned.details["calibration"] == "entropy" and tuned.notes[0] == "entropy calibration"
    assert trials["entropy"]["sqnr_db"] > trials["minmax"]["sqnr_db"] + 8
    assert trials["entropy"]["sqnr_db"] == max(t["sqnr_db"] for t in trials.values())
    assert plain.details["calibration"] == "minmax" and plain.model != tuned.model  # plain int8 stays the yardstick
    assert s8s8.model is not None and s8s8.details["calibration"] == "entropy"
    assert s8s8.notes[:2] == ("int8 activations", "entropy calibration")  # then the host's timing note, if any


def test_a_given_method_is_used_by_every_int8_candidate(tmp_path: Path) -> None:
    built = _build(tmp_path, "percentile")
    assert built["int8+calibration"].model is None
    assert built["int8+calibration"].notes == ("--calibration percentile was given",)
    assert {built[n].details["calibration"] for n in ("int8", "int8+s8s8")} == {"percentile"}


def test_the_kl_search_finds_onnxruntimes_threshold() -> None:
    """The vectorised search returns the window onnxruntime's own (slow) search returns."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    data = np.concatenate([np.random.default_rng(2).standard_t(3, 200_000), [40.0, -35.0]]).astype(np.float32)
    top = np.float32(np.abs(data).max())
    hist, edges = np.histogram(data, 2048, range=(-top, top))
    edges = edges.astype(np.float32)
    ours = kl_threshold(hist, edges, 256)
    lo, hi = HistogramCollector.get_entropy_threshold(None, (hist, edges, data.min(), data.max()), 256)
    assert max(ours[0], float(data.min())) == pytest.approx(float(lo))
    assert min(ours[1], float(data.max())) == pytest.approx(float(hi))
    assert ours[1] < top / 4  # the heavy tail is clipped


def test_a_cnn_gets_no_fused_candidate_and_no_optimizer_run(tmp_path: Path) -> None:
    """The fused candidates are for transformer encoders: a CNN's auto build has no such row at all, and
    onnxruntime's transformer optimizer never runs (nothing written for it, no build time spent)."""
    (tmp_path / "m.onnx").write_bytes(_model().SerializeToString())
    x = np.random.default_rng(1).normal(size=(16, 3, 32, 32)).astype(np.float32)
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    calib = Dataset({"x": x}, None, "test")
    planned = plan(Quantize.auto, "onnx", "onnx", calibrated=False)
    assert {"fused", "fused+dynamic"} <= {c.name for c in planned.build}
    judge = Judge.for_build(Reference(graph), Datasets(calib, None), 1, None)
    ctx = BuildContext(graph, "onnx", planned, calib, judge, Criterion(), tmp_path / "work", True, "auto", "uint8")
    ctx.workdir.mkdir()
    names = [b.variant.name for b in onnx_builder.build(ctx).built]
    assert names == ["float32", "dynamic"]
    assert not list(ctx.workdir.rglob("onnx_optimizer")) and not list(ctx.workdir.rglob("*fused*"))


@pytest.mark.parametrize("floor_db", [30.0, 60.0])
def test_plain_int8_is_judged_once_whoever_asks_whether_it_misses(tmp_path: Path, floor_db: float) -> None:
    """The diagnosis, int8+calibration's trials and 16x8's gate all read plain int8's verdict: one judgement,
    whether plain int8 meets the floor (16x8 not built) or misses it (16x8 built)."""
    (tmp_path / "m.onnx").write_bytes(_model().SerializeToString())
    x = np.random.default_rng(1).normal(size=(48, 3, 32, 32)).astype(np.float32)
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    calib = Dataset({"x": x[:32]}, None, "test")
    judge = CountingJudge(Reference(graph), calib, None, 1)
    ctx = BuildContext(graph, "onnx", plan(Quantize.auto, "onnx", "onnx"), calib, judge,
                       Criterion(min_sqnr_db=floor_db), tmp_path, True, "auto", "uint8")
    built = {b.variant.name: b for b in onnx_builder.build(ctx).built}
    plain = built["int8"].model
    assert plain is not None and judge.judged.count(plain) == 1, len(judge.judged)
    sixteen = built["16x8"]
    meets = Criterion(min_sqnr_db=floor_db).meets(judge.once("onnx", plain))
    assert (sixteen.model is None) == meets, (sixteen.notes, meets)
    assert judge.judged.count(plain) == 1  # asked again: still the one judgement
